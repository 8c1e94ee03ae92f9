"""Pod-spec smoke test: render the chart, take the containers' command, args and env exactly as
rendered, and run the locally built binaries with them against a real PostgreSQL and Redis.

Only what a cluster would provide is substituted: Service host names (`*.svc`) become
127.0.0.1 and the ports free loopback ports, `secretKeyRef`s are resolved from the rendered
Secrets (or, for Secrets the user brings, filled in here), Secret volumes are written to a
directory and paths under their mountPath point there (the kubelet's projection), `kubectl exec`
is the binary run with the container's env (not its args), and the image's binaries are the
local debug builds. Then: the migration Job's command migrates an empty database as the tables'
owner, batond serves as the serving role (a member of baton_app that owns nothing), the declared
probes answer, the admin key command NOTES.txt prints works, the `helm test` pod's command
fails without its API key and passes with it (over TLS where enabled), the gateway answers its
probe and admits the in-cluster host names, and SIGTERM stops batond within its grace period.

Needs BATOND_BIN, BATON_MCP_BIN, BATON_TEST_DATABASE_URL (the owner),
BATON_TEST_APP_DATABASE_URL (the serving role) and BATON_TEST_REDIS_URL (scripts/test provides
them), and openssl for the TLS test's certificates.
"""

import base64
import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import CHART, NAMESPACE, RELEASE, container, notes, one, render

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


def with_db(url, name):
    return urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()


class Db:
    """A fresh database: `owner` is the URL of its owner (who migrates), `serving` the serving
    role's (baton_server, a member of baton_app without BYPASSRLS) on the same database."""

    def __init__(self, owner, serving, name):
        self.owner, self.serving, self.name = owner, serving, name


@pytest.fixture
def fresh_db():
    """An empty database on the test PostgreSQL, dropped afterwards."""
    base = need("BATON_TEST_DATABASE_URL")
    app = need("BATON_TEST_APP_DATABASE_URL")
    name = f"baton_helm_{uuid.uuid4().hex[:12]}"
    psql(base, f"CREATE DATABASE {name}")
    yield Db(with_db(base, name), with_db(app, name), name)
    psql(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Cluster:
    """What the cluster would do for a pod: Service names to loopback ports, Secrets resolved,
    Secret volumes projected."""

    def __init__(self, objects, tmp_path, secrets=None):
        self.objects = objects
        self.tmp_path = tmp_path
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

    def mounts(self, obj, c):
        """Projects the container's Secret volumes into directories; returns {mountPath: dir}."""
        spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        found = {}
        for m in c.get("volumeMounts", []):
            secret = volumes[m["name"]].get("secret")
            if secret is None:
                continue
            assert m.get("readOnly") is True, f"Secret volume {m['name']} is mounted writable"
            local = self.tmp_path / "mounts" / obj["metadata"]["name"] / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            items = secret.get("items") or [
                {"key": k, "path": k} for (n, k) in self.secrets if n == secret["secretName"]]
            for item in items:
                key = (secret["secretName"], item["key"])
                assert key in self.secrets, f"volume {m['name']} projects Secret {key}, which nothing provides"
                (local / item["path"]).write_text(self.secrets[key])
            found[m["mountPath"].rstrip("/")] = str(local)
        return found

    def map_path(self, value, mounts):
        for path, local in mounts.items():
            if value.startswith(path + "/"):
                return local + value[len(path):]
        return value

    def env(self, c, mounts=None):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # the image's PATH
        for e in c.get("env", []):
            if "value" in e:
                value = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                key = (ref["name"], ref["key"])
                if key not in self.secrets and ref.get("optional"):
                    continue  # the kubelet leaves an optional variable out
                assert key in self.secrets, f"{e['name']} refers to Secret {key}, which nothing provides"
                value = self.secrets[key]
            env[e["name"]] = self.map_path(self.map_text(map_bind(value, self.ports)), mounts or {})
        return env

    def argv(self, c, mounts=None):
        cmd = c["command"]
        assert cmd[0] in IMAGE_PATHS, f"unexpected command {cmd}"
        local = need(IMAGE_PATHS[cmd[0]])
        return [local, *cmd[1:], *(self.map_path(self.map_text(a), mounts or {}) for a in c.get("args", []))]

    def pod(self, obj):
        """(argv, env) of an object's only container, as its pod would run it."""
        c = container(obj)
        mounts = self.mounts(obj, c)
        return self.argv(c, mounts), self.env(c, mounts)

    def exec(self, obj, command):
        """`kubectl exec <pod> -- <command>`: the image's binary with the container's env."""
        c = container(obj)
        mounts = self.mounts(obj, c)
        assert command[0] in ("batond", "baton-mcp"), command
        binary = need(IMAGE_PATHS[f"/usr/local/bin/{command[0]}"])
        return subprocess.run([binary, *command[1:]], env=self.env(c, mounts), cwd=self.tmp_path,
                              capture_output=True, text=True, timeout=60)

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


# The kubelet does not verify the certificate of an HTTPS probe; neither does wait_probe.
KUBELET_TLS = ssl.create_default_context()
KUBELET_TLS.check_hostname = False
KUBELET_TLS.verify_mode = ssl.CERT_NONE


def http_status(url, headers=None, data=None, context=None):
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=3, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, http.client.HTTPException):
        return None


def wait_probe(proc, cluster, c, probe, log):
    """Polls a declared probe as the kubelet would, within its failureThreshold x periodSeconds."""
    get = probe["httpGet"]
    scheme = get.get("scheme", "HTTP").lower()
    url = f"{scheme}://127.0.0.1:{cluster.port_of(c, get['port'])}{get['path']}"
    deadline = time.monotonic() + probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited ({proc.returncode}):\n{log.read_text()}"
        if http_status(url, context=KUBELET_TLS if scheme == "https" else None) == 200:
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
    argv, env = cluster.pod(j)
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=j["spec"]["activeDeadlineSeconds"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def run_test_pod(cluster, objects, tmp_path):
    argv, env = cluster.pod(one(objects, "Pod"))
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def notes_command(text, pattern):
    """The NOTES.txt line running `batond ...` in the batond container that matches pattern,
    as the argv after `kubectl exec deploy/<full> -c batond --`."""
    prefix = f"kubectl -n {NAMESPACE} exec deploy/{FULL} -c batond -- "
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(prefix) and re.search(pattern, line):
            return shlex.split(line[len(prefix):])
    pytest.fail(f"NOTES.txt has no `{prefix}...` line matching {pattern!r}:\n{text}")


def create_probe_key(cluster, objects, text):
    """The probe key as NOTES.txt says to create it: its command, run in the batond container."""
    m = re.search(r'--from-literal=[\w.-]+="\$\(kubectl -n \S+ exec deploy/\S+ -c batond -- (.*?) \| tail -n 1\)"', text)
    assert m, f"NOTES.txt does not show how to create the probe's key:\n{text}"
    out = cluster.exec(one(objects, "Deployment", FULL), shlex.split(m.group(1)))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


def check_server(cluster, objects, tmp_path, procs, probe_secret, text):
    """Starts batond as rendered, checks its probes, creates the first admin key and the probe's
    key as NOTES.txt says, and runs the helm test pod against it: without its key it fails with
    Unauthenticated, with it it passes."""
    d = one(objects, "Deployment", FULL)
    c = container(d)
    argv, env = cluster.pod(d)
    proc, log = start(argv, env, tmp_path, "batond")
    procs.append(proc)
    wait_probe(proc, cluster, c, c["startupProbe"], log)
    wait_probe(proc, cluster, c, c["livenessProbe"], log)
    wait_probe(proc, cluster, c, c["readinessProbe"], log)
    assert env["BATON_AUTH"] == "api-key"

    admin = cluster.exec(d, notes_command(text, r"keys create .*--role admin"))
    assert admin.returncode == 0, admin.stdout + admin.stderr
    assert re.fullmatch(r"bk_[0-9a-f]{16}_\S+", admin.stdout.strip().splitlines()[-1]), admin.stdout

    denied = run_test_pod(cluster, objects, tmp_path)
    assert denied.returncode == 1, denied.stdout
    assert "probe failed: create session: Unauthenticated" in denied.stderr, denied.stderr

    cluster.secrets[probe_secret] = create_probe_key(cluster, objects, text)
    listed = cluster.exec(d, notes_command(text, r"keys list"))
    assert listed.returncode == 0, listed.stderr
    assert "first-admin" in listed.stdout and "helm-test" in listed.stdout, listed.stdout

    probe = run_test_pod(cluster, objects, tmp_path)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.startswith("probe ok: "), probe.stdout
    return proc, d, log, admin.stdout.strip().splitlines()[-1]


def check_gateway(cluster, objects, tmp_path, procs, key):
    """Starts baton-mcp as rendered: its probes answer, it admits the in-cluster host names and
    not others, and an MCP client's Baton key reaches batond through it (a key batond refuses
    gets 401, which only batond could have said)."""
    g = one(objects, "Deployment", f"{FULL}-mcp")
    gc = container(g)
    gw, glog = start(*cluster.pod(g), tmp_path, "baton-mcp")
    procs.append(gw)
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        wait_probe(gw, cluster, gc, gc[p], glog)
    mcp = f"http://127.0.0.1:{cluster.ports[3000]}/mcp"
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "helm-smoke", "version": "0"}}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Host": f"{FULL}-mcp.baton.svc:3000"}
    ok = http_status(mcp, {**headers, "Authorization": f"Bearer {key}"}, init)
    assert ok == 200, glog.read_text()
    bad = http_status(mcp, {**headers, "Authorization": "Bearer bk_0123456789abcdef_notakey"}, init)
    assert bad == 401, glog.read_text()
    assert http_status(mcp, {**headers, "Host": "evil.example", "Authorization": f"Bearer {key}"}, init) in (
        400, 403, 421)


def serving_roles(db):
    """The roles connected to the database (batond's pool, once the Job has exited)."""
    return set(psql(db.owner, f"SELECT DISTINCT usename FROM pg_stat_activity "
                              f"WHERE datname = '{db.name}' AND pid <> pg_backend_pid()").split())


def check_migrated_by_owner(db):
    assert psql(db.owner, "SELECT count(*) FROM _sqlx_migrations WHERE success") == str(len(MIGRATIONS))
    owners = set(psql(db.owner, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").split())
    assert owners == {urllib.parse.urlsplit(db.owner).username}, owners


def test_ha_pod_specs_run(fresh_db, tmp_path):
    redis = need("BATON_TEST_REDIS_URL")
    ha = CHART / "ci" / "ha-values.yaml"
    sets = [f"database.url={fresh_db.serving}", f"database.migrationUrl={fresh_db.owner}", f"redis.url={redis}"]
    objects = render([ha], sets=sets)
    cluster = Cluster(objects, tmp_path)
    procs = []
    try:
        # The migration hook Job migrates the empty database as the tables' owner...
        assert psql(fresh_db.owner, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
        run_job(cluster, one(objects, "Job"), tmp_path)
        check_migrated_by_owner(fresh_db)
        # ...and is safe to run again (every upgrade runs it).
        run_job(cluster, one(objects, "Job"), tmp_path)

        # batond as rendered (the Job migrates, Redis, OTLP to a closed loopback port) serves as
        # the serving role alone: the owner's URL is not in its pod.
        server, d, log, admin_key = check_server(cluster, objects, tmp_path, procs, (f"{FULL}-probe-key", "api-key"),
                                                 notes([ha], sets))
        env = cluster.env(container(d))
        assert env["BATON_MIGRATE"] == "false" and "BATON_MIGRATE_DATABASE_URL" not in env
        assert serving_roles(fresh_db) == {"baton_server"}

        # The gateway as rendered reaches batond through the (mapped) Service name.
        check_gateway(cluster, objects, tmp_path, procs, admin_key)

        # SIGTERM (after the preStop sleep) ends batond within the rest of its grace period.
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        pre = container(d)["lifecycle"]["preStop"]["sleep"]["seconds"]
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(grace - pre) == 0, log.read_text()
        assert time.monotonic() - started < grace - pre

        # The probe fails, naming the step, when batond is gone.
        failed = run_test_pod(cluster, objects, tmp_path)
        assert failed.returncode == 1
        assert "probe failed: connect" in failed.stderr, failed.stderr
    finally:
        for p in procs:
            stop(p)


def test_existing_secret_pod_specs_run(fresh_db, tmp_path):
    redis = need("BATON_TEST_REDIS_URL")
    values = CHART / "ci" / "existing-secret-values.yaml"
    objects = render([values])
    # The user's Secrets, as `kubectl create secret` would hold them.
    cluster = Cluster(objects, tmp_path, secrets={
        ("baton-urls", "database-url"): fresh_db.serving,
        ("baton-urls", "migrate-database-url"): fresh_db.owner,
        ("baton-urls", "redis-url"): redis,
        ("baton-auth", "pepper"): "a pepper of the user's own",
        ("otel-auth", "OTEL_EXPORTER_OTLP_HEADERS"): "x-api-key=abc",
    })
    procs = []
    try:
        run_job(cluster, one(objects, "Job"), tmp_path)
        check_migrated_by_owner(fresh_db)
        check_server(cluster, objects, tmp_path, procs, ("baton-probe-key", "key"), notes([values], []))
        assert serving_roles(fresh_db) == {"baton_server"}
        # The keys are hashed with the user's pepper: batond with another pepper refuses them.
        other = Cluster(objects, tmp_path, secrets={**cluster.secrets, ("baton-auth", "pepper"): "another"})
        d = one(objects, "Deployment", FULL)
        c = container(d)
        proc, log = start(*other.pod(d), tmp_path, "batond-other-pepper")
        procs.append(proc)
        wait_probe(proc, other, c, c["readinessProbe"] | {"failureThreshold": 30, "periodSeconds": 1}, log)
        refused = run_test_pod(other, objects, tmp_path)
        assert refused.returncode == 1, refused.stdout
        assert "probe failed: create session: Unauthenticated" in refused.stderr, refused.stderr
    finally:
        for p in procs:
            stop(p)


def test_batond_without_migrations_is_not_ready_on_an_empty_database(fresh_db, tmp_path):
    """BATON_MIGRATE=false really leaves the schema to the Job: on an unmigrated database the
    `helm test` probe fails (auth off here, so that the failure is the missing schema's, not a
    missing key's)."""
    objects = render([CHART / "ci" / "default-values.yaml"],
                     sets=[f"database.url={fresh_db.owner}", "auth.mode=none"])
    cluster = Cluster(objects, tmp_path)
    d = one(objects, "Deployment", FULL)
    c = container(d)
    proc, log = start(*cluster.pod(d), tmp_path, "batond")
    try:
        wait_probe(proc, cluster, c, c["startupProbe"], log)
        failed = run_test_pod(cluster, objects, tmp_path)
        assert failed.returncode == 1, failed.stdout
        assert "probe failed: create session" in failed.stderr, failed.stderr
        assert "Unauthenticated" not in failed.stderr, failed.stderr
        # Nor does `kubectl exec ... batond keys ...` migrate: it fails on the missing table.
        keys = cluster.exec(d, ["batond", "keys", "list"])
        assert keys.returncode != 0
        assert psql(fresh_db.owner, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    finally:
        stop(proc)


def test_embedded_pod_spec_runs(tmp_path):
    values = CHART / "ci" / "embedded-values.yaml"
    objects = render([values])
    cluster = Cluster(objects, tmp_path)
    d = one(objects, "Deployment", FULL)
    c = container(d)
    env = cluster.env(c)
    assert env["BATON_DATA_DIR"] == "/var/lib/baton"
    # The volume mount, as the kubelet would provide it (to `kubectl exec` too).
    data = tmp_path / "data"
    for e in c["env"]:
        if e["name"] == "BATON_DATA_DIR":
            e["value"] = str(data)
    proc, log = start(*cluster.pod(d), tmp_path, "batond")
    try:
        wait_probe(proc, cluster, c, c["readinessProbe"] | {"failureThreshold": 30, "periodSeconds": 1}, log)
        text = notes([values], [])
        denied = run_test_pod(cluster, objects, tmp_path)
        assert denied.returncode == 1 and "Unauthenticated" in denied.stderr, denied.stderr
        cluster.secrets[(f"{FULL}-probe-key", "api-key")] = create_probe_key(cluster, objects, text)
        probe = run_test_pod(cluster, objects, tmp_path)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert any(data.iterdir())
    finally:
        stop(proc)


# --- TLS -------------------------------------------------------------------------------------


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


def issue(dirpath, name, ca, sans, usage):
    """A P-256 key and a certificate signed by ca (name of a CA in dirpath)."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dirpath)
    ext = dirpath / f"{name}.ext"
    lines = ["basicConstraints=critical,CA:FALSE", f"extendedKeyUsage={usage}"]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "1", "-out", f"{name}.crt", "-extfile", ext.name, cwd=dirpath)
    return (dirpath / f"{name}.crt").read_text(), (dirpath / f"{name}.key").read_text()


def make_ca(dirpath, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=dirpath)
    return (dirpath / f"{name}.crt").read_text()


@pytest.fixture
def pki(tmp_path):
    """A server CA and certificate for the Service's names (and 127.0.0.1, where the Service
    name is mapped here), a client CA and a client certificate, as cert-manager would hold them."""
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "server-ca")
    crt, key = issue(d, "server", "server-ca", [
        f"DNS:{FULL}.{NAMESPACE}.svc", f"DNS:{FULL}.{NAMESPACE}.svc.cluster.local", "IP:127.0.0.1"], "serverAuth")
    client_ca = make_ca(d, "client-ca")
    issue(d, "client", "client-ca", [], "clientAuth")
    return {"dir": d, "ca": ca, "crt": crt, "key": key, "client_ca": client_ca}


def tls_status(port, ca_file, cert=None):
    """Connects with TLS and HTTP/2 to the gRPC port: 'ok' when the server speaks (its SETTINGS
    frame), else what went wrong. With TLS 1.3 a refused client certificate shows after the
    handshake, on the first read."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(*cert)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=f"{FULL}.{NAMESPACE}.svc") as s:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
                data = s.recv(9)
                return "ok" if len(data) == 9 and data[3] == 4 else f"no SETTINGS frame: {data!r}"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return f"refused: {e}"


def test_tls_pod_specs_run(fresh_db, tmp_path, pki):
    """TLS from a kubernetes.io/tls Secret: batond serves gRPC over TLS with the mounted
    certificate, the kubelet's probes stay on plain HTTP (admin port), and `helm test` probes
    over https with the CA from the same Secret and its API key."""
    values = CHART / "ci" / "tls-values.yaml"
    sets = [f"database.url={fresh_db.serving}", f"database.migrationUrl={fresh_db.owner}"]
    objects = render([values], sets=sets)
    cluster = Cluster(objects, tmp_path, secrets={
        ("baton-tls", "tls.crt"): pki["crt"], ("baton-tls", "tls.key"): pki["key"], ("baton-tls", "ca.crt"): pki["ca"]})
    procs = []
    try:
        run_job(cluster, one(objects, "Job"), tmp_path)
        check_migrated_by_owner(fresh_db)
        check_server(cluster, objects, tmp_path, procs, (f"{FULL}-probe-key", "api-key"), notes([values], sets))
        probe_args = container(one(objects, "Pod"))["args"]
        assert probe_args[probe_args.index("--endpoint") + 1].startswith("https://")
        grpc = cluster.ports[50051]
        assert tls_status(grpc, pki["dir"] / "server-ca.crt") == "ok"
        # Another CA does not trust it: the certificate really is the mounted one.
        assert tls_status(grpc, pki["dir"] / "client-ca.crt").startswith("refused")
        assert serving_roles(fresh_db) == {"baton_server"}
    finally:
        for p in procs:
            stop(p)


def test_mtls_pod_specs_run(fresh_db, tmp_path, pki):
    """mTLS: batond refuses a TLS client without a certificate from the client CA and accepts
    one with it; the kubelet's probes answer on the admin port over HTTPS (admin TLS); baton-mcp
    calls batond with its own client certificate from its Secret."""
    values = CHART / "ci" / "mtls-values.yaml"
    sets = [f"database.url={fresh_db.serving}", f"database.migrationUrl={fresh_db.owner}"]
    objects = render([values], sets=sets)
    d = pki["dir"]
    cluster = Cluster(objects, tmp_path, secrets={
        ("baton-tls", "tls.crt"): pki["crt"], ("baton-tls", "tls.key"): pki["key"], ("baton-tls", "ca.crt"): pki["ca"],
        ("baton-client-ca", "ca.crt"): pki["client_ca"],
        ("baton-mcp-client", "tls.crt"): (d / "client.crt").read_text(),
        ("baton-mcp-client", "tls.key"): (d / "client.key").read_text()})
    run_job(cluster, one(objects, "Job"), tmp_path)
    dep = one(objects, "Deployment", FULL)
    c = container(dep)
    procs = []
    try:
        proc, log = start(*cluster.pod(dep), tmp_path, "batond")
        procs.append(proc)
        for p in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[p]["httpGet"]["scheme"] == "HTTPS"
            wait_probe(proc, cluster, c, c[p], log)
        # The admin port really is TLS now: plain HTTP gets no answer.
        assert http_status(f"http://127.0.0.1:{cluster.ports[9090]}/ready") != 200
        grpc = cluster.ports[50051]
        ca = d / "server-ca.crt"
        assert tls_status(grpc, ca).startswith("refused"), "a client without a certificate was let in"
        wrong = (d / "server.crt", d / "server.key")  # not signed by the client CA
        assert tls_status(grpc, ca, wrong).startswith("refused")
        assert tls_status(grpc, ca, (d / "client.crt", d / "client.key")) == "ok"

        admin = cluster.exec(dep, notes_command(notes([values], sets), r"keys create .*--role admin"))
        assert admin.returncode == 0, admin.stderr
        check_gateway(cluster, objects, tmp_path, procs, admin.stdout.strip().splitlines()[-1])
    finally:
        for p in procs:
            stop(p)
