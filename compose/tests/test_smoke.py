"""The compose services run as composed, without a container engine: each Baton service's
entrypoint, command and environment taken from docker-compose.yml, run with the local debug
builds against the PostgreSQL and Redis that scripts/test starts.

Only what the compose network would provide is substituted: service host names become 127.0.0.1
and their ports free loopback ports; PostgreSQL is a fresh database on the test cluster, its
POSTGRES_USER the role baton_compose (CREATEDB, CREATEROLE: what the image's superuser needs to
do here) and the serving role a fresh name. Then: compose/postgres-init.sh creates the serving
role, `batond migrate` migrates as the owner, batond serves as the serving role and passes its
own healthcheck command, and baton-mcp answers an MCP tool call through batond.

Needs BATOND_BIN, BATON_MCP_BIN, BATON_COMPOSE_DATABASE_URL and BATON_TEST_REDIS_URL
(scripts/parts/compose.sh provides them).
"""

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

from conftest import BATON_MCP, BATOND, INIT_SCRIPT, duration_secs, load_compose, program


def need(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (scripts/parts/compose.sh sets it; run `scripts/test compose`)")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    out = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class Network:
    """The compose network on this machine: `service:port` and `0.0.0.0:port` become free
    loopback ports, the database URLs the test cluster's."""

    def __init__(self, doc, admin_url, database, server_role):
        self.doc = doc
        self.pg_env = doc["services"]["postgres"]["environment"]
        self.admin = urllib.parse.urlsplit(admin_url)
        self.database = database
        self.server_role = server_role
        self.ports = {port: free_port() for port in (50051, 9090, 3000, 4317, 4318)}
        self.names = set(doc["services"]) | {"0.0.0.0", "127.0.0.1"}

    def database_url(self, url):
        u = urllib.parse.urlsplit(url)
        assert (u.hostname, u.port) == ("postgres", 5432), url
        if u.username == self.pg_env["POSTGRES_USER"]:
            user, password = self.admin.username, self.admin.password
        else:
            assert u.username == self.pg_env["BATON_SERVER_ROLE"], url
            user, password = self.server_role, u.password
        netloc = f"{user}:{password}@{self.admin.hostname}:{self.admin.port}"
        return u._replace(netloc=netloc, path=f"/{self.database}").geturl()

    def text(self, value):
        def local(m):
            port = int(m.group(2))
            return f"127.0.0.1:{self.ports.get(port, port)}"

        return re.sub(r"(?:(?<=://)|^)([a-z0-9.-]+):(\d+)\b", lambda m: local(m) if m.group(1) in self.names else m.group(0), value)

    def env(self, service):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # the image's PATH
        for name, value in service.get("environment", {}).items():
            if name == "DATABASE_URL":
                env[name] = self.database_url(value)
            elif name == "REDIS_URL":
                env[name] = need("BATON_TEST_REDIS_URL")
            else:
                env[name] = self.text(str(value))
        return env

    def argv(self, service, args=None):
        """A command as the container runs it, with the local build in place of the image's."""
        local = {BATOND: need("BATOND_BIN"), BATON_MCP: need("BATON_MCP_BIN")}
        if args is None:
            args = [program(service), *service.get("command", [])]
        return [local.get(args[0], args[0]), *(self.text(a) for a in args[1:])]


def http(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()
    except OSError:
        return None, {}, ""


def start(argv, env, tmp_path, name):
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, log


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(net, service, proc, log, tmp_path):
    """Runs the service's healthcheck command as the engine would, until it passes within
    start_period + interval x retries."""
    check = service["healthcheck"]
    assert check["test"][0] == "CMD"
    argv = net.argv(service, check["test"][1:])
    deadline = time.monotonic() + duration_secs(check["start_period"]) + duration_secs(check["interval"]) * check["retries"]
    last = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited ({proc.returncode}):\n{log.read_text()}"
        last = subprocess.run(argv, env=net.env(service), cwd=tmp_path, capture_output=True, text=True,
                              timeout=duration_secs(check["timeout"]))
        if last.returncode == 0:
            return last.stdout
        time.sleep(0.5)
    pytest.fail(f"healthcheck {argv} never passed: {last.stdout}{last.stderr}\n{log.read_text()}")


def mcp_call(url, host, session, method, params, id_=None):
    """One JSON-RPC message over Streamable HTTP; returns (status, headers, reply or None)."""
    body = {"jsonrpc": "2.0", "method": method, "params": params}
    if id_ is not None:
        body["id"] = id_
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Host": host}
    if session:
        headers["Mcp-Session-Id"] = session
    status, head, text = http(url, json.dumps(body).encode(), headers)
    # The reply is one JSON body, or an SSE stream whose data lines carry it.
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    payloads = [json.loads(d) for d in data if d] or ([json.loads(text)] if text.strip().startswith("{") else [])
    reply = next((p for p in payloads if p.get("id") == id_), None) if id_ is not None else None
    return status, {k.lower(): v for k, v in head.items()}, reply


@pytest.fixture
def database():
    """A fresh database and serving-role name on the test cluster; both dropped afterwards."""
    admin = need("BATON_COMPOSE_DATABASE_URL")
    suffix = uuid.uuid4().hex[:12]
    name, role = f"baton_compose_{suffix}", f"baton_server_{suffix}"
    psql(admin, f"CREATE DATABASE {name}")
    yield admin, name, role
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, f"DROP ROLE IF EXISTS {role}")


def test_the_services_run_as_composed(database, tmp_path):
    admin, name, role = database
    doc = load_compose()
    net = Network(doc, admin, name, role)
    services = doc["services"]
    db_url = urllib.parse.urlsplit(admin)._replace(path=f"/{name}").geturl()
    procs = []
    try:
        # compose/postgres-init.sh, as the postgres image runs it on a new volume.
        pg = net.pg_env
        init_env = {
            **os.environ,
            "POSTGRES_USER": net.admin.username, "POSTGRES_DB": name,
            "BATON_SERVER_ROLE": role, "BATON_SERVER_PASSWORD": pg["BATON_SERVER_PASSWORD"],
            "PGHOST": net.admin.hostname, "PGPORT": str(net.admin.port), "PGPASSWORD": net.admin.password,
        }
        init = subprocess.run(["bash", str(INIT_SCRIPT)], env=init_env, capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stdout + init.stderr
        attrs = psql(db_url, f"SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{role}'")
        assert attrs == "t|f|f|f|f", attrs
        assert psql(db_url, f"SELECT pg_has_role('{role}', 'baton_app', 'MEMBER')") == "t"

        # baton-migrate: `batond migrate` as the owner, once, before batond starts.
        m = services["baton-migrate"]
        migrate = subprocess.run(net.argv(m), env=net.env(m), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        tables = psql(db_url, "SELECT count(*), count(*) FILTER (WHERE tableowner = current_user) FROM pg_tables WHERE schemaname = 'public'")
        total, owned = map(int, tables.split("|"))
        assert total > 1 and owned == total, tables

        # batond as composed: its healthcheck (batond probe) passes, and it is connected as the
        # serving role, which may not change the schema.
        b = services["batond"]
        server, log = start(net.argv(b), net.env(b), tmp_path, "batond")
        procs.append(server)
        assert wait_healthy(net, b, server, log, tmp_path).startswith("probe ok: ")
        sessions = psql(db_url, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND usename = '{role}'")
        assert int(sessions) >= 1, f"batond is not connected as {role}"
        denied = subprocess.run(["psql", net.database_url(b["environment"]["DATABASE_URL"]),
                                 "-X", "-tAc", "CREATE TABLE compose_intruder (x int)"], capture_output=True, text=True)
        assert denied.returncode != 0 and "permission denied" in denied.stderr, denied.stdout + denied.stderr
        status, _, _ = http(f"http://127.0.0.1:{net.ports[9090]}/ready")
        assert status == 200

        # baton-mcp as composed answers on its published port, through batond.
        g = services["baton-mcp"]
        gateway, glog = start(net.argv(g), net.env(g), tmp_path, "baton-mcp")
        procs.append(gateway)
        base = f"http://127.0.0.1:{net.ports[3000]}"
        deadline = time.monotonic() + 30
        while http(f"{base}/health")[0] != 200:
            assert gateway.poll() is None and time.monotonic() < deadline, glog.read_text()
            time.sleep(0.2)
        host = f"localhost:{net.ports[3000]}"  # what a client on the laptop sends
        status, head, reply = mcp_call(f"{base}/mcp", host, None, "initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "compose-smoke", "version": "0"}}, 1)
        assert status == 200 and reply and "serverInfo" in reply["result"], (status, reply, glog.read_text())
        session = head.get("mcp-session-id")
        mcp_call(f"{base}/mcp", host, session, "notifications/initialized", {})
        status, _, reply = mcp_call(f"{base}/mcp", host, session, "tools/call", {
            "name": "register_session", "arguments": {"session_key": "compose-smoke", "agent": "smoke"}}, 2)
        assert status == 200 and reply and not reply["result"].get("isError"), (status, reply, glog.read_text())
        status, _, reply = mcp_call(f"{base}/mcp", host, session, "tools/call", {
            "name": "get_session", "arguments": {"session_key": "compose-smoke"}}, 3)
        assert status == 200 and "compose-smoke" in json.dumps(reply["result"]), (status, reply)
        # A Host outside BATON_MCP_ALLOWED_HOSTS is refused.
        status, _, _ = mcp_call(f"{base}/mcp", f"evil.example:{net.ports[3000]}", None, "initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}, 1)
        assert status in (400, 403, 421), status
    finally:
        for p in reversed(procs):
            stop(p)
