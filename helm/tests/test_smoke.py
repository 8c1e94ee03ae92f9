"""Pod-spec smoke test: render the chart, take the containers' command, args and env exactly as
rendered, and run the locally built binaries with them against a real PostgreSQL and Redis.

Only what a cluster would provide is substituted: Service host names (`*.svc`) become
127.0.0.1 and the ports free loopback ports, `secretKeyRef`s are resolved from the rendered
Secrets (or, for Secrets the user brings, filled in here), and the image's binaries are the
local debug builds. Then: the migration Job's command migrates an empty database, the declared
probes of batond answer healthy, the `helm test` pod's command passes, the gateway answers its
probe and admits the in-cluster host names, and SIGTERM stops batond within its grace period.

Needs BATOND_BIN, BATON_MCP_BIN, BATON_TEST_DATABASE_URL and BATON_TEST_REDIS_URL
(scripts/test provides them).
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import CHART, RELEASE, container, one, render

IMAGE_PATHS = {"/usr/local/bin/batond": "BATOND_BIN", "/usr/local/bin/baton-mcp": "BATON_MCP_BIN"}
FULL = f"{RELEASE}-baton"
MIGRATIONS = sorted((CHART.parent.parent / "migrations" / "postgres").glob("*.sql"))


def need(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (scripts/test sets it; run `scripts/test helm`)")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-tAc", sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def fresh_db():
    """An empty database on the test PostgreSQL, dropped afterwards."""
    base = need("BATON_TEST_DATABASE_URL")
    name = f"baton_helm_{uuid.uuid4().hex[:12]}"
    psql(base, f"CREATE DATABASE {name}")
    url = urllib.parse.urlsplit(base)._replace(path=f"/{name}").geturl()
    yield url
    psql(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Cluster:
    """What the cluster would do for a pod: Service names to loopback ports, Secrets resolved."""

    def __init__(self, objects, secrets=None):
        self.objects = objects
        self.secrets = {}
        for s in (o for o in objects if o["kind"] == "Secret"):
            for k, v in s["data"].items():
                self.secrets[(s["metadata"]["name"], k)] = base64.b64decode(v).decode()
        self.secrets.update(secrets or {})
        # Container and Service ports -> free loopback ports (same number, same mapping).
        self.ports = {p: free_port() for p in (50051, 9090, 3000, 4317, 4318)}

    def map_text(self, value):
        """A rendered string as the local process sees it: Service host names on 127.0.0.1,
        ports mapped."""
        return SVC_HOST.sub(lambda m: loopback(m, self.ports), value)

    def env(self, c):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # the image's PATH
        for e in c.get("env", []):
            if "value" in e:
                value = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                key = (ref["name"], ref["key"])
                assert key in self.secrets, f"{e['name']} refers to Secret {key}, which nothing provides"
                value = self.secrets[key]
            env[e["name"]] = self.map_text(map_bind(value, self.ports))
        return env

    def argv(self, c):
        cmd = c["command"]
        assert cmd[0] in IMAGE_PATHS, f"unexpected command {cmd}"
        local = need(IMAGE_PATHS[cmd[0]])
        return [local, *cmd[1:], *(self.map_text(a) for a in c.get("args", []))]

    def port_of(self, c, probe_port):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        number = ports[probe_port] if isinstance(probe_port, str) else probe_port
        return self.ports[number]


# A Service host name where a URL names its host (after "://" or "user:pass@"); host names in
# other roles (the gateway's allowed Host headers) stay as rendered.
SVC_HOST = re.compile(r"(?:(?<=://)|(?<=@))[a-z0-9-]+(?:\.[a-z0-9-]+)*\.svc(?:\.cluster\.local)?(?::(\d+))?")


def loopback(m, ports):
    port = m.group(1)
    if port is None:
        return "127.0.0.1"
    return f"127.0.0.1:{ports.get(int(port), int(port))}"


def map_bind(value, ports):
    """Bind addresses (0.0.0.0:P, [::]:P) -> 127.0.0.1:<mapped P>."""
    m = re.fullmatch(r"(?:0\.0\.0\.0|\[::\]):(\d+)", value)
    return f"127.0.0.1:{ports[int(m.group(1))]}" if m else value


def http_status(url, headers=None, data=None):
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_probe(proc, cluster, c, probe, log):
    """Polls a declared probe as the kubelet would, within its failureThreshold x periodSeconds."""
    get = probe["httpGet"]
    url = f"http://127.0.0.1:{cluster.port_of(c, get['port'])}{get['path']}"
    deadline = time.monotonic() + probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited ({proc.returncode}):\n{log.read_text()}"
        if http_status(url) == 200:
            return url
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 in time:\n{log.read_text()}")


def start(argv, env, tmp_path, name):
    log = tmp_path / f"{name}.log"
    f = log.open("w")
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_job(cluster, j, tmp_path):
    c = container(j)
    proc = subprocess.run(cluster.argv(c), env=cluster.env(c), cwd=tmp_path, capture_output=True, text=True,
                          timeout=j["spec"]["activeDeadlineSeconds"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def check_server(cluster, objects, tmp_path, procs):
    """Starts batond as rendered, checks its probes and runs the helm test pod against it."""
    d = one(objects, "Deployment", FULL)
    c = container(d)
    proc, log = start(cluster.argv(c), cluster.env(c), tmp_path, "batond")
    procs.append(proc)
    wait_probe(proc, cluster, c, c["startupProbe"], log)
    wait_probe(proc, cluster, c, c["livenessProbe"], log)
    wait_probe(proc, cluster, c, c["readinessProbe"], log)
    pod = one(objects, "Pod")
    tc = container(pod)
    probe = subprocess.run(cluster.argv(tc), env=cluster.env(tc), cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.startswith("probe ok: "), probe.stdout
    return proc, d, log


def test_ha_pod_specs_run(fresh_db, tmp_path):
    redis = need("BATON_TEST_REDIS_URL")
    objects = render([CHART / "ci" / "ha-values.yaml"], sets=[f"database.url={fresh_db}", f"redis.url={redis}"])
    cluster = Cluster(objects)
    procs = []
    try:
        # The migration hook Job migrates the empty database...
        assert psql(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
        run_job(cluster, one(objects, "Job"), tmp_path)
        assert psql(fresh_db, "SELECT count(*) FROM _sqlx_migrations WHERE success") == str(len(MIGRATIONS))
        assert int(psql(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) > 1
        # ...and is safe to run again (every upgrade runs it).
        run_job(cluster, one(objects, "Job"), tmp_path)

        # batond as rendered (--migrate=false, Redis, OTLP to a closed loopback port).
        server, d, log = check_server(cluster, objects, tmp_path, procs)
        assert "--migrate=false" in container(d)["args"]

        # The gateway as rendered reaches batond through the (mapped) Service name.
        g = one(objects, "Deployment", f"{FULL}-mcp")
        gc = container(g)
        gw, glog = start(cluster.argv(gc), cluster.env(gc), tmp_path, "baton-mcp")
        procs.append(gw)
        for p in ("startupProbe", "livenessProbe", "readinessProbe"):
            wait_probe(gw, cluster, gc, gc[p], glog)
        mcp = f"http://127.0.0.1:{cluster.ports[3000]}/mcp"
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "helm-smoke", "version": "0"}}}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        assert http_status(mcp, {**headers, "Host": f"{FULL}-mcp.baton.svc:3000"}, init) == 200
        assert http_status(mcp, {**headers, "Host": "evil.example"}, init) in (400, 403, 421)

        # SIGTERM (after the preStop sleep) ends batond within the rest of its grace period.
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        pre = container(d)["lifecycle"]["preStop"]["sleep"]["seconds"]
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(grace - pre) == 0, log.read_text()
        assert time.monotonic() - started < grace - pre

        # The probe fails, naming the step, when batond is gone.
        tc = container(one(objects, "Pod"))
        failed = subprocess.run(cluster.argv(tc), env=cluster.env(tc), cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert failed.returncode == 1
        assert "probe failed: connect" in failed.stderr, failed.stderr
    finally:
        for p in procs:
            stop(p)


def test_existing_secret_pod_specs_run(fresh_db, tmp_path):
    redis = need("BATON_TEST_REDIS_URL")
    objects = render([CHART / "ci" / "existing-secret-values.yaml"])
    # The user's Secrets, as `kubectl create secret` would hold them.
    cluster = Cluster(objects, secrets={
        ("baton-urls", "database-url"): fresh_db,
        ("baton-urls", "redis-url"): redis,
        ("otel-auth", "OTEL_EXPORTER_OTLP_HEADERS"): "x-api-key=abc",
    })
    procs = []
    try:
        run_job(cluster, one(objects, "Job"), tmp_path)
        assert psql(fresh_db, "SELECT count(*) FROM _sqlx_migrations WHERE success") == str(len(MIGRATIONS))
        check_server(cluster, objects, tmp_path, procs)
    finally:
        for p in procs:
            stop(p)


def test_batond_without_migrations_is_not_ready_on_an_empty_database(fresh_db, tmp_path):
    """--migrate=false really leaves the schema to the Job: on an unmigrated database the
    `helm test` probe fails."""
    objects = render([CHART / "ci" / "default-values.yaml"], sets=[f"database.url={fresh_db}"])
    cluster = Cluster(objects)
    d = one(objects, "Deployment", FULL)
    c = container(d)
    proc, log = start(cluster.argv(c), cluster.env(c), tmp_path, "batond")
    try:
        wait_probe(proc, cluster, c, c["startupProbe"], log)
        tc = container(one(objects, "Pod"))
        failed = subprocess.run(cluster.argv(tc), env=cluster.env(tc), cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert failed.returncode == 1, failed.stdout
        assert "probe failed: create session" in failed.stderr, failed.stderr
        assert psql(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    finally:
        stop(proc)


def test_embedded_pod_spec_runs(tmp_path):
    objects = render([CHART / "ci" / "embedded-values.yaml"])
    cluster = Cluster(objects)
    d = one(objects, "Deployment", FULL)
    c = container(d)
    env = cluster.env(c)
    assert env["BATON_DATA_DIR"] == "/var/lib/baton"
    # The volume mount, as the kubelet would provide it.
    env["BATON_DATA_DIR"] = str(tmp_path / "data")
    proc, log = start(cluster.argv(c), env, tmp_path, "batond")
    try:
        wait_probe(proc, cluster, c, c["readinessProbe"] | {"failureThreshold": 30, "periodSeconds": 1}, log)
        tc = container(one(objects, "Pod"))
        probe = subprocess.run(cluster.argv(tc), env=cluster.env(tc), cwd=tmp_path, capture_output=True, text=True,
                               timeout=60)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert any((tmp_path / "data").iterdir())
    finally:
        stop(proc)
