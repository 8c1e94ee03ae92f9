#!/usr/bin/env python3
"""Turns a `ghz/run` run directory into the results table and the ratios against the targets.

Python 3.11 standard library only. Usage:

    python3 ghz/summarize.py RUN_DIR --md OUT.md --json OUT.json   # the results
    python3 ghz/summarize.py RUN_DIR --md OUT.md --readme ghz/README.md  # and the README's copy
    python3 ghz/summarize.py --check REPORT.ghz.json               # exit 1 if any call failed

A run directory holds, per scenario, NAME.meta.json (written by ghz/run: what ran, its order,
the CPU it cost) and either NAME.ghz.json (ghz's JSON report, `-O json`, or a report in its
shape from one of the Rust clients in ghz/replay: baton-replay, baton-load, baton-mcp-load) or
NAME.pgbench.txt (pgbench's output), plus run.json (the machine, the database settings,
batond's memory).

Figures: rps is ghz's completed calls per second; p50/p95/p99 come from ghz's latency
distribution (successful calls only, ghz's default) or, for the mixed workload whose parts
run as separate ghz (or baton-load) processes, from all calls of all parts merged (errors
included; from each report's per-call `details`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

NS_PER_MS = 1_000_000

# What the targets compare (scenario names are ghz/run's).
APPEND = "append1_c32"
# The same appends from baton-load, a client that costs next to nothing (ghz spends as much CPU
# per append as batond does).
APPEND_RUST = "append1_rust_c32"
PGBENCH = ("pgbench_insert_c32_a", "pgbench_insert_c32_b")
# The same INSERT into a plain table (id, session, seq, text): no search vector, no GIN index.
PGBENCH_PLAIN = ("pgbench_plain_c32_a", "pgbench_plain_c32_b")
WINDOW_HOT = "window_hot_c64"
HEALTH = ("health_c64_a", "health_c64_b")
# The hot-read ratio again with ghz/replay's baton-load (no decoding of the ~35 kB windows).
WINDOW_HOT_RUST = "window_hot_rust_c64"
HEALTH_RUST = ("health_rust_c64_a", "health_rust_c64_b")
# update_context through baton-mcp (Streamable HTTP, baton-mcp-load), against APPEND.
MCP_UPDATE = "mcp_update_c32"
# The replay target reads the prost client's figure when the run has it: ghz's own decoding
# is slower than batond's encoding (see ghz/replay), so ghz's figure measures ghz.
STREAM = ("stream_replay_rust_c1", "stream_replay_c1")
MIXED_GROUP = "mixed"
# The same mixed workload driven by baton-load (ghz costs ~0.7 ms of CPU per call: at 1,000 rps
# on 2 cores its p99 measures ghz as much as batond).
MIXED_RUST_GROUP = "mixed_rust"
# Goals of issue 16 (Performance II), the open one; issue 7's were 200k, 5 ms, 200 MiB and 0.5×.
STREAM_TARGET_ENTRIES_PER_S = 250_000
MIXED_TARGET_P99_MS = 10.0
MIXED_TARGET_RPS = 1000
RSS_IDLE_TARGET_MB = 30
FOLLOW_RSS_TARGET_MB = 150
# What the follow streams may leave behind: RSS 10 s after they close, above the RSS before.
FOLLOW_KEPT_TARGET_MB = 30
WINDOW_HOT_TARGET = 0.35
FOLLOW_STREAMS = 10_000


@dataclass
class Row:
    """One line of the results table."""

    name: str
    title: str
    call: str
    concurrency: int | None = None
    rate: int | None = None
    count: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    avg_ms: float | None = None
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    entries_per_call: int | None = None
    entries_per_s: float | None = None
    server_cpu_ms_per_call: float | None = None
    db_cpu_ms_per_call: float | None = None
    client_cpu_ms_per_call: float | None = None
    # The MCP gateway's (baton-mcp's), for the scenarios that go through it.
    gateway_cpu_ms_per_call: float | None = None
    # Bytes of a response, as the Rust load clients count them (they do not decode).
    response_bytes: int | None = None
    machine_busy_pct: float | None = None
    group: str = ""
    note: str = ""


@dataclass
class Target:
    """A target of issue 7 and how this run measured against it."""

    name: str
    measured: float | None
    goal: float
    unit: str
    # measured / goal (for "at most" targets: goal / measured, so > 1 is always better).
    ratio: float | None
    met: bool | None
    detail: str = ""


# ---- parsing -----------------------------------------------------------------------------


def latency_ms(report: dict, percentage: int) -> float | None:
    """The latency at `percentage` from ghz's latencyDistribution, in milliseconds."""
    for d in report.get("latencyDistribution") or []:
        if d.get("percentage") == percentage:
            return d["latency"] / NS_PER_MS
    return None


def count_errors(report: dict, expected: tuple[str, ...] = ()) -> tuple[int, dict[str, int]]:
    """Calls that did not end OK (nor with an `expected` status code), and what they failed
    with: ghz's error messages, or the status codes when it recorded none."""
    codes = report.get("statusCodeDistribution") or {}
    bad = {code: n for code, n in codes.items() if code != "OK" and code not in expected}
    messages = {
        msg[:160]: n
        for msg, n in (report.get("errorDistribution") or {}).items()
        if not any(f"code = {code} " in msg for code in expected)
    }
    return sum(bad.values()), messages or bad


def parse_ghz(report: dict, meta: dict) -> Row:
    """A table row from one ghz JSON report and the runner's metadata of that scenario."""
    options = report.get("options") or {}
    count = int(report.get("count") or 0)
    rps = float(report.get("rps") or 0.0)
    errors, kinds = count_errors(report, tuple(meta.get("expected_codes") or ()))
    avg = report.get("average")
    row = Row(
        name=meta["name"],
        title=meta.get("title", meta["name"]),
        call=short_call(options.get("call") or meta.get("call", "")),
        concurrency=options.get("concurrency"),
        rate=options.get("rps") or None,
        count=count,
        rps=rps,
        p50_ms=latency_ms(report, 50),
        p95_ms=latency_ms(report, 95),
        p99_ms=latency_ms(report, 99),
        avg_ms=avg / NS_PER_MS if avg else None,
        errors=errors,
        error_kinds=kinds,
        entries_per_call=meta.get("entries_per_call"),
        group=meta.get("group", ""),
        note=meta.get("note", ""),
        response_bytes=report.get("bytesPerCall"),
    )
    if row.entries_per_call:
        row.entries_per_s = rps * row.entries_per_call
    add_cpu(row, meta, count)
    return row


def add_cpu(row: Row, meta: dict, calls: int) -> None:
    """CPU cost per call of batond, of the benchmark database's backends, of the load generator
    (ghz, pgbench or a Rust client) and of the MCP gateway when the calls went through it, and
    how busy the whole machine was (other engineers' builds included: the noise indicator)."""
    if calls > 0 and meta.get("server_cpu_s") is not None:
        row.server_cpu_ms_per_call = meta["server_cpu_s"] * 1000 / calls
    if calls > 0 and meta.get("db_cpu_s") is not None:
        row.db_cpu_ms_per_call = meta["db_cpu_s"] * 1000 / calls
    if calls > 0 and meta.get("client_cpu_s") is not None:
        row.client_cpu_ms_per_call = meta["client_cpu_s"] * 1000 / calls
    if calls > 0 and meta.get("gateway_cpu_s") is not None:
        row.gateway_cpu_ms_per_call = meta["gateway_cpu_s"] * 1000 / calls
    wall, busy, cpus = meta.get("wall_s"), meta.get("machine_busy_cpu_s"), meta.get("machine_cpus")
    if wall and busy is not None and cpus:
        row.machine_busy_pct = 100 * busy / (wall * cpus)


def short_call(call: str) -> str:
    """`baton.v1.ContextService/AppendEntries` → `AppendEntries`."""
    return re.split(r"[/.]", call)[-1] if call else ""


def parse_pgbench(text: str) -> dict:
    """tps, average latency, clients and failed transactions from pgbench's report."""
    out: dict = {}
    if m := re.search(r"^tps = ([\d.]+)", text, re.M):
        out["tps"] = float(m.group(1))
    if m := re.search(r"^latency average = ([\d.]+) ms", text, re.M):
        out["latency_avg_ms"] = float(m.group(1))
    if m := re.search(r"^number of clients: (\d+)", text, re.M):
        out["clients"] = int(m.group(1))
    if m := re.search(r"^number of transactions actually processed: (\d+)", text, re.M):
        out["transactions"] = int(m.group(1))
    m = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    out["failed"] = int(m.group(1)) if m else 0
    return out


def pgbench_row(text: str, meta: dict) -> Row:
    pg = parse_pgbench(text)
    n = pg.get("transactions", 0)
    row = Row(
        name=meta["name"],
        title=meta.get("title", meta["name"]),
        call=f"pgbench {meta.get('script', 'insert_entry')}",
        concurrency=pg.get("clients"),
        count=n,
        rps=pg.get("tps", 0.0),
        avg_ms=pg.get("latency_avg_ms"),
        errors=pg["failed"],
        entries_per_call=meta.get("entries_per_call"),
        group=meta.get("group", ""),
        note=meta.get("note", ""),
    )
    if row.entries_per_call:
        row.entries_per_s = row.rps * row.entries_per_call
    add_cpu(row, meta, n)
    return row


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least pct % of values at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def merge_group(name: str, title: str, parts: list[tuple[dict, dict]]) -> Row:
    """One row for parts that ran at the same time (the mixed workload): summed rates and
    errors, percentiles over every call of every part (errors included: a failed call counts
    against the latency target too)."""
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    count = 0
    rps = 0.0
    rate = 0
    for report, meta in parts:
        for d in report.get("details") or []:
            latencies.append(d["latency"] / NS_PER_MS)
        e, k = count_errors(report, tuple(meta.get("expected_codes") or ()))
        errors += e
        for msg, n in k.items():
            kinds[msg] = kinds.get(msg, 0) + n
        count += int(report.get("count") or 0)
        rps += float(report.get("rps") or 0.0)
        rate += int((report.get("options") or {}).get("rps") or 0)
    row = Row(
        name=name,
        title=title,
        call="mixed",
        rate=rate or None,
        count=count,
        rps=rps,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        avg_ms=sum(latencies) / len(latencies) if latencies else None,
        errors=errors,
        error_kinds=kinds,
        group=name,
    )
    return row


# ---- targets -----------------------------------------------------------------------------


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


def at_least(name: str, measured: float | None, goal: float, unit: str, detail: str = "") -> Target:
    if measured is None:
        return Target(name, None, goal, unit, None, None, detail or "not measured in this run")
    return Target(name, measured, goal, unit, measured / goal, measured >= goal, detail)


def at_most(name: str, measured: float | None, goal: float, unit: str, detail: str = "") -> Target:
    if measured is None:
        return Target(name, None, goal, unit, None, None, detail or "not measured in this run")
    ratio = goal / measured if measured > 0 else math.inf
    return Target(name, measured, goal, unit, ratio, measured <= goal, detail)


def same_run_ratio(name: str, goal: float, rows: dict[str, Row], measured: str, baselines: tuple[str, ...],
                   what: str, baseline_what: str, unit: str = "rps", baseline_unit: str = "rps") -> Target:
    """rps of scenario `measured` ÷ the mean of its `baselines` (run before and after it, so their
    spread shows the run's noise). A scenario with failed calls does not meet its goal: its rps
    counts them too."""
    row = rows.get(measured)
    values = [rows[n].rps for n in baselines if n in rows]
    base = mean(values)
    if not row or not base:
        return at_least(name, None, goal, "×")
    detail = f"{what} {row.rps:.0f} {unit} / {baseline_what} {base:.0f} {baseline_unit}"
    detail += spread(values, baseline_what)
    target = at_least(name, row.rps / base, goal, "×", detail)
    if row.errors:
        target.detail += f"; {row.errors} errors"
        target.met = False
    return target


def targets(rows: dict[str, Row], run: dict) -> list[Target]:
    """The ratios of issues 7 and 16, each from figures of this same run, then the absolute
    targets."""
    out = [
        same_run_ratio("AppendEntries(1 entry, durable, C=32) / pgbench single-row INSERT TPS (C=32)", 1.0, rows,
                       APPEND, PGBENCH, "AppendEntries(1) C=32", "pgbench INSERT C=32", baseline_unit="TPS"),
        same_run_ratio("AppendEntries(1 entry, durable, C=32) / pgbench single-row INSERT TPS (C=32), "
                       "Rust load client (baton-load)", 1.0, rows, APPEND_RUST, PGBENCH,
                       "AppendEntries(1) C=32 (baton-load)", "pgbench INSERT C=32", baseline_unit="TPS"),
        same_run_ratio("AppendEntries(1 entry, durable, C=32) / pgbench INSERT into a plain table "
                       "(id, session, seq, text; no search index) TPS (C=32)", 0.5, rows,
                       APPEND, PGBENCH_PLAIN, "AppendEntries(1) C=32", "pgbench plain INSERT C=32",
                       baseline_unit="TPS"),
        same_run_ratio("GetContextWindow hot (C=64) / health Check rps (C=64)", WINDOW_HOT_TARGET, rows,
                       WINDOW_HOT, HEALTH,
                       "GetContextWindow hot C=64", "Health.Check C=64"),
        same_run_ratio("GetContextWindow hot (C=64) / health Check rps (C=64), Rust load client (baton-load)", 0.6,
                       rows, WINDOW_HOT_RUST, HEALTH_RUST, "GetContextWindow hot C=64", "Health.Check C=64"),
        same_run_ratio("MCP update_context (C=32, through baton-mcp) / gRPC AppendEntries(1) (C=32)", 0.8, rows,
                       MCP_UPDATE, (APPEND,), "update_context C=32", "AppendEntries(1) C=32", unit="ops/s"),
    ]

    stream = next((rows[n] for n in STREAM if n in rows), None)
    value = stream.entries_per_s if stream else None
    detail = ""
    if stream:
        detail = f"{stream.title}: {stream.count} replays of {stream.entries_per_call} entries, one stream at a time"
        if stream.errors:
            value, detail = None, detail + f"; {stream.errors} failed"
    out.append(at_least("StreamEntries replay, entries/s on one stream", value, STREAM_TARGET_ENTRIES_PER_S,
                        "entries/s", detail))

    out.append(mixed_target("Mixed 70/25/5 at 1,000 rps: p99", rows.get(MIXED_GROUP)))
    out.append(mixed_target("Mixed 70/25/5 at 1,000 rps: p99, Rust load client (baton-load)",
                            rows.get(MIXED_RUST_GROUP)))

    rss = run.get("rss_idle_kb")
    out.append(at_most("batond RSS idle", rss / 1024 if rss else None, RSS_IDLE_TARGET_MB, "MiB",
                       f"VmRSS after start-up and migrations, before any load{mem_units(rss)}"))

    peak = run.get("follow_rss_peak_kb")
    streams = run.get("follow_streams")
    detail = f"{streams:,} concurrent follow streams, peak VmRSS sampled every 0.5 s{mem_units(peak)}" if streams else ""
    if streams and streams < FOLLOW_STREAMS:
        detail += f" (quick mode: fewer than {FOLLOW_STREAMS:,}, so not the target's load)"
    t = at_most("batond RSS with 10k follow streams", peak / 1024 if peak else None, FOLLOW_RSS_TARGET_MB, "MiB",
                detail)
    if streams and streams < FOLLOW_STREAMS:
        t.met = None
    out.append(t)

    before, closed = run.get("follow_rss_before_kb"), run.get("follow_rss_closed_kb")
    kept = (closed - before) / 1024 if before and closed else None
    detail = (f"VmRSS 10 s after the last stream closed {closed / 1024:.1f} MiB, just before the first opened "
              f"{before / 1024:.1f} MiB" if kept is not None else "")
    t = at_most("batond RSS kept after 10k follow streams close (above its RSS before them)",
                max(kept, 0.001) if kept is not None else None, FOLLOW_KEPT_TARGET_MB, "MiB", detail)
    if streams and streams < FOLLOW_STREAMS:
        t.met = None
    out.append(t)
    return out


def mixed_target(name: str, mixed: Row | None) -> Target:
    """p99 of a mixed workload's merged row; failed calls fail it."""
    if not mixed:
        return at_most(name, None, MIXED_TARGET_P99_MS, "ms")
    t = at_most(name, mixed.p99_ms, MIXED_TARGET_P99_MS, "ms",
                f"achieved {mixed.rps:.0f} of {mixed.rate or MIXED_TARGET_RPS} rps; {mixed.errors} errors")
    if mixed.errors:
        t.met = False
    return t


def mem_units(kib: int | None) -> str:
    """VmRSS (KiB) in both units, since a target in "MB" may mean either."""
    if not kib:
        return ""
    return f" ({kib:,} KiB = {kib / 1024:.1f} MiB = {kib * 1.024 / 1000:.1f} MB)"


def spread(values: list[float], what: str) -> str:
    """How far apart the baseline runs before and after were: the run's noise."""
    values = [v for v in values if v]
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    return f" ({what} before/after: {values[0]:.0f}/{values[-1]:.0f}, spread {100 * (hi - lo) / hi:.0f} %)"


# ---- the run directory -------------------------------------------------------------------


def load_rows(run_dir: Path) -> list[Row]:
    """Every scenario's row, in the order they ran, with groups merged into one row each
    (their parts follow it)."""
    metas = []
    for p in sorted(run_dir.glob("*.meta.json")):
        meta = json.loads(p.read_text())
        if meta.get("kind") == "group":
            continue
        metas.append(meta)
    metas.sort(key=lambda m: m.get("seq", 0))
    rows: list[Row] = []
    groups: dict[str, list[tuple[dict, dict]]] = {}
    group_at: dict[str, int] = {}
    for meta in metas:
        name = meta["name"]
        if (run_dir / f"{name}.pgbench.txt").exists():
            rows.append(pgbench_row((run_dir / f"{name}.pgbench.txt").read_text(), meta))
            continue
        report_path = run_dir / f"{name}.ghz.json"
        if not report_path.exists():
            continue
        report = json.loads(report_path.read_text())
        group = meta.get("group", "")
        if group:
            if group not in groups:
                groups[group] = []
                group_at[group] = len(rows)
                rows.append(Row(name=group, title=group, call="mixed"))  # replaced below
            groups[group].append((report, meta))
        rows.append(parse_ghz(report, meta))
    for group, at in group_at.items():
        gmeta_path = run_dir / f"{group}.meta.json"
        gmeta = json.loads(gmeta_path.read_text()) if gmeta_path.exists() else {}
        merged = merge_group(group, gmeta.get("title", group), groups[group])
        add_cpu(merged, gmeta, merged.count)
        rows[at] = merged
    return rows


def summarize(run_dir: Path) -> dict:
    run_path = run_dir / "run.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else {}
    rows = load_rows(run_dir)
    by_name = {r.name: r for r in rows}
    return {
        "run": run,
        "scenarios": [asdict(r) for r in rows],
        "targets": [asdict(t) for t in targets(by_name, run)],
    }


# ---- rendering ---------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def render_markdown(summary: dict) -> str:
    run = summary["run"]
    lines = ["# Baton benchmark results", ""]
    m = run.get("machine") or {}
    pg = run.get("postgres") or {}
    lines.append(
        f"Run: {run.get('date', '?')}, mode `{run.get('mode', '?')}`, commit `{run.get('commit', '?')}`, "
        f"ghz {run.get('ghz_version', '?')}, store PostgreSQL {pg.get('version', '?')} "
        f"(synchronous_commit={pg.get('synchronous_commit', '?')}, shared_buffers={pg.get('shared_buffers', '?')}, "
        f"batond pool {run.get('db_max_connections', '?')}), Redis: {run.get('redis', 'not used')}, "
        f"auth: {run.get('auth', 'none')}."
    )
    lines.append(
        f"Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"{fmt((m.get('mem_total_kb') or 0) / 1048576, 1)} GiB RAM, kernel {m.get('kernel', '?')}; shared with "
        "other builds, so every ratio below divides figures measured minutes apart in this same run."
    )
    lines += ["", "## Targets", "", "| Target | Measured | Goal | Measured vs goal (≥ 1 meets) | Met | How |",
              "|---|---:|---:|---:|:--:|---|"]
    for t in summary["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        goal = f"{'≥' if t['unit'] in ('×', 'entries/s') else '≤'} {fmt(t['goal'])} {t['unit']}"
        measured = f"{fmt(t['measured'])} {t['unit']}" if t["measured"] is not None else "–"
        lines.append(f"| {t['name']} | {measured} | {goal} | {fmt(t['ratio'])} | {met} | {t['detail']} |")

    lines += ["", "## Scenarios", "",
              "| Scenario | RPC | C | Rate | Calls | rps | p50 ms | p95 ms | p99 ms | Errors "
              "| CPU ms/call: batond | DB | client | Machine busy | Notes |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in summary["scenarios"]:
        notes = []
        if r["entries_per_s"]:
            notes.append(f"{fmt(r['entries_per_s'], 0)} entries/s")
        if r.get("response_bytes"):
            size = r["response_bytes"]
            notes.append(f"{size / 1000:.1f} kB per response" if size >= 1000 else f"{size} B per response")
        if r.get("gateway_cpu_ms_per_call") is not None:
            notes.append(f"baton-mcp CPU {fmt(r['gateway_cpu_ms_per_call'], 3)} ms/call")
        if r["note"]:
            notes.append(r["note"])
        if r["errors"] and r["error_kinds"]:
            top = sorted(r["error_kinds"].items(), key=lambda kv: -kv[1])[:2]
            notes.append("errors: " + "; ".join(f"{k} ×{n}" for k, n in top))
        indent = "↳ " if r["group"] and r["name"] != r["group"] else ""
        busy = f"{r['machine_busy_pct']:.0f} %" if r["machine_busy_pct"] is not None else "–"
        lines.append(
            f"| {indent}{r['title']} | {r['call']} | {r['concurrency'] or '–'} | {r['rate'] or '–'} | {r['count']} "
            f"| {fmt(r['rps'], 1)} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {r['errors']} "
            f"| {fmt(r['server_cpu_ms_per_call'], 3)} | {fmt(r['db_cpu_ms_per_call'], 3)} "
            f"| {fmt(r['client_cpu_ms_per_call'], 3)} | {busy} "
            f"| {'; '.join(notes)} |"
        )
    lines += ["", "C: concurrent calls (ghz workers; pgbench clients). Rate: fixed request rate, if any. "
              "p50/p95/p99: ghz latency of successful calls (mixed: all calls of all parts). "
              "CPU ms/call: CPU time during the scenario, divided by its calls, of batond, of the benchmark "
              "database's backends (pgbench rows: pgbench's own, sampled just before it ends), and of the load generator "
              "(ghz, pgbench itself, or the Rust client named in the notes; through the MCP gateway, baton-mcp's own "
              "CPU is in the notes). Machine busy: all CPUs, every process, other engineers' builds "
              "included; near 100 % means the figures are CPU-bound on this 2-core machine.", ""]
    mem = [f"RSS idle after start {fmt((run.get('rss_idle_kb') or 0) / 1024, 1)} MiB"]
    if run.get("rss_after_kb"):
        mem.append(f"idle again after the load {fmt(run['rss_after_kb'] / 1024, 1)} MiB")
    if run.get("rss_hwm_kb"):
        mem.append(f"peak (VmHWM) {fmt(run['rss_hwm_kb'] / 1024, 1)} MiB")
    lines.append("batond memory: " + ", ".join(mem) + ".")
    if run.get("elapsed_s"):
        lines.append(f"Run time: {run['elapsed_s']} s (seeding {run.get('seed_s', '?')} s).")
    lines.append("")
    return "\n".join(lines)


BEGIN_MARK = "<!-- results:begin (written by ghz/run) -->"
END_MARK = "<!-- results:end -->"


def splice(document: str, results_md: str) -> str:
    """`document` with the text between the results markers replaced by `results_md` (its
    title dropped and its headings moved one level down). Unchanged if a marker is missing."""
    start, end = document.find(BEGIN_MARK), document.find(END_MARK)
    if start < 0 or end < start:
        return document
    body = results_md.split("\n", 1)[1] if results_md.startswith("# ") else results_md
    body = re.sub(r"^## ", "### ", body.strip(), flags=re.M)
    return document[: start + len(BEGIN_MARK)] + "\n" + body + "\n" + document[end:]


def check(report_path: Path) -> int:
    """0 when every call of the report ended OK, else 1 (with what failed on stderr)."""
    report = json.loads(report_path.read_text())
    errors, kinds = count_errors(report)
    if errors or not report.get("count"):
        print(f"{report_path}: {errors} of {report.get('count', 0)} calls failed: {kinds}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Summarise a ghz/run run directory.")
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("--md", type=Path, help="write the Markdown table here")
    p.add_argument("--json", type=Path, help="write the JSON summary here")
    p.add_argument("--readme", type=Path, help="also put the tables between the results markers of this file")
    p.add_argument("--check", type=Path, metavar="REPORT", help="exit 1 unless every call of REPORT succeeded")
    a = p.parse_args(argv)
    if a.check:
        return check(a.check)
    if not a.run_dir:
        p.error("RUN_DIR is required")
    summary = summarize(a.run_dir)
    md = render_markdown(summary)
    if a.md:
        a.md.write_text(md)
    if a.json:
        a.json.write_text(json.dumps(summary, indent=2) + "\n")
    if a.readme and a.readme.exists():
        a.readme.write_text(splice(a.readme.read_text(), md))
    if not a.md:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
