"""Template unit tests over `helm template` output: hooks, probes, security, secret references,
the values schema and the fail messages."""

import base64
import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import (CHART, PG_URL, RELEASE, NAMESPACE, by_kind, container, env_of, notes, one, render,
                      render_error)

DEFAULT = CHART / "ci" / "default-values.yaml"
HA = CHART / "ci" / "ha-values.yaml"
EXISTING = CHART / "ci" / "existing-secret-values.yaml"
HOOKS_OFF = CHART / "ci" / "hooks-off-values.yaml"
EMBEDDED = CHART / "ci" / "embedded-values.yaml"
TLS = CHART / "ci" / "tls-values.yaml"
MTLS = CHART / "ci" / "mtls-values.yaml"
OWNER_URL = "postgres://baton_owner:ownersecret@postgres.db.svc:5432/baton"
FULL = f"{RELEASE}-baton"
REPO = CHART.parent.parent


def pods(objects):
    """(object, pod spec) of everything that runs a pod."""
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


def server(objects):
    return one(objects, "Deployment", FULL)


def job(objects):
    return one(objects, "Job")


# --- migrations and hooks ------------------------------------------------------------------


def test_migration_job_is_a_pre_install_pre_upgrade_hook():
    objs = render([DEFAULT])
    j = job(objs)
    ann = j["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation"
    c = container(j)
    assert c["command"] == ["/usr/local/bin/batond"] and c["args"] == ["migrate"]
    # The hook runs before the release's Secret exists: it reads a hook Secret of its own,
    # created just before it (lower weight) and deleted once the hook succeeded.
    ref = env_of(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{FULL}-migrations", "key": "DATABASE_URL"}
    hook_secret = one(objs, "Secret", f"{FULL}-migrations")
    sann = hook_secret["metadata"]["annotations"]
    assert sann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(sann["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
    assert "hook-succeeded" in sann["helm.sh/hook-delete-policy"]
    assert base64.b64decode(hook_secret["data"]["DATABASE_URL"]).decode() == PG_URL
    # With the Job on, batond itself does not migrate: an env var, so that `kubectl exec ...
    # batond keys` does not either.
    c = container(server(objs))
    assert c["args"] == ["serve"]
    assert env_of(c)["BATON_MIGRATE"]["value"] == "false"


def test_hooks_off_renders_a_plain_job_named_after_the_image():
    objs = render([HOOKS_OFF])
    j = job(objs)
    ann = j["metadata"].get("annotations", {})
    assert not any(k.startswith("helm.sh/hook") for k in ann)
    assert ann["argocd.argoproj.io/sync-wave"] == "-1"
    assert re.fullmatch(rf"{FULL}-migrate-[0-9a-f]{{10}}", j["metadata"]["name"])
    env = env_of(container(j))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "DATABASE_URL"}
    # The plain Job reads the owner URL from the release's Secret; batond never gets it.
    assert env["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": FULL, "key": "BATON_MIGRATE_DATABASE_URL"}
    secret = one(objs, "Secret", FULL)
    assert base64.b64decode(secret["data"]["BATON_MIGRATE_DATABASE_URL"]).decode().startswith("postgres://baton_owner:")
    assert not by_kind(objs, "Secret", f"{FULL}-migrations")
    assert j["spec"]["template"]["spec"]["serviceAccountName"] == FULL
    server_env = env_of(container(server(objs)))
    assert server_env["BATON_MIGRATE"]["value"] == "false" and "BATON_MIGRATE_DATABASE_URL" not in server_env
    other = render([HOOKS_OFF], sets=["image.tag=0.2.0"])
    assert job(other)["metadata"]["name"] != j["metadata"]["name"]


def test_migrations_off_lets_batond_migrate_at_start():
    objs = render([DEFAULT], sets=["migrations.enabled=false"])
    assert not by_kind(objs, "Job")
    env = env_of(container(server(objs)))
    assert "BATON_MIGRATE" not in env and "BATON_MIGRATE_DATABASE_URL" not in env
    # With an owner URL, batond itself needs it to migrate at start-up (from the release's Secret).
    objs = render([DEFAULT], sets=["migrations.enabled=false", f"database.migrationUrl={OWNER_URL}"])
    env = env_of(container(server(objs)))
    assert env["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": FULL, "key": "BATON_MIGRATE_DATABASE_URL"}
    data = one(objs, "Secret", FULL)["data"]
    assert base64.b64decode(data["BATON_MIGRATE_DATABASE_URL"]).decode() == OWNER_URL


def test_existing_secret_job_reads_it_directly():
    objs = render([EXISTING])
    env = env_of(container(job(objs)))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-urls", "key": "database-url"}
    assert env["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "baton-urls", "key": "migrate-database-url"}
    assert not by_kind(objs, "Secret")
    # The owner URL may live in a Secret of its own.
    objs = render([EXISTING], sets=["database.migrationExistingSecret=baton-owner"])
    ref = env_of(container(job(objs)))["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "baton-owner", "key": "migrate-database-url"}
    assert "BATON_MIGRATE_DATABASE_URL" not in env_of(container(server(objs)))


def test_serving_and_owner_urls_are_kept_apart():
    """The owner's URL reaches the migration Job only: the hook Secret (deleted once the hook
    succeeded) holds it, the release's Secret and batond's pod do not."""
    objs = render([HA])
    j = container(job(objs))
    env = env_of(j)
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-migrations", "key": "DATABASE_URL"}
    assert env["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULL}-migrations", "key": "BATON_MIGRATE_DATABASE_URL"}
    hook = one(objs, "Secret", f"{FULL}-migrations")
    assert base64.b64decode(hook["data"]["BATON_MIGRATE_DATABASE_URL"]).decode() == OWNER_URL
    assert "BATON_MIGRATE_DATABASE_URL" not in one(objs, "Secret", FULL)["data"]
    for d in by_kind(objs, "Deployment"):
        assert "baton_owner" not in yaml.safe_dump(d) and "BATON_MIGRATE_DATABASE_URL" not in yaml.safe_dump(d)
    # Without an owner URL the Job migrates as the serving role, and NOTES say so.
    objs = render([DEFAULT])
    assert "BATON_MIGRATE_DATABASE_URL" not in env_of(container(job(objs)))
    assert set(one(objs, "Secret", f"{FULL}-migrations")["data"]) == {"DATABASE_URL"}
    # The owner URL from a value with the serving URL from the user's Secret.
    objs = render([EXISTING], sets=["database.migrationExistingSecretKey=", f"database.migrationUrl={OWNER_URL}"])
    hook = one(objs, "Secret", f"{FULL}-migrations")
    assert set(hook["data"]) == {"BATON_MIGRATE_DATABASE_URL"}
    env = env_of(container(job(objs)))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-urls", "key": "database-url"}
    assert env["BATON_MIGRATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULL}-migrations"


def test_embedded_store_single_replica_on_a_volume():
    objs = render([EMBEDDED])
    assert not by_kind(objs, "Job")
    d = server(objs)
    c = container(d)
    env = env_of(c)
    assert "DATABASE_URL" not in env and env["BATON_DATA_DIR"]["value"] == "/var/lib/baton"
    assert "BATON_MIGRATE" not in env and "BATON_MIGRATE_DATABASE_URL" not in env
    assert env["BATON_AUTH"]["value"] == "api-key"
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert d["spec"]["replicas"] == 1
    pvc = one(objs, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert {"name": "data", "mountPath": "/var/lib/baton"} in c["volumeMounts"]


# --- probes and termination ----------------------------------------------------------------


def test_probes_use_health_and_ready_on_the_admin_port():
    c = container(server(render([DEFAULT])))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 50051, "admin": 9090}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 60
    env = env_of(c)
    assert env["BATON_GRPC_ADDR"]["value"] == "0.0.0.0:50051"
    assert env["BATON_ADMIN_ADDR"]["value"] == "0.0.0.0:9090"


def test_probes_can_be_turned_off():
    c = container(server(render([DEFAULT], sets=["probes.startup.enabled=false"])))
    assert "startupProbe" not in c and "livenessProbe" in c


def test_ipv6_bind_address_is_bracketed():
    env = env_of(container(server(render([DEFAULT], sets=["config.bindAddress=::"]))))
    assert env["BATON_GRPC_ADDR"]["value"] == "[::]:50051"


@pytest.mark.parametrize("kube,native", [("1.33.0", True), ("1.27.0", False)])
def test_termination_grace_covers_prestop_and_shutdown(kube, native):
    d = server(render([DEFAULT], sets=["config.shutdownGraceSecs=45"], kube=kube))
    spec = d["spec"]["template"]["spec"]
    c = container(d)
    assert env_of(c)["BATON_SHUTDOWN_GRACE_SECS"]["value"] == "45"
    pre = c["lifecycle"]["preStop"]
    if native:
        assert pre == {"sleep": {"seconds": 10}}
    else:
        assert pre == {"exec": {"command": ["/usr/bin/sleep", "10"]}}
    assert spec["terminationGracePeriodSeconds"] > 10 + 45


def test_prestop_off():
    c = container(server(render([DEFAULT], sets=["lifecycle.preStopSleepSeconds=0"])))
    assert "lifecycle" not in c


# --- security ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [DEFAULT, HA, EMBEDDED, HOOKS_OFF, TLS, MTLS], ids=lambda p: p.stem)
def test_every_pod_is_hardened(values):
    objs = render([values])
    seen = 0
    for o, spec in pods(objs):
        seen += 1
        assert spec["automountServiceAccountToken"] is False, o["metadata"]["name"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
            assert "requests" in c["resources"] and "memory" in c["resources"]["limits"]
    assert seen >= 2
    for sa in by_kind(objs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_urls_live_in_secrets_only():
    objs = render([HA])
    assert not by_kind(objs, "ConfigMap")
    secret = one(objs, "Secret", FULL)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "DATABASE_URL": PG_URL,
        "DATABASE_READ_URL": "postgres://baton:secret@postgres-replica-0.db.svc:5432/baton,"
        "postgres://baton:secret@postgres-replica-1.db.svc:5432/baton",
        "REDIS_URL": "redis://:secret@redis.db.svc:6379/0",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc",
    }
    env = env_of(container(server(objs)))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "DATABASE_URL"}
    assert env["DATABASE_READ_URL"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "DATABASE_READ_URL"}
    assert env["BATON_READ_REPLICA_MAX_LAG_MS"]["value"] == "1000"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "REDIS_URL"}
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]["name"] == FULL
    # No password, URL or header value appears in clear anywhere but in Secrets.
    clear = yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"])
    for needle in ("secret@", "redis.db.svc", "x-api-key", "baton_owner"):
        assert needle not in clear
    # The pods roll when the Secret's content changes.
    a = server(objs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    b = server(render([HA], sets=["redis.url=redis://other:6379"]))["spec"]["template"]["metadata"]["annotations"]
    assert a != b["checksum/secret"]


def test_read_replicas_from_an_existing_secret_and_none_by_default():
    objs = render([HA], sets=["database.readExistingSecret=replicas", "database.readExistingSecretKey=urls"])
    env = env_of(container(server(objs)))
    assert env["DATABASE_READ_URL"]["valueFrom"]["secretKeyRef"] == {"name": "replicas", "key": "urls"}
    assert "DATABASE_READ_URL" not in {k for k in base64_keys(one(objs, "Secret", FULL))}
    env = env_of(container(server(render([HA], sets=["database.readUrl="]))))
    assert "DATABASE_READ_URL" not in env and "BATON_READ_REPLICA_MAX_LAG_MS" not in env


def base64_keys(secret):
    return secret.get("data", {}).keys()


def test_existing_secrets_are_referenced():
    objs = render([EXISTING])
    env = env_of(container(server(objs)))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-urls", "key": "database-url"}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "baton-urls", "key": "redis-url"}
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"] == {
        "name": "otel-auth", "key": "OTEL_EXPORTER_OTLP_HEADERS"}
    assert env["BATON_KEY_PEPPER"]["valueFrom"]["secretKeyRef"] == {"name": "baton-auth", "key": "pepper"}
    assert not by_kind(objs, "Secret")


# --- authentication, quotas, TLS ------------------------------------------------------------


def test_auth_defaults_to_api_key_with_a_generated_pepper():
    objs = render([DEFAULT])
    env = env_of(container(server(objs)))
    assert env["BATON_AUTH"]["value"] == "api-key"
    assert env["BATON_AUTH_CACHE_SECS"]["value"] == "30"
    ref = env["BATON_KEY_PEPPER"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{FULL}-key-pepper", "key": "BATON_KEY_PEPPER"}
    secret = one(objs, "Secret", f"{FULL}-key-pepper")
    # Kept by `helm uninstall`: a reinstall keeps the keys in the database valid.
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pepper = base64.b64decode(secret["data"]["BATON_KEY_PEPPER"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{64}", pepper), pepper
    # Without a cluster to read it back from (helm template), every render draws a new one:
    # the reason auth.keyPepper.existingSecret exists for Argo CD.
    again = one(render([DEFAULT]), "Secret", f"{FULL}-key-pepper")["data"]["BATON_KEY_PEPPER"]
    assert again != secret["data"]["BATON_KEY_PEPPER"]
    # The pepper never shows outside its Secret, and the migration Job does not get it.
    assert pepper not in yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"])
    assert "BATON_KEY_PEPPER" not in env_of(container(job(objs)))


def test_existing_pepper_secret_replaces_the_generated_one():
    objs = render([DEFAULT], sets=["auth.keyPepper.existingSecret=my-pepper"])
    assert not by_kind(objs, "Secret", f"{FULL}-key-pepper")
    ref = env_of(container(server(objs)))["BATON_KEY_PEPPER"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-pepper", "key": "BATON_KEY_PEPPER"}


def test_auth_none_is_explicit_and_warned_about():
    objs = render([DEFAULT], sets=["auth.mode=none", "auth.cacheSecs=5"])
    env = env_of(container(server(objs)))
    assert env["BATON_AUTH"]["value"] == "none" and env["BATON_AUTH_CACHE_SECS"]["value"] == "5"
    text = notes([DEFAULT], ["auth.mode=none"])
    assert "WARNING: authentication is off" in text and "keys create" not in text


def test_quotas_reach_batond():
    env = env_of(container(server(render([TLS]))))
    assert {k: env[k]["value"] for k in ("BATON_RATE_LIMIT_RPS", "BATON_RATE_LIMIT_BURST",
                                          "BATON_MAX_STREAMS_PER_PRINCIPAL", "BATON_MAX_STREAMS_PER_CONNECTION",
                                          "BATON_AUTH_CACHE_SECS")} == {
        "BATON_RATE_LIMIT_RPS": "200", "BATON_RATE_LIMIT_BURST": "400", "BATON_MAX_STREAMS_PER_PRINCIPAL": "100",
        "BATON_MAX_STREAMS_PER_CONNECTION": "50", "BATON_AUTH_CACHE_SECS": "10"}
    env = env_of(container(server(render([DEFAULT]))))
    assert env["BATON_RATE_LIMIT_RPS"]["value"] == "1000" and env["BATON_MAX_STREAMS_PER_CONNECTION"]["value"] == "500"


def mounted_file(obj, c, path):
    """The (Secret name, key) a file path of a container comes from, through its volumeMounts."""
    spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        prefix = m["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            assert m.get("readOnly") is True, m
            secret = volumes[m["name"]]["secret"]
            item = next(i for i in secret["items"] if i["path"] == path[len(prefix):])
            return secret["secretName"], item["key"], secret["defaultMode"]
    raise AssertionError(f"{path} is on no volume of {c['name']}")


def test_tls_mounts_the_certificate_and_keeps_probes_on_http():
    objs = render([TLS])
    d = server(objs)
    c = container(d)
    env = env_of(c)
    assert mounted_file(d, c, env["BATON_TLS_CERT"]["value"]) == ("baton-tls", "tls.crt", 0o440)
    assert mounted_file(d, c, env["BATON_TLS_KEY"]["value"]) == ("baton-tls", "tls.key", 0o440)
    assert "BATON_TLS_CLIENT_CA" not in env
    # The kubelet's probes stay on the admin port's plain HTTP (no gRPC health over TLS).
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[p]["httpGet"]["port"] == "admin"
    # helm test: https to the Service with the CA from the same Secret (only ca.crt is mounted).
    pod = one(objs, "Pod")
    tc = container(pod)
    args = tc["args"]
    assert args[args.index("--endpoint") + 1] == f"https://{FULL}.{NAMESPACE}.svc:50051"
    ca = args[args.index("--tls-ca") + 1]
    assert mounted_file(pod, tc, ca)[:2] == ("baton-tls", "ca.crt")
    assert [i["key"] for i in pod["spec"]["volumes"][0]["secret"]["items"]] == ["ca.crt"]
    assert "BATON_PROBE_API_KEY" in env_of(tc)
    # The CA may come from a Secret of its own.
    pod = one(render([TLS], sets=["tls.caSecret=my-ca", "tls.caKey=root.pem"]), "Pod")
    assert mounted_file(pod, container(pod), ca)[:2] == ("my-ca", "root.pem")
    assert "BATON_ADMIN_TLS" not in env
    # NOTES tell how to reach it with TLS and that a renewed certificate needs a restart.
    text = notes([TLS])
    assert f"-authority {FULL}.{NAMESPACE}.svc" in text and "rollout restart" in text


def test_mtls_mounts_the_client_ca_and_the_gateways_certificate():
    objs = render([MTLS])
    d = server(objs)
    c = container(d)
    env = env_of(c)
    assert mounted_file(d, c, env["BATON_TLS_CLIENT_CA"]["value"]) == ("baton-client-ca", "ca.crt", 0o440)
    assert mounted_file(d, c, env["BATON_TLS_CERT"]["value"])[:2] == ("baton-tls", "tls.crt")
    assert not by_kind(objs, "Pod")
    # baton-mcp: https to the Service, the CA, and its own client certificate.
    g = one(objs, "Deployment", f"{FULL}-mcp")
    gc = container(g)
    genv = env_of(gc)
    assert genv["BATON_ENDPOINT"]["value"] == f"https://{FULL}.{NAMESPACE}.svc:50051"
    assert mounted_file(g, gc, genv["BATON_TLS_CA"]["value"]) == ("baton-tls", "ca.crt", 0o444)
    assert mounted_file(g, gc, genv["BATON_MCP_TLS_CERT"]["value"]) == ("baton-mcp-client", "tls.crt", 0o440)
    assert mounted_file(g, gc, genv["BATON_MCP_TLS_KEY"]["value"]) == ("baton-mcp-client", "tls.key", 0o440)
    # The gateway never mounts batond's own key.
    assert all(i["key"] != "tls.key" or v["secret"]["secretName"] != "baton-tls"
               for v in g["spec"]["template"]["spec"]["volumes"] if "secret" in v for i in v["secret"]["items"])
    # TLS without mTLS: the gateway trusts the CA and presents no certificate.
    genv = env_of(container(one(render([TLS], sets=["gateway.enabled=true"]), "Deployment", f"{FULL}-mcp")))
    assert "BATON_TLS_CA" in genv and "BATON_MCP_TLS_CERT" not in genv
    # The client CA under another key of its Secret.
    d = server(render([MTLS], sets=["tls.clientCaKey=bundle.pem"]))
    c = container(d)
    assert mounted_file(d, c, env_of(c)["BATON_TLS_CLIENT_CA"]["value"])[:2] == ("baton-client-ca", "bundle.pem")


def test_admin_tls_probes_and_scrapes_https():
    objs = render([MTLS])
    c = container(server(objs))
    assert env_of(c)["BATON_ADMIN_TLS"]["value"] == "true"
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[p]["httpGet"]["scheme"] == "HTTPS" and c[p]["httpGet"]["port"] == "admin"
    sm = one(objs, "ServiceMonitor")
    ep = {e["port"]: e for e in sm["spec"]["endpoints"]}
    assert ep["admin"]["scheme"] == "https"
    assert ep["admin"]["tlsConfig"] == {"ca": {"secret": {"name": "baton-tls", "key": "ca.crt"}},
                                        "serverName": f"{FULL}.{NAMESPACE}.svc"}
    assert ep["http"]["scheme"] == "http" and "tlsConfig" not in ep["http"]
    text = notes([MTLS])
    assert "curl --cacert ca.crt" in text and "mTLS" in text


# --- services, scaling, policies -------------------------------------------------------------


def test_service_ports():
    objs = render([DEFAULT])
    svc = one(objs, "Service", FULL)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051 and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["admin"]["port"] == 9090
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    assert not by_kind(objs, "ServiceMonitor") and not by_kind(objs, "HorizontalPodAutoscaler")
    assert not by_kind(objs, "NetworkPolicy") and not by_kind(objs, "PodDisruptionBudget")
    spread = server(objs)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_ha_objects():
    objs = render([HA])
    d = server(objs)
    assert "replicas" not in d["spec"]
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULL}
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    pdbs = {p["metadata"]["name"]: p for p in by_kind(objs, "PodDisruptionBudget")}
    assert pdbs[FULL]["spec"]["minAvailable"] == 1
    assert f"{FULL}-mcp" in pdbs
    sm = one(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert {e["port"] for e in sm["spec"]["endpoints"]} == {"admin", "http"}


def test_network_policy_allows_only_the_listed_traffic():
    objs = render([HA])
    nps = {n["metadata"]["name"]: n for n in by_kind(objs, "NetworkPolicy")}
    assert set(nps) == {FULL, f"{FULL}-migrations", f"{FULL}-test", f"{FULL}-mcp"}
    srv = nps[FULL]["spec"]
    assert srv["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = {p["port"] for r in srv["ingress"] for p in r["ports"]}
    assert ingress_ports == {"grpc", "admin"}
    assert srv["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agents"}}}]
    egress_ports = sorted((p["protocol"], p["port"]) for r in srv["egress"] for p in r["ports"])
    assert egress_ports == [("TCP", 53), ("TCP", 4317), ("TCP", 4318), ("TCP", 5432), ("TCP", 6379), ("UDP", 53)]
    mig = nps[f"{FULL}-migrations"]
    assert sorted(p["port"] for r in mig["spec"]["egress"] for p in r["ports"]) == [53, 53, 5432]
    assert "ingress" not in mig["spec"]
    # The hook Job's policy exists before it runs: a hook with a lower weight.
    assert mig["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(mig["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        one(objs, "Job")["metadata"]["annotations"]["helm.sh/hook-weight"])
    plain_job = render([HA], sets=["migrations.hook=false"])
    assert "annotations" not in one(plain_job, "NetworkPolicy", f"{FULL}-migrations")["metadata"]
    assert not by_kind(render([HA], sets=["migrations.enabled=false"]), "NetworkPolicy", f"{FULL}-migrations")
    # Without Redis and a collector, no egress to their ports either.
    plain = render([DEFAULT], sets=["networkPolicy.enabled=true"])
    srv = one(plain, "NetworkPolicy", FULL)["spec"]
    assert sorted(p["port"] for r in srv["egress"] for p in r["ports"]) == [53, 53, 5432]


def test_gateway_points_at_the_batond_service():
    objs = render([HA])
    g = one(objs, "Deployment", f"{FULL}-mcp")
    c = container(g)
    env = env_of(c)
    assert c["command"] == ["/usr/local/bin/baton-mcp"]
    assert env["BATON_MCP_TRANSPORT"]["value"] == "http"
    assert env["BATON_ENDPOINT"]["value"] == f"http://{FULL}.{NAMESPACE}.svc:50051"
    hosts = env["BATON_MCP_ALLOWED_HOSTS"]["value"].split(",")
    assert f"{FULL}-mcp.{NAMESPACE}.svc" in hosts and "mcp.example.com" in hosts
    assert env["OTEL_SERVICE_NAME"]["value"] == "baton-mcp"
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    svc = one(objs, "Service", f"{FULL}-mcp")
    assert svc["spec"]["ports"][0]["port"] == 3000


def test_helm_test_pod_runs_batond_probe():
    objs = render([DEFAULT])
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # `helm test --logs` reads the pod's logs after the test: it must not be deleted on success.
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    c = container(pod)
    assert c["command"] == ["/usr/local/bin/batond"]
    assert c["args"][:3] == ["probe", "--endpoint", f"http://{FULL}.{NAMESPACE}.svc:50051"]
    assert "--tls-ca" not in c["args"] and "volumes" not in pod["spec"]
    # auth.mode api-key (the default): the probe's writer key from a Secret created after
    # install; optional, so that without it the probe runs and says Unauthenticated.
    assert env_of(c)["BATON_PROBE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{FULL}-probe-key", "key": "api-key", "optional": True}
    c = container(one(render([EXISTING]), "Pod"))
    assert env_of(c)["BATON_PROBE_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "baton-probe-key", "key": "key", "optional": True}
    c = container(one(render([DEFAULT], sets=["auth.mode=none"]), "Pod"))
    assert "BATON_PROBE_API_KEY" not in env_of(c)
    assert not by_kind(render([DEFAULT], sets=["tests.enabled=false"]), "Pod")


def test_image_reference():
    c = container(server(render([DEFAULT])))
    assert c["image"] == "baton:0.1.0"
    digest = "sha256:" + "a" * 64
    c = container(server(render([DEFAULT], sets=["image.repository=reg.example/baton", "image.tag=1.2.3", f"image.digest={digest}"])))
    assert c["image"] == f"reg.example/baton:1.2.3@{digest}"


# --- every setting reachable -----------------------------------------------------------------

ALL_OTEL = [
    "otel.endpoint=http://c:4317", "otel.tracesEndpoint=http://c:4318/v1/traces", "otel.protocol=grpc",
    "otel.resourceAttributes=a=b", "otel.sampler=traceidratio", "otel.samplerArg=0.5", "otel.headers=k=v",
    "otel.timeout=1000", "otel.compression=gzip", "otel.bspScheduleDelay=100", "otel.bspMaxQueueSize=10",
    "otel.bspMaxExportBatchSize=5", "otel.sdkDisabled=true", "otel.tracesExporter=none",
]


def help_env_names(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", out))


def readme_otel_names():
    text = (REPO / "README.md").read_text()
    return set(re.findall(r"`(OTEL_[A-Z_]+)`", text))


def test_every_batond_setting_is_reachable_through_values():
    binary = os.environ.get("BATOND_BIN")
    assert binary, "BATOND_BIN must name the built batond (scripts/parts/helm.sh sets it)"
    wanted = help_env_names(binary)
    assert {"DATABASE_URL", "REDIS_URL", "BATON_SHUTDOWN_GRACE_SECS"} <= wanted
    # The embedded store's directory is set in embedded mode, the owner URL when batond migrates
    # itself, TLS in TLS mode: the union of those renders.
    env = set(env_of(container(server(render([HA], sets=ALL_OTEL)))))
    env |= set(env_of(container(server(render([EMBEDDED])))))
    env |= set(env_of(container(server(render([MTLS])))))
    env |= set(env_of(container(server(render([HOOKS_OFF], sets=["migrations.enabled=false"])))))
    assert {"BATON_DATA_DIR", "BATON_TLS_CLIENT_CA", "BATON_MIGRATE_DATABASE_URL", "BATON_MIGRATE"} <= env
    missing = wanted - env
    assert not missing, f"batond settings the chart cannot set: {sorted(missing)}"
    otel = readme_otel_names() - {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}
    assert len(otel) >= 10
    missing = otel - env
    assert not missing, f"OTEL variables the chart cannot set: {sorted(missing)}"
    assert "RUST_LOG" in env


def test_every_gateway_setting_is_reachable_through_values():
    binary = os.environ.get("BATON_MCP_BIN")
    assert binary, "BATON_MCP_BIN must name the built baton-mcp"
    wanted = help_env_names(binary)
    env = set(env_of(container(one(render([HA], sets=ALL_OTEL + ["gateway.tenant=t"]), "Deployment", f"{FULL}-mcp"))))
    # BATON_TOKEN is the stdio transport's credential; over HTTP each caller's own is forwarded.
    # --embedded (its data directory and loopback gRPC address) runs Baton inside baton-mcp on
    # a laptop; the chart runs batond, and the gateway in front of it.
    # BATON_TLS_SERVER_NAME: the chart calls batond by its Service name, which the certificate names.
    env |= set(env_of(container(one(render([MTLS]), "Deployment", f"{FULL}-mcp"))))
    missing = wanted - env - {"BATON_TOKEN", "BATON_EMBEDDED", "BATON_DATA_DIR", "BATON_MCP_GRPC_ADDR",
                              "BATON_TLS_SERVER_NAME"}
    assert not missing, f"baton-mcp settings the chart cannot set: {sorted(missing)}"


def test_extra_env_args_and_volumes_pass_through():
    c = container(server(render([DEFAULT], sets=[
        "extraArgs[0]=--log-format=text", "extraEnv[0].name=FOO", "extraEnv[0].value=bar",
        "extraVolumes[0].name=certs", "extraVolumes[0].secret.secretName=tls",
        "extraVolumeMounts[0].name=certs", "extraVolumeMounts[0].mountPath=/etc/baton/tls"])))
    assert c["args"] == ["--log-format=text", "serve"]
    assert env_of(c)["FOO"]["value"] == "bar"
    assert {"name": "certs", "mountPath": "/etc/baton/tls"} in c["volumeMounts"]


def flatten(values, schema, prefix=""):
    """Dotted keys of the values, down to the chart's own leaves: Kubernetes objects passed
    through as they are (resources, securityContext, ...) count as one value."""
    for k, v in values.items():
        key = f"{prefix}{k}"
        sub = schema["properties"][k]
        if isinstance(v, dict) and "properties" in sub:
            yield from flatten(v, sub, key + ".")
        else:
            yield key


def test_chart_readme_documents_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = set(flatten(values, schema))
    assert not keys - documented, f"values missing from helm/baton/README.md: {sorted(keys - documented)}"
    assert not documented - keys, f"README documents values that do not exist: {sorted(documented - keys)}"


# --- the values schema -----------------------------------------------------------------------


@pytest.mark.parametrize("sets,message", [
    (["replicaCount=two"], "/replicaCount"),
    (["replicaCont=2"], "replicaCont"),
    (["redis.pool=3"], "pool"),
    (["config.logFormat=xml"], "/config/logFormat"),
    (["gateway.port=70000"], "/gateway/port"),
    (["redis.cacheTailLen=5000"], "/redis/cacheTailLen"),
    (["database.url=mysql://x"], "/database/url"),
    (["database.migrationUrl=mysql://x"], "/database/migrationUrl"),
    (["auth.mode=basic"], "/auth/mode"),
    (["auth.mode=api_key"], "/auth/mode"),
    (["auth.cacheSecs=0"], "/auth/cacheSecs"),
    (["auth.cacheSecs=3601"], "/auth/cacheSecs"),
    (["auth.pepper=x"], "pepper"),
    (["auth.keyPepper.existingSecret=Not_A_Name"], "/auth/keyPepper/existingSecret"),
    (["tls.enabled=yes"], "/tls/enabled"),
    (["tls.secretName=Bad/Name"], "/tls/secretName"),
    (["tls.clientCaKey=a b"], "/tls/clientCaKey"),
    (["tls.admin=1"], "/tls/admin"),
    (["gateway.tlsClientSecret=No"], "/gateway/tlsClientSecret"),
    (["quotas.rateLimitRps=-1"], "/quotas/rateLimitRps"),
    (["quotas.rateLimitBurst=0"], "/quotas/rateLimitBurst"),
    (["quotas.maxStreams=3"], "maxStreams"),
    (["tests.apiKeySecret=UPPER"], "/tests/apiKeySecret"),
    (["config.purgeExpiredAfter=thirty days"], "/config/purgeExpiredAfter"),
    (["config.redactSecrets=maybe"], "/config/redactSecrets"),
])
def test_schema_rejects_bad_values(sets, message):
    err = render_error([DEFAULT], sets=sets)
    assert "values don't meet the specifications of the schema" in err or "schema" in err, err
    assert message in err, err


def test_schema_rejects_a_string_replica_count_from_a_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('replicaCount: "two"\n')
    err = render_error([DEFAULT, bad])
    assert "/replicaCount" in err and "want integer" in err


def test_schema_is_draft_07_and_closed():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} is open"
            for k, v in node["properties"].items():
                walk(v, f"{path}.{k}")
    walk(schema, "$")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


# --- fail messages -----------------------------------------------------------------------------


@pytest.mark.parametrize("files,sets,message", [
    ([], [], "no database: set database.url or database.existingSecret"),
    ([DEFAULT], ["replicaCount=2"], "2 batond replicas need Redis"),
    ([DEFAULT], ["autoscaling.enabled=true"], "6 batond replicas need Redis"),
    ([EMBEDDED], ["database.url=postgres://x/y"], "choose one store"),
    ([EMBEDDED], ["replicaCount=2", "redis.url=redis://r:6379"], "the embedded store runs a single replica"),
    ([DEFAULT], ["lifecycle.terminationGracePeriodSeconds=25"], "must be above lifecycle.preStopSleepSeconds + config.shutdownDrainSecs + config.shutdownGraceSecs (30)"),
    ([HA], ["autoscaling.minReplicas=9"], "autoscaling.minReplicas (9) is above autoscaling.maxReplicas (5)"),
    ([DEFAULT], ["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"], "blocks every node drain"),
    ([HA], ["autoscaling.targetCPUUtilizationPercentage=0", "autoscaling.targetMemoryUtilizationPercentage=0"], "needs a target"),
    ([DEFAULT], ["tls.enabled=true"], "tls.enabled needs tls.secretName"),
    ([DEFAULT], ["tls.clientCaSecret=ca"], "tls.clientCaSecret (mTLS) needs tls.enabled=true"),
    ([MTLS], ["tests.enabled=true"], "the `helm test` probe (batond probe) cannot present a client certificate"),
    ([MTLS], ["gateway.tlsClientSecret="], "set gateway.tlsClientSecret"),
    ([TLS], ["gateway.enabled=true", "gateway.tlsClientSecret=c"], "batond does not ask for client certificates"),
    ([DEFAULT], ["tls.admin=true"], "tls.admin serves the admin port with the gRPC port's certificate"),
    ([DEFAULT], [f"database.migrationUrl={OWNER_URL}", "database.migrationExistingSecretKey=k",
                 "database.existingSecret=s"], "give the owner URL for migrations one way"),
    ([EXISTING], ["database.migrationExistingSecretKey=", "database.migrationExistingSecret=o"],
     "database.migrationExistingSecret is set without database.migrationExistingSecretKey"),
    ([DEFAULT], ["database.migrationExistingSecretKey=k"], "there is no Secret to read it from"),
    ([EMBEDDED], [f"database.migrationUrl={OWNER_URL}"], "the embedded store has no roles"),
])
def test_fail_messages(files, sets, message):
    err = render_error(files, sets=sets)
    assert message in err, err


def test_notes_tell_how_to_reach_the_service():
    text = notes([HA])
    assert f"{FULL}.{NAMESPACE}.svc:50051" in text
    assert f"helm test {RELEASE}" in text
    assert f"http://{FULL}-mcp.{NAMESPACE}.svc:3000/mcp" in text
    # api-key (the default): how to create the first admin key and the probe's key.
    exec_ = f"kubectl -n {NAMESPACE} exec deploy/{FULL} -c batond -- batond keys create"
    assert f"{exec_} --tenant default --role admin" in text
    assert f"create secret generic {FULL}-probe-key" in text and "--tenant baton-probe --role writer" in text
    # HA serves as a role of its own and migrates as the owner: no warning about it.
    assert "Database roles" not in text
    assert "Database roles: batond serves as the role that runs the migrations" in notes([DEFAULT])
