#!/usr/bin/env python3
"""The data half of `ghz/run`: CPU and memory read from /proc, and the JSON files that
ghz/summarize.py reads (NAME.meta.json per scenario, run.json per run). ghz/run starts the
services and the load; it calls this for every figure.

Python 3.11 standard library only. Subcommands:

    driver.py free-port                       a free loopback TCP port
    driver.py snapshot OUT --batond PID --shell PID [--gateway PID] [--db-pids PID...] [--db-pids-file FILE]
                                              the CPU counters of this moment, as JSON in OUT
    driver.py meta RUN_DIR NAME --seq N --before SNAP --after SNAP [fields...]
                                              RUN_DIR/NAME.meta.json: what a scenario cost
    driver.py rss PID [--field VmHWM]         a process' resident memory in kB
    driver.py rss-peak PID --while PID        the highest RSS of PID while the other one lives
    driver.py run-json OUT --mode M ...       run.json: the machine, the database, batond's memory

A snapshot holds the wall clock, batond's CPU ticks (utime + stime, /proc/PID/stat), the
machine's busy ticks (every CPU: /proc/stat user + nice + system + irq + softirq + steal), the
CPU seconds of the shell's waited-for children (cutime + cstime of the shell: ghz, pgbench and
baton-replay, which the shell runs and waits for), the ticks of each listed database backend
and, while the MCP scenario runs, those of the gateway (baton-mcp, which the shell starts in the
background: its CPU is its own, not the load generators'). A meta file holds the differences
between two snapshots.

The snapshot process itself is one of the shell's children: the "before" snapshot is waited for
inside the interval it opens, so its own CPU (self + children, measured as it ends) is taken off
the interval's client CPU. ghz/run runs this with `python3 -S` (no site packages) to keep that
cost near 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

PROC = Path("/proc")


# ---- reading /proc -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The CPU fields of one /proc/PID/stat line, in clock ticks."""

    utime: int
    stime: int
    cutime: int
    cstime: int
    state: str

    @property
    def ticks(self) -> int:
        """The process' own CPU: user + system."""
        return self.utime + self.stime

    @property
    def children_ticks(self) -> int:
        """The CPU of the children it has waited for (theirs and, recursively, their own)."""
        return self.cutime + self.cstime


def parse_pid_stat(line: str) -> ProcStat:
    """Parses /proc/PID/stat. The command name (field 2) is in parentheses and may itself hold
    spaces and parentheses, so the fields are counted from its last `)`: field 3 (state) is
    the first after it; 14 utime, 15 stime, 16 cutime, 17 cstime (proc(5))."""
    close = line.rfind(")")
    if close < 0:
        raise ValueError(f"not a /proc/PID/stat line: {line[:80]!r}")
    rest = line[close + 1 :].split()
    if len(rest) < 15:
        raise ValueError(f"too few fields in /proc/PID/stat: {line[:80]!r}")
    return ProcStat(utime=int(rest[11]), stime=int(rest[12]), cutime=int(rest[13]), cstime=int(rest[14]),
                    state=rest[0])


def parse_machine_busy(proc_stat: str) -> int:
    """Busy ticks of every CPU from /proc/stat's aggregate `cpu` line: user + nice + system +
    irq + softirq + steal (idle and iowait left out; guest time is already in user)."""
    for line in proc_stat.splitlines():
        f = line.split()
        if f and f[0] == "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[1:9])
            return user + nice + system + irq + softirq + steal
    raise ValueError("/proc/stat has no aggregate cpu line")


def parse_status_kb(status: str, key: str = "VmRSS") -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), or None when absent (a kernel thread,
    a zombie)."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


def parse_cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo ("" when there is none, as on some ARM)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "model name":
            return value.strip()
    return ""


def parse_help_default(help_text: str, flag: str) -> str | None:
    """The first numeric `[default: N]` that clap prints on `flag`'s line or after it."""
    lines = help_text.splitlines()
    start = next((i for i, line in enumerate(lines) if flag in line), None)
    if start is None:
        return None
    for line in lines[start:]:
        m = re.search(r"\[default: ([0-9]+)\]", line)
        if m:
            return m.group(1)
    return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process has ended (or never was)
        return None


def pid_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    text = read_text(proc / str(pid) / "stat")
    return parse_pid_stat(text) if text else None


def rss_kb(pid: int, key: str = "VmRSS", proc: Path = PROC) -> int | None:
    text = read_text(proc / str(pid) / "status")
    return parse_status_kb(text, key) if text else None


def alive(pid: int, proc: Path = PROC) -> bool:
    """True while `pid` runs (a zombie, ended but not yet waited for, counts as ended)."""
    stat = pid_stat(pid, proc)
    return stat is not None and stat.state not in ("Z", "X")


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def machine_cpus() -> int:
    """The CPUs this process may run on (what `nproc` prints)."""
    return len(os.sched_getaffinity(0))


# ---- snapshots and scenario metadata ------------------------------------------------------


@dataclass
class Snapshot:
    """The CPU counters at one moment (see the module's docstring)."""

    time: float
    batond_ticks: int
    machine_busy_ticks: int
    client_cpu_s: float
    db_ticks: dict[str, int] = field(default_factory=dict)
    # The snapshot process' own CPU (self + children) as it finished.
    self_cpu_s: float = 0.0
    # baton-mcp's ticks, when one was named (None: no gateway; 0: it has ended).
    gateway_ticks: int | None = None

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        return cls(**json.loads(path.read_text()))


def take_snapshot(batond: int, shell: int, db_pids: list[int], proc: Path = PROC, hz: int | None = None,
                  gateway: int | None = None) -> Snapshot:
    """Reads the counters. A process that has ended counts 0 (batond, the gateway) or is left
    out (a database backend)."""
    hz = hz or clock_ticks()
    now = time.time()
    server = pid_stat(batond, proc)
    busy = parse_machine_busy((proc / "stat").read_text())
    sh = pid_stat(shell, proc)
    db = {}
    for pid in db_pids:
        s = pid_stat(pid, proc)
        if s is not None:
            db[str(pid)] = s.ticks
    gw = pid_stat(gateway, proc) if gateway is not None else None
    return Snapshot(
        time=now,
        batond_ticks=server.ticks if server else 0,
        machine_busy_ticks=busy,
        client_cpu_s=sh.children_ticks / hz if sh else 0.0,
        db_ticks=db,
        gateway_ticks=None if gateway is None else (gw.ticks if gw else 0),
    )


def own_cpu_s() -> float:
    """This process' CPU so far, and that of the children it waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def db_ticks_between(before: Snapshot, after: Snapshot) -> int:
    """The database backends' ticks between two snapshots: for each backend present at the
    end, its ticks less those at the start (all of them if it started in between). A backend
    that ended in between is not counted (its ticks are gone with it)."""
    return sum(t - before.db_ticks.get(pid, 0) for pid, t in after.db_ticks.items())


def sampled_db_cpu_s(sample: Snapshot, started: float, seconds: float, hz: int) -> float:
    """For pgbench, whose backends end with it: their ticks read in `sample` (taken shortly
    before the end), scaled from the time since `started` to the whole `seconds` of the run."""
    span = sample.time - started
    if span <= 0:
        raise ValueError("the sample must be taken after the start")
    return sum(sample.db_ticks.values()) / hz * seconds / span


@dataclass
class MetaFields:
    """What ghz/summarize.py reads of a scenario besides its CPU figures."""

    title: str | None = None
    group: str | None = None
    kind: str | None = None
    note: str | None = None
    script: str | None = None
    entries_per_call: int | None = None
    expected_codes: list[str] | None = None

    def items(self) -> list[tuple[str, object]]:
        return [(k, v) for k, v in asdict(self).items() if v is not None]


def scenario_meta(
    name: str,
    seq: int,
    before: Snapshot,
    after: Snapshot,
    hz: int,
    cpus: int,
    fields: MetaFields,
    cpu: bool = True,
    db_cpu_s: float | None = None,
    inside: tuple[Snapshot, ...] = (),
) -> dict:
    """A scenario's metadata: its wall time and, unless `cpu` is off (the parts of a group, whose
    CPU is the group's), the CPU seconds of batond, of the database (`db_cpu_s` when given, else
    the backends' ticks), of the whole machine, of the load generators and, when both snapshots
    counted one, of the gateway. `inside`: other snapshots taken during the interval, whose own
    CPU is not the load generators'."""
    meta: dict[str, object] = {"name": name, "seq": seq, "wall_s": round(after.time - before.time, 3)}
    if cpu:
        db = db_cpu_s if db_cpu_s is not None else db_ticks_between(before, after) / hz
        snapshots_cpu = before.self_cpu_s + sum(s.self_cpu_s for s in inside)
        client = max(0.0, after.client_cpu_s - before.client_cpu_s - snapshots_cpu)
        meta |= {
            "server_cpu_s": round((after.batond_ticks - before.batond_ticks) / hz, 3),
            "db_cpu_s": round(db, 3),
            "machine_busy_cpu_s": round((after.machine_busy_ticks - before.machine_busy_ticks) / hz, 3),
            "client_cpu_s": round(client, 3),
        }
        # A gateway that ended in between took its ticks along: its CPU is unknown, not negative.
        if before.gateway_ticks is not None and after.gateway_ticks is not None \
                and after.gateway_ticks >= before.gateway_ticks:
            meta["gateway_cpu_s"] = round((after.gateway_ticks - before.gateway_ticks) / hz, 3)
    meta["machine_cpus"] = cpus
    meta.update(fields.items())
    return meta


# ---- the run --------------------------------------------------------------------------------


def machine_info(proc: Path = PROC) -> dict:
    meminfo = (proc / "meminfo").read_text()
    mem = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    return {
        "nproc": machine_cpus(),
        "cpu_model": parse_cpu_model((proc / "cpuinfo").read_text()),
        "mem_total_kb": mem,
        "kernel": os.uname().release,
    }


def run_info(a: argparse.Namespace, machine: dict, date: datetime, pool: str) -> dict:
    """run.json, in the order ghz/results/latest.json shows it."""
    return {
        "mode": a.mode,
        "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": a.commit,
        "ghz_version": a.ghz_version,
        "machine": machine,
        "postgres": {
            "version": a.pg_version,
            "synchronous_commit": a.synchronous_commit,
            "shared_buffers": a.shared_buffers,
        },
        "db_max_connections": pool,
        "redis": a.redis,
        "auth": a.auth,
        "rss_idle_kb": a.rss_idle_kb,
        "rss_after_kb": a.rss_after_kb,
        "rss_hwm_kb": a.rss_hwm_kb,
        "follow_rss_peak_kb": a.follow_peak_kb,
        "follow_rss_before_kb": a.follow_before_kb,
        "follow_rss_closed_kb": a.follow_closed_kb,
        "follow_streams": a.follow_streams,
        "seed_s": a.seed_s,
        "elapsed_s": a.elapsed_s,
    }


def pool_size(help_path: Path | None) -> str:
    """batond's --db-max-connections default from its --help, else the environment's, else ?."""
    if help_path is not None:
        value = parse_help_default(help_path.read_text(), "--db-max-connections")
        if value:
            return value
    return os.environ.get("BATON_DB_MAX_CONNECTIONS") or "?"


def write_json(path: Path, value: object) -> None:
    """Writes through a temporary name, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value) + "\n")
    tmp.replace(path)


# ---- commands -----------------------------------------------------------------------------


def cmd_free_port(_: argparse.Namespace) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    return 0


def wait_for_pids(path: Path, timeout: float) -> list[int]:
    """The pids in `path` (whitespace-separated), once it exists. The writer renames it into
    place, so it is whole when it appears."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"driver.py snapshot: {path} did not appear within {timeout:.0f} s")
        time.sleep(0.01)
    return [int(p) for p in path.read_text().split()]


def cmd_snapshot(a: argparse.Namespace) -> int:
    db_pids = list(a.db_pids)
    if a.db_pids_file is not None:
        db_pids += wait_for_pids(a.db_pids_file, a.timeout)
    snap = take_snapshot(a.batond, a.shell, db_pids, gateway=a.gateway)
    snap.self_cpu_s = round(own_cpu_s(), 3)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, asdict(snap))
    return 0


def cmd_meta(a: argparse.Namespace) -> int:
    hz = clock_ticks()
    before, after = Snapshot.load(a.before), Snapshot.load(a.after)
    inside: tuple[Snapshot, ...] = ()
    db_cpu = None
    if a.db_sample is not None:
        if a.db_sample_start is None or a.db_sample_secs is None:
            raise SystemExit("--db-sample needs --db-sample-start and --db-sample-secs")
        sample = Snapshot.load(a.db_sample)
        inside = (sample,)
        db_cpu = sampled_db_cpu_s(sample, a.db_sample_start, a.db_sample_secs, hz)
    fields = MetaFields(
        title=a.title,
        group=a.group,
        kind=a.kind,
        note=a.note,
        script=a.script,
        entries_per_call=a.entries_per_call,
        expected_codes=a.expected_codes.split(",") if a.expected_codes else None,
    )
    meta = scenario_meta(a.name, a.seq, before, after, hz, machine_cpus(), fields, cpu=not a.no_cpu,
                         db_cpu_s=db_cpu, inside=inside)
    write_json(a.run_dir / f"{a.name}.meta.json", meta)
    return 0


def cmd_rss(a: argparse.Namespace) -> int:
    kb = rss_kb(a.pid, a.field)
    if kb is None:
        print(f"driver.py rss: no {a.field} for process {a.pid}", file=sys.stderr)
        return 1
    print(kb)
    return 0


def cmd_rss_peak(a: argparse.Namespace) -> int:
    peak = 0
    deadline = time.monotonic() + a.timeout
    while alive(a.watch) and time.monotonic() < deadline:
        peak = max(peak, rss_kb(a.pid) or 0)
        time.sleep(a.interval)
    print(peak)
    return 0


def cmd_run_json(a: argparse.Namespace) -> int:
    info = run_info(a, machine_info(), datetime.now(timezone.utc), pool_size(a.batond_help))
    write_json(a.out, info)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="ghz/run's measurements and metadata files.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("free-port", help="print a free loopback TCP port")
    s.set_defaults(run=cmd_free_port)

    s = sub.add_parser("snapshot", help="write the CPU counters of this moment")
    s.add_argument("out", type=Path)
    s.add_argument("--batond", type=int, required=True, help="batond's pid")
    s.add_argument("--shell", type=int, required=True, help="the pid of the shell that waits for the load generators")
    s.add_argument("--gateway", type=int, help="baton-mcp's pid, while the MCP scenario runs")
    s.add_argument("--db-pids", type=int, nargs="*", default=[], metavar="PID", help="database backends to count")
    s.add_argument("--db-pids-file", type=Path, metavar="FILE",
                   help="wait for FILE, then count the backends it lists: start the process early and let it "
                        "read the counters the moment their pids are known (pgbench's backends end with it)")
    s.add_argument("--timeout", type=float, default=120.0, help="how long to wait for --db-pids-file")
    s.set_defaults(run=cmd_snapshot)

    s = sub.add_parser("meta", help="write RUN_DIR/NAME.meta.json from two snapshots")
    s.add_argument("run_dir", type=Path)
    s.add_argument("name")
    s.add_argument("--seq", type=int, required=True, help="the scenario's place in the run")
    s.add_argument("--before", type=Path, required=True)
    s.add_argument("--after", type=Path, required=True)
    s.add_argument("--no-cpu", action="store_true", help="wall time only (a part of a group)")
    s.add_argument("--db-sample", type=Path, help="a snapshot of pgbench's backends taken shortly before it ended")
    s.add_argument("--db-sample-start", type=float, help="when pgbench started (epoch seconds)")
    s.add_argument("--db-sample-secs", type=float, help="how long pgbench ran (its -T)")
    for name in ("title", "group", "kind", "note", "script"):
        s.add_argument(f"--{name}")
    s.add_argument("--entries-per-call", type=int)
    s.add_argument("--expected-codes", help="status codes that end calls by design, comma-separated")
    s.set_defaults(run=cmd_meta)

    s = sub.add_parser("rss", help="print a process' VmRSS (or --field) in kB")
    s.add_argument("pid", type=int)
    s.add_argument("--field", default="VmRSS", choices=("VmRSS", "VmHWM"))
    s.set_defaults(run=cmd_rss)

    s = sub.add_parser("rss-peak", help="sample PID's RSS while WATCH lives; print the peak in kB")
    s.add_argument("pid", type=int)
    s.add_argument("--while", dest="watch", type=int, required=True, metavar="WATCH")
    s.add_argument("--interval", type=float, default=0.5)
    s.add_argument("--timeout", type=float, default=900.0, help="stop sampling after this many seconds anyway")
    s.set_defaults(run=cmd_rss_peak)

    s = sub.add_parser("run-json", help="write run.json")
    s.add_argument("out", type=Path)
    s.add_argument("--mode", required=True)
    s.add_argument("--commit", required=True)
    s.add_argument("--ghz-version", required=True)
    s.add_argument("--pg-version", required=True)
    s.add_argument("--synchronous-commit", required=True)
    s.add_argument("--shared-buffers", required=True)
    s.add_argument("--batond-help", type=Path, help="batond --help's output (for the pool size)")
    s.add_argument("--redis", required=True, help="the Redis URL, or why there is none")
    s.add_argument("--auth", default="none", help="how batond authenticated the load (none, or the key setup)")
    s.add_argument("--rss-idle-kb", type=int, required=True, help="batond's RSS after start-up")
    s.add_argument("--rss-after-kb", type=int, required=True, help="batond's RSS after the load")
    s.add_argument("--rss-hwm-kb", type=int, required=True, help="batond's peak RSS (VmHWM)")
    s.add_argument("--follow-peak-kb", type=int, default=0)
    s.add_argument("--follow-before-kb", type=int, default=0, help="batond's RSS just before the follow streams")
    s.add_argument("--follow-closed-kb", type=int, default=0, help="batond's RSS 10 s after they closed")
    s.add_argument("--follow-streams", type=int, required=True)
    s.add_argument("--seed-s", type=int, default=0)
    s.add_argument("--elapsed-s", type=int, required=True)
    s.set_defaults(run=cmd_run_json)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    return a.run(a)


if __name__ == "__main__":
    sys.exit(main())
