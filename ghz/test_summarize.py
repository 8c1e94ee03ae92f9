"""Unit tests of ghz/summarize.py: parsing ghz and pgbench reports, merging the mixed
workload, the target ratios and the rendered table. Run: python3 -m unittest discover -s ghz
(no benchmark runs; no timing assertions)."""

from __future__ import annotations

import io
import json
import sys
import tempfile
import unittest
from contextlib import redirect_stderr
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import summarize as s  # noqa: E402

MS = 1_000_000  # ghz reports durations in nanoseconds


def ghz_report(call="baton.v1.ContextService/AppendEntries", count=1000, rps=500.0, c=32, rate=0,
               p50=2.0, p95=4.0, p99=8.0, codes=None, errors=None, details=None):
    """A report shaped like ghz's `-O json` output."""
    return {
        "date": "2025-01-01T00:00:00Z",
        "options": {"call": call, "concurrency": c, "rps": rate, "insecure": True},
        "count": count,
        "total": int(count / rps * 1e9),
        "average": int(p50 * 1.1 * MS),
        "fastest": int(0.5 * MS),
        "slowest": int(p99 * 2 * MS),
        "rps": rps,
        "errorDistribution": errors or {},
        "statusCodeDistribution": codes or {"OK": count},
        "latencyDistribution": [
            {"percentage": p, "latency": int(v * MS)}
            for p, v in ((10, p50 / 2), (25, p50 * 0.8), (50, p50), (75, p50 * 1.5), (90, p95 * 0.9), (95, p95),
                         (99, p99))
        ],
        "histogram": [],
        "details": details or [],
    }


PGBENCH_OUT = """\
pgbench (15.14 (Debian 15.14-0+deb12u1))
transaction type: ghz/pgbench/insert_entry.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 8 s
number of transactions actually processed: 24000
number of failed transactions: 0 (0.000%)
latency average = 10.667 ms
initial connection time = 41.000 ms
tps = 3000.123456 (without initial connection time)
"""


class ParseTest(unittest.TestCase):
    def test_latency_percentiles_in_ms(self):
        r = ghz_report(p50=2.5, p95=4.0, p99=9.0)
        self.assertAlmostEqual(s.latency_ms(r, 50), 2.5)
        self.assertAlmostEqual(s.latency_ms(r, 99), 9.0)
        self.assertIsNone(s.latency_ms(r, 42))
        self.assertIsNone(s.latency_ms({"latencyDistribution": None}, 50))

    def test_errors_skip_ok_and_expected_codes(self):
        r = ghz_report(count=10, codes={"OK": 6, "Unavailable": 1, "Canceled": 3},
                       errors={"rpc error: code = Unavailable desc = pool timed out": 1,
                               "rpc error: code = Canceled desc = context canceled": 3})
        n, kinds = s.count_errors(r, ("Canceled",))
        self.assertEqual(n, 1)
        self.assertEqual(kinds, {"rpc error: code = Unavailable desc = pool timed out": 1})
        n, kinds = s.count_errors(r)
        self.assertEqual(n, 4)
        self.assertEqual(len(kinds), 2)

    def test_errors_fall_back_to_status_codes(self):
        n, kinds = s.count_errors(ghz_report(count=5, codes={"OK": 3, "Internal": 2}))
        self.assertEqual((n, kinds), (2, {"Internal": 2}))

    def test_row_from_report_and_meta(self):
        meta = {"name": "stream_replay_c1", "title": "StreamEntries replay", "entries_per_call": 10000,
                "server_cpu_s": 2.0, "db_cpu_s": 1.0, "wall_s": 10.0, "machine_busy_cpu_s": 15.0,
                "machine_cpus": 2}
        row = s.parse_ghz(ghz_report(call="baton.v1.ContextService/StreamEntries", count=5, rps=2.5, c=1), meta)
        self.assertEqual(row.call, "StreamEntries")
        self.assertEqual(row.concurrency, 1)
        self.assertEqual(row.entries_per_s, 25_000)
        self.assertAlmostEqual(row.server_cpu_ms_per_call, 400.0)
        self.assertAlmostEqual(row.db_cpu_ms_per_call, 200.0)
        self.assertAlmostEqual(row.machine_busy_pct, 75.0)
        self.assertIsNone(row.rate)

    def test_short_call(self):
        self.assertEqual(s.short_call("grpc.health.v1.Health/Check"), "Check")
        self.assertEqual(s.short_call("baton.v1.HandoffService.RequestHandoff"), "RequestHandoff")

    def test_pgbench(self):
        pg = s.parse_pgbench(PGBENCH_OUT)
        self.assertEqual(pg, {"tps": 3000.123456, "latency_avg_ms": 10.667, "clients": 32, "transactions": 24000,
                              "failed": 0})
        row = s.pgbench_row(PGBENCH_OUT, {"name": "pgbench_insert_c32_a"})
        self.assertEqual((row.concurrency, row.count, row.errors), (32, 24000, 0))
        self.assertAlmostEqual(row.rps, 3000.123456)

    def test_pgbench_garbage(self):
        self.assertEqual(s.parse_pgbench("connection refused"), {"failed": 0})


class MergeTest(unittest.TestCase):
    def test_percentile_nearest_rank(self):
        values = [float(v) for v in range(1, 101)]
        self.assertEqual(s.percentile(values, 50), 50.0)
        self.assertEqual(s.percentile(values, 99), 99.0)
        self.assertEqual(s.percentile(values, 100), 100.0)
        self.assertEqual(s.percentile([7.0], 99), 7.0)
        self.assertIsNone(s.percentile([], 50))

    def test_group_merges_every_call(self):
        fast = [{"latency": 1 * MS, "status": "OK", "error": ""}] * 98
        slow = [{"latency": 20 * MS, "status": "OK", "error": ""},
                {"latency": 30 * MS, "status": "Unavailable", "error": "rpc error: code = Unavailable desc = x"}]
        a = ghz_report(count=98, rps=700, rate=700, details=fast)
        b = ghz_report(count=2, rps=2, rate=300, details=slow, codes={"OK": 1, "Unavailable": 1},
                       errors={"rpc error: code = Unavailable desc = x": 1})
        row = s.merge_group("mixed", "Mixed", [(a, {}), (b, {})])
        self.assertEqual(row.count, 100)
        self.assertEqual(row.rate, 1000)
        self.assertAlmostEqual(row.rps, 702)
        self.assertEqual(row.p50_ms, 1.0)
        self.assertEqual(row.p99_ms, 20.0)
        self.assertEqual(row.errors, 1)


def rows(**kw):
    out = {}
    for name, (rps, extra) in kw.items():
        out[name] = s.Row(name=name, title=name, call="x", rps=rps, **extra)
    return out


class TargetTest(unittest.TestCase):
    def test_ratios_against_baselines_of_the_same_run(self):
        r = rows(
            append1_c32=(1500.0, {}),
            pgbench_insert_c32_a=(2800.0, {}),
            pgbench_insert_c32_b=(3200.0, {}),
            pgbench_plain_c32_a=(2900.0, {}),
            pgbench_plain_c32_b=(3100.0, {}),
            window_hot_c64=(6000.0, {}),
            health_c64_a=(20000.0, {}),
            health_c64_b=(20000.0, {}),
            window_hot_rust_c64=(13000.0, {}),
            health_rust_c64_a=(19000.0, {}),
            health_rust_c64_b=(21000.0, {}),
            mcp_update_c32=(1200.0, {}),
            stream_replay_c1=(5.0, {"entries_per_call": 10000, "entries_per_s": 50000.0, "count": 5}),
            mixed=(990.0, {"rate": 1000, "p99_ms": 4.0, "errors": 0}),
            mixed_rust=(1000.0, {"rate": 1000, "p99_ms": 12.5, "errors": 0}),
        )
        ts = s.targets(r, {"rss_idle_kb": 20 * 1024, "follow_rss_peak_kb": 300 * 1024, "follow_streams": 10000,
                           "follow_rss_before_kb": 100 * 1024, "follow_rss_closed_kb": 120 * 1024})
        self.assertEqual(len(ts), 12)
        append, append_rust, plain, window, window_rust, mcp, stream, mixed, mixed_rust, rss, follow, kept = ts
        # Not in this run: no figure, no verdict.
        self.assertIsNone(append_rust.measured)
        self.assertAlmostEqual(append.measured, 0.5)
        self.assertFalse(append.met)
        self.assertIn("spread 12 %", append.detail)
        # The plain table's baseline: its own pair of runs, its own goal (0.5).
        self.assertAlmostEqual(plain.measured, 0.5)
        self.assertTrue(plain.met)
        self.assertIn("plain table", plain.name)
        self.assertIn("pgbench plain INSERT C=32 before/after: 2900/3100", plain.detail)
        self.assertAlmostEqual(window.measured, 0.3)
        self.assertFalse(window.met)
        # The Rust client's ratio divides by the Rust client's health runs, not ghz's.
        self.assertAlmostEqual(window_rust.measured, 0.65)
        self.assertTrue(window_rust.met)
        self.assertIn("baton-load", window_rust.name)
        # MCP against the same run's AppendEntries(1) C=32: 1200 / 1500.
        self.assertAlmostEqual(mcp.measured, 0.8)
        self.assertTrue(mcp.met)
        self.assertEqual(mcp.detail, "update_context C=32 1200 ops/s / AppendEntries(1) C=32 1500 rps")
        self.assertEqual(stream.measured, 50000.0)
        self.assertAlmostEqual(stream.ratio, 0.2)
        self.assertFalse(stream.met)
        self.assertTrue(mixed.met)
        self.assertAlmostEqual(mixed.ratio, 2.5)
        self.assertEqual(mixed.name, "Mixed 70/25/5 at 1,000 rps: p99")
        # The same workload from baton-load: its own row, its own verdict.
        self.assertEqual(mixed_rust.name, "Mixed 70/25/5 at 1,000 rps: p99, Rust load client (baton-load)")
        self.assertEqual(mixed_rust.measured, 12.5)
        self.assertFalse(mixed_rust.met)
        self.assertEqual(mixed_rust.detail, "achieved 1000 of 1000 rps; 0 errors")
        self.assertTrue(rss.met)
        self.assertAlmostEqual(rss.measured, 20.0)
        self.assertIn("20,480 KiB = 20.0 MiB = 21.0 MB", rss.detail)
        self.assertFalse(follow.met)
        # What the streams left behind: RSS 10 s after the close minus RSS before them.
        self.assertAlmostEqual(kept.measured, 20.0)
        self.assertTrue(kept.met)
        self.assertIn("before the first opened 100.0 MiB", kept.detail)

    def test_stream_target_prefers_the_prost_client(self):
        r = rows(
            stream_replay_c1=(3.0, {"entries_per_call": 10000, "entries_per_s": 30000.0}),
            stream_replay_rust_c1=(15.0, {"entries_per_call": 10000, "entries_per_s": 150000.0}),
        )
        def stream():
            return next(t for t in s.targets(r, {}) if t.name.startswith("StreamEntries"))

        self.assertEqual(stream().measured, 150000.0)
        del r["stream_replay_rust_c1"]
        self.assertEqual(stream().measured, 30000.0)
        r["stream_replay_c1"].errors = 1
        self.assertIsNone(stream().measured)

    def test_failed_calls_fail_a_ratio_target(self):
        r = rows(append1_c32=(1500.0, {}), mcp_update_c32=(1400.0, {"errors": 7}))
        mcp = next(t for t in s.targets(r, {}) if t.name.startswith("MCP"))
        self.assertAlmostEqual(mcp.measured, 1400 / 1500)
        self.assertFalse(mcp.met)
        self.assertIn("7 errors", mcp.detail)

    def test_errors_fail_the_mixed_target_and_missing_figures_are_unmet_unknown(self):
        r = rows(mixed=(1000.0, {"rate": 1000, "p99_ms": 1.0, "errors": 3}))
        ts = s.targets(r, {"follow_rss_peak_kb": 50 * 1024, "follow_streams": 1000})
        append, append_rust, plain, window, window_rust, mcp, stream, mixed, mixed_rust, rss, follow, kept = ts
        self.assertFalse(mixed.met)
        for missing in (append, append_rust, plain, window, window_rust, mcp, mixed_rust):
            self.assertIsNone(missing.measured)
            self.assertIsNone(missing.met)
            self.assertEqual(missing.detail, "not measured in this run")
        self.assertIsNone(rss.met)
        # A quick run's 1k streams say nothing about the 10k target.
        self.assertIsNone(follow.met)
        self.assertIn("quick mode", follow.detail)
        self.assertIsNone(kept.measured)
        self.assertIsNone(kept.met)


class RunDirTest(unittest.TestCase):
    def write(self, d: Path, name: str, meta: dict, report: dict | None = None, pgbench: str | None = None):
        (d / f"{name}.meta.json").write_text(json.dumps({"name": name, **meta}))
        if report is not None:
            (d / f"{name}.ghz.json").write_text(json.dumps(report))
        if pgbench is not None:
            (d / f"{name}.pgbench.txt").write_text(pgbench)

    def test_summarize_and_render(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "run.json").write_text(json.dumps({"mode": "full", "rss_idle_kb": 12000,
                                                     "machine": {"nproc": 2, "cpu_model": "Test CPU"}}))
            self.write(d, "pgbench_insert_c32_a", {"seq": 1, "title": "pgbench before"}, pgbench=PGBENCH_OUT)
            self.write(d, "append1_c32", {"seq": 2, "title": "AppendEntries(1) C=32", "server_cpu_s": 1.0,
                                          "wall_s": 10, "machine_busy_cpu_s": 10, "machine_cpus": 2},
                       ghz_report(count=10000, rps=1000.0))
            self.write(d, "mixed", {"seq": 3, "kind": "group", "title": "Mixed"})
            details = [{"latency": 2 * MS, "status": "OK", "error": ""}] * 10
            self.write(d, "mixed_window", {"seq": 4, "group": "mixed", "title": "reads"},
                       ghz_report(count=10, rps=7.0, rate=7, details=details))
            self.write(d, "mixed_append", {"seq": 5, "group": "mixed", "title": "appends"},
                       ghz_report(count=10, rps=3.0, rate=3, details=details))
            self.write(d, "no_report", {"seq": 6, "title": "ghz crashed"})
            # A Rust client's report: ghz's shape, plus the bytes it counted per response.
            self.write(d, "window_hot_rust_c64", {"seq": 7, "title": "GetContextWindow hot C=64 (baton-load)",
                                                  "note": "client: baton-load", "server_cpu_s": 2.0},
                       {**ghz_report(call="baton.v1.ContextService/GetContextWindow", count=20000, rps=2000.0, c=64),
                        "bytesPerCall": 35120})
            self.write(d, "health_rust_c64_a", {"seq": 8, "title": "Health.Check C=64 (baton-load)"},
                       {**ghz_report(call="grpc.health.v1.Health/Check", count=20000, rps=20000.0, c=64),
                        "bytesPerCall": 2})
            self.write(d, "mcp_update_c32", {"seq": 9, "title": "MCP update_context C=32", "gateway_cpu_s": 3.0,
                                             "server_cpu_s": 1.0},
                       ghz_report(call="mcp/update_context", count=5000, rps=500.0))
            # The mixed workload from baton-load: a group of its own, its parts' reports in the
            # Rust client's shape (no histogram; details without timestamps, failed calls last).
            self.write(d, "mixed_rust", {"seq": 10, "kind": "group", "title": "Mixed, baton-load",
                                         "server_cpu_s": 0.5, "wall_s": 5, "machine_busy_cpu_s": 5,
                                         "machine_cpus": 2})
            rust_details = [{"latency": 1 * MS, "status": "OK", "error": ""}] * 9
            rust_details.append({"latency": 20 * MS, "status": "DeadlineExceeded", "error": "DeadlineExceeded"})
            for seq, part, rate in ((11, "mixed_rust_window", 7), (12, "mixed_rust_handoff", 3)):
                report = ghz_report(call="baton.v1.ContextService/GetContextWindow", count=10, rps=float(rate),
                                    rate=rate, c=16, details=rust_details,
                                    codes={"OK": 9, "DeadlineExceeded": 1},
                                    errors={"no answer within 20 ms": 1})
                del report["histogram"], report["date"]
                self.write(d, part, {"seq": seq, "group": "mixed_rust", "title": part,
                                     "note": "client: baton-load (ghz/replay)"}, {**report, "bytesPerCall": 100})

            summary = s.summarize(d)
            names = [r["name"] for r in summary["scenarios"]]
            self.assertEqual(names, ["pgbench_insert_c32_a", "append1_c32", "mixed", "mixed_window", "mixed_append",
                                     "window_hot_rust_c64", "health_rust_c64_a", "mcp_update_c32", "mixed_rust",
                                     "mixed_rust_window", "mixed_rust_handoff"])
            mixed = summary["scenarios"][2]
            self.assertEqual((mixed["count"], mixed["rate"], mixed["p99_ms"]), (20, 10, 2.0))
            mixed_rust = summary["scenarios"][8]
            self.assertEqual((mixed_rust["title"], mixed_rust["count"], mixed_rust["rate"]),
                             ("Mixed, baton-load", 20, 10))
            # Percentiles over every call of both parts, the timed-out ones included.
            self.assertEqual((mixed_rust["p50_ms"], mixed_rust["p95_ms"], mixed_rust["errors"]), (1.0, 20.0, 2))
            self.assertAlmostEqual(mixed_rust["server_cpu_ms_per_call"], 25.0)
            self.assertAlmostEqual(mixed_rust["machine_busy_pct"], 50.0)
            rust_target = next(t for t in summary["targets"] if t["name"].endswith("(baton-load)")
                               and t["name"].startswith("Mixed"))
            self.assertEqual((rust_target["measured"], rust_target["met"]), (20.0, False))
            append = next(t for t in summary["targets"] if t["name"].startswith("AppendEntries"))
            self.assertAlmostEqual(append["measured"], 1000 / 3000.123456)
            self.assertAlmostEqual(summary["scenarios"][1]["server_cpu_ms_per_call"], 0.1)

            md = s.render_markdown(summary)
            self.assertIn("| AppendEntries(1) C=32 | AppendEntries | 32 |", md)
            self.assertIn("| ↳ reads |", md)
            self.assertIn("| Mixed, baton-load | mixed | – | 10 | 20 |", md)
            self.assertIn("| ↳ mixed_rust_handoff | GetContextWindow | 16 | 3 | 10 |", md)
            self.assertIn("Test CPU", md)
            self.assertIn("**no**", md)
            self.assertIn("| GetContextWindow hot C=64 (baton-load) | GetContextWindow | 64 |", md)
            self.assertIn("35.1 kB per response; client: baton-load |", md)
            self.assertIn("| 2 B per response |", md)
            self.assertIn("| MCP update_context C=32 | update_context | 32 |", md)
            self.assertIn("| 0.200 | – | – | – | baton-mcp CPU 0.600 ms/call |", md)
            mcp = next(t for t in summary["targets"] if t["name"].startswith("MCP"))
            self.assertAlmostEqual(mcp["measured"], 0.5)
            json.dumps(summary)  # serialisable as latest.json

            out_md, out_json = d / "out.md", d / "out.json"
            self.assertEqual(s.main([str(d), "--md", str(out_md), "--json", str(out_json)]), 0)
            self.assertEqual(json.loads(out_json.read_text())["run"]["mode"], "full")
            self.assertTrue(out_md.read_text().startswith("# Baton benchmark results"))

    def test_splice_replaces_only_between_the_markers(self):
        doc = f"intro\n{s.BEGIN_MARK}\nold table\n{s.END_MARK}\noutro\n"
        out = s.splice(doc, "# Baton benchmark results\n\nRun: x\n\n## Targets\n\n| a |\n")
        self.assertEqual(out, f"intro\n{s.BEGIN_MARK}\nRun: x\n\n### Targets\n\n| a |\n{s.END_MARK}\noutro\n")
        self.assertEqual(s.splice("no markers", "# t\nx"), "no markers")

    def test_check(self):
        with tempfile.TemporaryDirectory() as tmp:
            ok, bad = Path(tmp) / "ok.json", Path(tmp) / "bad.json"
            ok.write_text(json.dumps(ghz_report(count=3)))
            bad.write_text(json.dumps(ghz_report(count=3, codes={"OK": 2, "AlreadyExists": 1})))
            self.assertEqual(s.main(["--check", str(ok)]), 0)
            with redirect_stderr(io.StringIO()) as err:
                self.assertEqual(s.main(["--check", str(bad)]), 1)
            self.assertIn("1 of 3 calls failed", err.getvalue())


if __name__ == "__main__":
    unittest.main()
