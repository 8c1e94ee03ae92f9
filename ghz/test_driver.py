"""Unit tests of ghz/driver.py, the data half of ghz/run: /proc parsing (from recorded lines),
snapshots of a fake /proc tree and of this very process, the scenario metadata and run.json it
writes, and that ghz/summarize.py reads them. Run: python3 -m unittest discover -s ghz
(no benchmark runs; no timing assertions)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import driver as d  # noqa: E402
import summarize as s  # noqa: E402

# Recorded lines, shaped as proc(5) describes them. batond: utime 1234, stime 567, cutime 8,
# cstime 9; the command name may hold spaces and parentheses.
BATOND_STAT = (
    "4242 (batond) S 1 4242 4242 0 -1 4194560 5123 0 12 0 1234 567 8 9 20 0 9 0 812345 "
    "1234567890 4100 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0"
)
ODD_NAME_STAT = (
    "77 (tokio rt) (x)) R 1 77 77 0 -1 4194304 10 0 0 0 300 45 6000 700 20 0 1 0 99 1000 10 "
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
)
# A shell that has waited for ghz: its children's CPU is in cutime + cstime (fields 16, 17).
SHELL_STAT = (
    "100 (bash) S 99 100 100 34816 100 4194304 2000 90000 0 12 15 7 2500 480 20 0 1 0 500 "
    "9000000 900 18446744073709551615 1 1 0 0 0 0 65536 3670020 1266777851 0 0 0 17 0 0 0 0 0 0"
)
ZOMBIE_STAT = "555 (ghz) Z 100 555 100 0 -1 4227084 0 0 0 0 40 10 0 0 20 0 1 0 600 0 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
PROC_STAT = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 7 0 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0
cpu1 1335521 12458 457468 13358432 2934 0 4126 7 0 0
intr 1462898 126 0 0 0
ctxt 2341913
btime 1700000000
"""
BUSY = 10132153 + 290696 + 3084719 + 0 + 25195 + 7  # user nice system irq softirq steal
STATUS = """\
Name:\tbatond
State:\tS (sleeping)
VmPeak:\t  812345 kB
VmHWM:\t   228668 kB
VmRSS:\t    16408 kB
Threads:\t9
"""
CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme

processor\t: 1
model name\t: AMD EPYC 7B13
"""
MEMINFO = "MemTotal:       24684084 kB\nMemFree:         1000000 kB\n"
HELP = """\
Usage: batond [OPTIONS]

Options:
      --grpc-addr <GRPC_ADDR>
          gRPC listen address [env: BATON_GRPC_ADDR=] [default: 0.0.0.0:50051]
      --db-max-connections <DB_MAX_CONNECTIONS>
          Maximum PostgreSQL pool connections
          [env: BATON_DB_MAX_CONNECTIONS=]
          [default: 16]
      --shutdown-grace-secs <SECS>
          [default: 30]
"""


def fake_proc(root: Path, stats: dict[int, str], proc_stat: str = PROC_STAT) -> Path:
    """A /proc-shaped tree: PID/stat for each of `stats`, and the aggregate stat file."""
    for pid, line in stats.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(line + "\n")
    (root / "stat").write_text(proc_stat)
    return root


def snap(t=0.0, batond=0, busy=0, client=0.0, db=None, own=0.0, gateway=None) -> d.Snapshot:
    return d.Snapshot(time=t, batond_ticks=batond, machine_busy_ticks=busy, client_cpu_s=client,
                      db_ticks=db or {}, self_cpu_s=own, gateway_ticks=gateway)


def run_main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = d.main(argv)
    return rc, out.getvalue()


class ProcParsingTest(unittest.TestCase):
    def test_pid_stat_fields(self):
        stat = d.parse_pid_stat(BATOND_STAT)
        self.assertEqual((stat.utime, stat.stime, stat.cutime, stat.cstime, stat.state), (1234, 567, 8, 9, "S"))
        self.assertEqual(stat.ticks, 1801)
        self.assertEqual(stat.children_ticks, 17)

    def test_pid_stat_with_spaces_and_parentheses_in_the_name(self):
        # Splitting on whitespace (what the bash version did) would read the wrong fields here.
        stat = d.parse_pid_stat(ODD_NAME_STAT)
        self.assertEqual((stat.state, stat.ticks, stat.children_ticks), ("R", 345, 6700))

    def test_shell_children(self):
        self.assertEqual(d.parse_pid_stat(SHELL_STAT).children_ticks, 2980)

    def test_pid_stat_garbage(self):
        with self.assertRaises(ValueError):
            d.parse_pid_stat("no parentheses 1 2 3")
        with self.assertRaises(ValueError):
            d.parse_pid_stat("1 (short) S 1 2")

    def test_machine_busy_leaves_out_idle_and_iowait(self):
        self.assertEqual(d.parse_machine_busy(PROC_STAT), BUSY)
        with self.assertRaises(ValueError):
            d.parse_machine_busy("cpu0 1 2 3 4 5 6 7 8 0 0\n")

    def test_status_fields(self):
        self.assertEqual(d.parse_status_kb(STATUS), 16408)
        self.assertEqual(d.parse_status_kb(STATUS, "VmHWM"), 228668)
        self.assertIsNone(d.parse_status_kb("Name:\tkthreadd\nState:\tS\n"))

    def test_cpu_model(self):
        self.assertEqual(d.parse_cpu_model(CPUINFO), "AMD EPYC 7B13")
        self.assertEqual(d.parse_cpu_model("processor\t: 0\nFeatures\t: fp\n"), "")

    def test_pool_default_from_help(self):
        self.assertEqual(d.parse_help_default(HELP, "--db-max-connections"), "16")
        self.assertIsNone(d.parse_help_default(HELP, "--no-such-flag"))
        self.assertIsNone(d.parse_help_default("      --db-max-connections <N>\n", "--db-max-connections"))


class SnapshotTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_snapshot_of_a_recorded_proc_tree(self):
        proc = fake_proc(self.dir / "proc", {4242: BATOND_STAT, 100: SHELL_STAT, 77: ODD_NAME_STAT})
        got = d.take_snapshot(4242, 100, [77, 9999], proc=proc, hz=100)
        self.assertEqual(got.batond_ticks, 1801)
        self.assertEqual(got.machine_busy_ticks, BUSY)
        self.assertAlmostEqual(got.client_cpu_s, 29.80)
        # A backend that has gone (9999) is left out, not counted as 0.
        self.assertEqual(got.db_ticks, {"77": 345})
        self.assertGreater(got.time, 0)

    def test_gateway_is_counted_only_when_named(self):
        proc = fake_proc(self.dir / "proc", {4242: BATOND_STAT, 100: SHELL_STAT, 77: ODD_NAME_STAT})
        self.assertEqual(d.take_snapshot(4242, 100, [], proc=proc, hz=100, gateway=77).gateway_ticks, 345)
        # Named but gone: 0, as an ended batond; not named: None (no gateway in this scenario).
        self.assertEqual(d.take_snapshot(4242, 100, [], proc=proc, hz=100, gateway=31337).gateway_ticks, 0)
        self.assertIsNone(d.take_snapshot(4242, 100, [], proc=proc, hz=100).gateway_ticks)

    def test_ended_batond_counts_zero(self):
        proc = fake_proc(self.dir / "proc", {100: SHELL_STAT})
        self.assertEqual(d.take_snapshot(4242, 100, [], proc=proc, hz=100).batond_ticks, 0)

    def test_alive_treats_zombies_and_missing_processes_as_ended(self):
        proc = fake_proc(self.dir / "proc", {4242: BATOND_STAT, 555: ZOMBIE_STAT})
        self.assertTrue(d.alive(4242, proc))
        self.assertFalse(d.alive(555, proc))
        self.assertFalse(d.alive(31337, proc))

    def test_snapshot_waits_for_the_pids_file(self):
        pids = self.dir / "snap" / "p.pids"
        out = self.dir / "snap" / "p.sample.json"
        pids.parent.mkdir(parents=True)

        def write_later():
            time.sleep(0.3)
            tmp = pids.with_name("p.pids.tmp")
            tmp.write_text(f"{os.getpid()}\n999999999\n")
            tmp.rename(pids)

        writer = threading.Thread(target=write_later)
        writer.start()
        rc, _ = run_main(["snapshot", str(out), "--batond", str(os.getpid()), "--shell", str(os.getpid()),
                          "--db-pids-file", str(pids), "--timeout", "30"])
        writer.join()
        self.assertEqual(rc, 0)
        # This process is counted; the pid that does not exist is left out.
        self.assertEqual(list(d.Snapshot.load(out).db_ticks), [str(os.getpid())])
        with self.assertRaises(SystemExit):
            run_main(["snapshot", str(out), "--batond", "1", "--shell", "1", "--db-pids-file",
                      str(self.dir / "never"), "--timeout", "0.05"])

    def test_snapshot_command_reads_this_process(self):
        # The real /proc: this test process as "batond", its parent as the shell.
        out = self.dir / "snap" / "x.before.json"
        # Burn some CPU in a child this process waits for: it must show in cutime + cstime.
        subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                        "while time.process_time() - t < 0.3: pass"], check=True)
        rc, _ = run_main(["snapshot", str(out), "--batond", str(os.getpid()), "--shell", str(os.getpid()),
                          "--db-pids", str(os.getpid())])
        self.assertEqual(rc, 0)
        raw = json.loads(out.read_text())
        self.assertEqual(set(raw), {"time", "batond_ticks", "machine_busy_ticks", "client_cpu_s", "db_ticks",
                                    "self_cpu_s", "gateway_ticks"})
        self.assertIsNone(raw["gateway_ticks"])
        got = d.Snapshot.load(out)
        self.assertGreater(got.batond_ticks, 0)
        self.assertGreaterEqual(got.client_cpu_s, 0.25)
        self.assertEqual(list(got.db_ticks), [str(os.getpid())])
        self.assertGreater(got.machine_busy_ticks, 0)
        self.assertGreater(got.self_cpu_s, 0)


class MetaTest(unittest.TestCase):
    HZ = 100

    def test_differences_between_two_snapshots(self):
        before = snap(t=1000.0, batond=500, busy=10_000, client=12.5, db={"11": 40, "12": 10, "13": 5}, own=0.02)
        # 11 ran on, 12 ended (its ticks are gone), 14 started during the scenario.
        after = snap(t=1015.2504, batond=2000, busy=13_000, client=20.0, db={"11": 140, "14": 60})
        meta = d.scenario_meta("append1_c32", 7, before, after, self.HZ, 2,
                               d.MetaFields(title="AppendEntries(1) C=32", entries_per_call=1))
        self.assertEqual(meta, {
            "name": "append1_c32", "seq": 7, "wall_s": 15.25,
            "server_cpu_s": 15.0, "db_cpu_s": 1.6, "machine_busy_cpu_s": 30.0,
            # the before snapshot's own 0.02 s are not the load generator's
            "client_cpu_s": 7.48, "machine_cpus": 2,
            "title": "AppendEntries(1) C=32", "entries_per_call": 1,
        })
        self.assertEqual(list(meta)[:8], ["name", "seq", "wall_s", "server_cpu_s", "db_cpu_s",
                                          "machine_busy_cpu_s", "client_cpu_s", "machine_cpus"])

    def test_parts_of_a_group_keep_no_cpu(self):
        meta = d.scenario_meta("mixed_list", 3, snap(t=1.0), snap(t=31.0, batond=9), self.HZ, 2,
                               d.MetaFields(title="reads: ListEntries 200 rps", group="mixed"), cpu=False)
        self.assertEqual(meta, {"name": "mixed_list", "seq": 3, "wall_s": 30.0, "machine_cpus": 2,
                                "title": "reads: ListEntries 200 rps", "group": "mixed"})

    def test_empty_strings_are_kept_and_none_left_out(self):
        fields = d.MetaFields(title="seed: x", group="", expected_codes=["Canceled", "DeadlineExceeded"])
        self.assertEqual(fields.items(), [("title", "seed: x"), ("group", ""),
                                          ("expected_codes", ["Canceled", "DeadlineExceeded"])])

    def test_pgbench_database_cpu_is_sampled_and_scaled(self):
        # 9.5 s into a 10 s run its backends had 380 ticks: 3.8 s, so 4.0 s over the run.
        sample = snap(t=109.5, db={"21": 200, "22": 180}, own=0.03)
        self.assertAlmostEqual(d.sampled_db_cpu_s(sample, 100.0, 10, self.HZ), 4.0)
        with self.assertRaises(ValueError):
            d.sampled_db_cpu_s(sample, 109.5, 10, self.HZ)
        meta = d.scenario_meta("pgbench_insert_c32_a", 4, snap(t=99.9, client=1.0, own=0.02),
                               snap(t=110.2, client=4.0, db={"23": 999}), self.HZ, 2,
                               d.MetaFields(title="t", script="insert_entry", note="n"),
                               db_cpu_s=4.0, inside=(sample,))
        self.assertEqual(meta["db_cpu_s"], 4.0)
        self.assertEqual(meta["client_cpu_s"], 2.95)  # 3.0 less both snapshots' own CPU

    def test_gateway_cpu_between_two_snapshots_that_counted_it(self):
        fields = d.MetaFields(title="MCP update_context C=32")
        meta = d.scenario_meta("mcp_update_c32", 9, snap(t=0.0, gateway=100), snap(t=10.0, batond=50, gateway=350),
                               self.HZ, 2, fields)
        self.assertEqual(meta["gateway_cpu_s"], 2.5)
        self.assertEqual(list(meta)[:9], ["name", "seq", "wall_s", "server_cpu_s", "db_cpu_s",
                                          "machine_busy_cpu_s", "client_cpu_s", "gateway_cpu_s", "machine_cpus"])
        # No gateway in one of the snapshots, or one that ended in between: no figure, not a wrong one.
        for before, after in ((None, 350), (100, None), (100, 0)):
            meta = d.scenario_meta("x", 1, snap(gateway=before), snap(t=1.0, gateway=after), self.HZ, 2, fields)
            self.assertNotIn("gateway_cpu_s", meta)

    def test_client_cpu_never_negative(self):
        meta = d.scenario_meta("x", 1, snap(client=1.0, own=0.05), snap(client=1.01), self.HZ, 2, d.MetaFields())
        self.assertEqual(meta["client_cpu_s"], 0.0)


class CommandTest(unittest.TestCase):
    """The subcommands ghz/run calls, on files: what they write and that summarize.py reads it."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.run = Path(self.tmp.name)
        (self.run / "snap").mkdir()

    def tearDown(self):
        self.tmp.cleanup()

    def write_snap(self, name: str, value: d.Snapshot) -> Path:
        path = self.run / "snap" / f"{name}.json"
        d.write_json(path, d.asdict(value))
        return path

    def test_meta_file_and_summarize_reads_it(self):
        hz = d.clock_ticks()
        before = self.write_snap("append1_c32.before", snap(t=50.0, batond=0, busy=0, client=2.0, db={"7": 0}))
        after = self.write_snap("append1_c32.after", snap(t=60.0, batond=10 * hz, busy=20 * hz, client=7.0,
                                                          db={"7": 5 * hz}))
        rc, _ = run_main(["meta", str(self.run), "append1_c32", "--seq", "5", "--before", str(before),
                          "--after", str(after), "--title", "AppendEntries(1) C=32", "--entries-per-call", "1",
                          "--expected-codes", "Canceled,DeadlineExceeded"])
        self.assertEqual(rc, 0)
        meta = json.loads((self.run / "append1_c32.meta.json").read_text())
        self.assertEqual(meta, {
            "name": "append1_c32", "seq": 5, "wall_s": 10.0, "server_cpu_s": 10.0, "db_cpu_s": 5.0,
            "machine_busy_cpu_s": 20.0, "client_cpu_s": 5.0, "machine_cpus": d.machine_cpus(),
            "title": "AppendEntries(1) C=32", "entries_per_call": 1, "expected_codes": ["Canceled", "DeadlineExceeded"],
        })
        self.assertFalse(list(self.run.glob("*.tmp")))
        # 5,000 calls: 2 ms of batond CPU per call, 1 ms of database and of client.
        report = {"options": {"call": "baton.v1.ContextService/AppendEntries", "concurrency": 32}, "count": 5000,
                  "rps": 500.0, "statusCodeDistribution": {"OK": 5000}, "latencyDistribution": []}
        (self.run / "append1_c32.ghz.json").write_text(json.dumps(report))
        [row] = s.load_rows(self.run)
        self.assertEqual((row.name, row.title, row.entries_per_call), ("append1_c32", "AppendEntries(1) C=32", 1))
        self.assertAlmostEqual(row.server_cpu_ms_per_call, 2.0)
        self.assertAlmostEqual(row.db_cpu_ms_per_call, 1.0)
        self.assertAlmostEqual(row.client_cpu_ms_per_call, 1.0)
        self.assertAlmostEqual(row.machine_busy_pct, 100 * 20 / (10 * d.machine_cpus()))

    def test_meta_with_a_pgbench_sample(self):
        hz = d.clock_ticks()
        before = self.write_snap("p.before", snap(t=100.0))
        sample = self.write_snap("p.sample", snap(t=101.5, db={"31": 3 * hz}))
        after = self.write_snap("p.after", snap(t=102.1, db={}))
        rc, _ = run_main(["meta", str(self.run), "p", "--seq", "1", "--before", str(before), "--after", str(after),
                          "--db-sample", str(sample), "--db-sample-start", "100.0", "--db-sample-secs", "2",
                          "--title", "pgbench INSERT C=32 (before)", "--script", "insert_entry", "--note", "baseline"])
        self.assertEqual(rc, 0)
        meta = json.loads((self.run / "p.meta.json").read_text())
        self.assertEqual(meta["db_cpu_s"], 4.0)  # 3 s in 1.5 s of a 2 s run
        self.assertEqual((meta["script"], meta["note"]), ("insert_entry", "baseline"))
        with self.assertRaises(SystemExit):
            run_main(["meta", str(self.run), "p", "--seq", "1", "--before", str(before), "--after", str(after),
                      "--db-sample", str(sample)])

    def test_mixed_parts_without_cpu(self):
        before = self.write_snap("mixed.before", snap(t=0.0))
        after = self.write_snap("mixed.after", snap(t=30.0, batond=100))
        rc, _ = run_main(["meta", str(self.run), "mixed_list", "--seq", "2", "--before", str(before), "--after",
                          str(after), "--no-cpu", "--title", "reads: ListEntries 200 rps", "--group", "mixed"])
        self.assertEqual(rc, 0)
        meta = json.loads((self.run / "mixed_list.meta.json").read_text())
        self.assertNotIn("server_cpu_s", meta)
        self.assertEqual(meta["group"], "mixed")

    def test_mcp_scenario_with_the_gateway_pid(self):
        hz = d.clock_ticks()
        # The snapshot command with --gateway: this process stands in for baton-mcp.
        before = self.run / "snap" / "mcp.before.json"
        rc, _ = run_main(["snapshot", str(before), "--batond", str(os.getpid()), "--shell", str(os.getpid()),
                          "--gateway", str(os.getpid())])
        self.assertEqual(rc, 0)
        self.assertGreater(d.Snapshot.load(before).gateway_ticks, 0)
        start = self.write_snap("m.before", snap(t=0.0, gateway=hz))
        end = self.write_snap("m.after", snap(t=10.0, batond=4 * hz, gateway=7 * hz))
        rc, _ = run_main(["meta", str(self.run), "mcp_update_c32", "--seq", "3", "--before", str(start),
                          "--after", str(end), "--title", "MCP update_context C=32", "--note", "client: baton-mcp-load"])
        self.assertEqual(rc, 0)
        report = {"options": {"call": "mcp/update_context", "concurrency": 32}, "count": 2000, "rps": 200.0,
                  "statusCodeDistribution": {"OK": 2000}, "latencyDistribution": []}
        (self.run / "mcp_update_c32.ghz.json").write_text(json.dumps(report))
        [row] = s.load_rows(self.run)
        self.assertEqual(row.call, "update_context")
        self.assertAlmostEqual(row.server_cpu_ms_per_call, 2.0)
        self.assertAlmostEqual(row.gateway_cpu_ms_per_call, 3.0)

    def test_run_json_in_the_committed_order(self):
        help_file = self.run / "batond.help"
        help_file.write_text(HELP)
        out = self.run / "run.json"
        rc, _ = run_main([
            "run-json", str(out), "--mode", "quick", "--commit", "abc1234-dirty", "--ghz-version", "v0.121.0",
            "--pg-version", '15.18 (Debian "x")', "--synchronous-commit", "on", "--shared-buffers", "128MB",
            "--batond-help", str(help_file), "--redis", "not used", "--rss-idle-kb", "16408",
            "--rss-after-kb", "20000", "--rss-hwm-kb", "30000", "--follow-peak-kb", "25000",
            "--follow-before-kb", "24000", "--follow-closed-kb", "24500", "--follow-streams", "1000", "--seed-s", "27", "--elapsed-s", "95",
        ])
        self.assertEqual(rc, 0)
        run = json.loads(out.read_text())
        committed = json.loads((Path(__file__).resolve().parent / "results" / "latest.json").read_text())["run"]
        self.assertEqual(list(run), list(committed))
        self.assertEqual(list(run["machine"]), list(committed["machine"]))
        self.assertEqual(list(run["postgres"]), list(committed["postgres"]))
        for key, value in committed.items():
            self.assertIs(type(run[key]), type(value), key)
        self.assertEqual(run["db_max_connections"], "16")
        self.assertEqual(run["postgres"]["version"], '15.18 (Debian "x")')  # escaped, not stripped
        self.assertEqual((run["rss_idle_kb"], run["follow_streams"], run["elapsed_s"]), (16408, 1000, 95))
        self.assertRegex(run["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(run["machine"]["nproc"], d.machine_cpus())
        self.assertGreater(run["machine"]["mem_total_kb"], 0)
        self.assertEqual(run["machine"]["kernel"], os.uname().release)

    def test_pool_falls_back_to_the_environment(self):
        saved = os.environ.get("BATON_DB_MAX_CONNECTIONS")
        try:
            os.environ["BATON_DB_MAX_CONNECTIONS"] = "24"
            self.assertEqual(d.pool_size(None), "24")
            del os.environ["BATON_DB_MAX_CONNECTIONS"]
            self.assertEqual(d.pool_size(None), "?")
        finally:
            if saved is not None:
                os.environ["BATON_DB_MAX_CONNECTIONS"] = saved

    def test_machine_info_from_a_recorded_proc(self):
        proc = self.run / "proc"
        proc.mkdir()
        (proc / "cpuinfo").write_text(CPUINFO)
        (proc / "meminfo").write_text(MEMINFO)
        info = d.machine_info(proc)
        self.assertEqual((info["cpu_model"], info["mem_total_kb"]), ("AMD EPYC 7B13", 24684084))

    def test_rss_of_this_process(self):
        rc, out = run_main(["rss", str(os.getpid())])
        self.assertEqual(rc, 0)
        self.assertGreater(int(out), 1000)
        rc, out = run_main(["rss", str(os.getpid()), "--field", "VmHWM"])
        self.assertGreater(int(out), 1000)
        with contextlib.redirect_stderr(io.StringIO()):
            rc, _ = run_main(["rss", "0"])
        self.assertEqual(rc, 1)

    def test_rss_peak_stops_when_the_watched_process_ends(self):
        # The child ends but is not waited for until after: a zombie must count as ended.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
        try:
            rc, out = run_main(["rss-peak", str(os.getpid()), "--while", str(child.pid), "--interval", "0.05",
                                "--timeout", "30"])
            self.assertEqual(child.poll() is not None or d.pid_stat(child.pid).state == "Z", True)
        finally:
            child.wait()
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(int(out), d.rss_kb(os.getpid()) // 2)

    def test_free_port_is_bindable(self):
        rc, out = run_main(["free-port"])
        self.assertEqual(rc, 0)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", int(out)))


if __name__ == "__main__":
    unittest.main()
