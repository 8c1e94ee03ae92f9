"""docker-compose.yml checked without a container engine: against the Compose Specification's
JSON Schema (and broken copies against it, so the check is seen to fail), then what the schema
cannot know: the settings the binaries read, loopback-only ports, start-up order, the URLs that
tie the services together, and the collector's pipeline."""

import copy
import re
import urllib.parse

import pytest
import yaml

from conftest import (
    BATON_MCP,
    BATOND,
    COLLECTOR_FILE,
    COMPOSE_FILE,
    CONDITIONS,
    INIT_SCRIPT,
    ROOT,
    baton_services,
    compose_schema,
    env_names_read_by,
    image_entrypoint,
    load_compose,
    program,
    schema_errors,
    workspace_version,
)


def test_the_schema_is_the_compose_specification():
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # Strict: unknown top-level keys and unknown service keys are errors, not ignored.
    assert schema["additionalProperties"] is False
    assert "services" in schema["properties"]


def test_the_compose_file_follows_the_specification():
    assert schema_errors(load_compose()) == []


def _drop(path):
    def mutate(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


def _set(path, value):
    def mutate(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value

    return mutate


BROKEN = {
    "unknown top-level key": _set(["servicez"], {}),
    "misspelt service key": _set(["services", "batond", "healtcheck"], {"test": ["CMD", "true"]}),
    "unknown depends_on condition": _set(["services", "batond", "depends_on", "postgres", "condition"], "service_ready"),
    "depends_on entry without condition": _set(["services", "batond", "depends_on", "redis"], {"required": "yes"}),
    "healthcheck retries as a list": _set(["services", "postgres", "healthcheck", "retries"], [3]),
    "environment as a number": _set(["services", "batond", "environment"], 5),
    "ports as a mapping": _set(["services", "batond", "ports"], {"grpc": "127.0.0.1:50051:50051"}),
    "build without context or dockerfile keys": _set(["services", "batond", "build"], {"contex": "."}),
    "volume of an unknown type": _set(["services", "postgres", "volumes", 0], {"type": "tape", "source": "x", "target": "/y"}),
    "services as a list": _set(["services"], ["batond"]),
    "service without anything": _set(["services", "jaeger"], "jaeger"),
    "read_only as a list": _set(["services", "batond", "read_only"], ["yes"]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_copies_fail_the_schema(name):
    doc = copy.deepcopy(load_compose())
    BROKEN[name](doc)
    assert schema_errors(doc), f"the schema accepted a compose file with {name}"


def test_a_broken_file_fails_as_text_too():
    """The same check on the file's text with one word changed, as a person would break it."""
    text = COMPOSE_FILE.read_text()
    assert "condition: service_completed_successfully" in text
    broken = text.replace("condition: service_completed_successfully", "condition: service_completed", 1)
    errors = schema_errors(load_compose(broken))
    assert any(e.startswith("services/batond/depends_on") for e in errors), errors


def test_published_ports_bind_loopback_only():
    published = 0
    for name, service in load_compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/tcp)?", str(port)), f"{name}: {port} is not 127.0.0.1:HOST:CONTAINER"
            published += 1
    assert published >= 5


def test_environment_names_are_ones_the_programs_read():
    doc = load_compose()
    services = baton_services(doc)
    assert set(services) == {"baton-migrate", "batond", "baton-mcp"}
    for name, service in services.items():
        read = env_names_read_by(program(service))
        unknown = set(service.get("environment", {})) - read
        assert not unknown, f"{name} ({program(service)}) sets {sorted(unknown)}, which it does not read"
    # The postgres service's own variables are the image's and the ones the init script reads.
    script = INIT_SCRIPT.read_text()
    for key in doc["services"]["postgres"]["environment"]:
        assert key.startswith("POSTGRES_") or f"${{{key}" in script, f"postgres: nothing reads {key}"


def test_every_dependency_has_a_condition_the_target_can_meet():
    services = load_compose()["services"]
    for name, service in services.items():
        for target, dep in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            assert isinstance(dep, dict) and dep.get("condition") in CONDITIONS, f"{name} -> {target}: {dep}"
            t = services[target]
            if dep["condition"] == "service_healthy":
                assert t.get("healthcheck", {}).get("test"), f"{name} waits for {target} to be healthy; it has no healthcheck"
                assert not t["healthcheck"].get("disable")
            if dep["condition"] == "service_completed_successfully":
                assert t.get("restart") == "no", f"{target} must run once for {name} to wait for its completion"


def test_start_up_order():
    services = load_compose()["services"]

    def cond(a, b):
        return services[a].get("depends_on", {}).get(b, {}).get("condition")

    assert cond("baton-migrate", "postgres") == "service_healthy"
    assert cond("batond", "postgres") == "service_healthy"
    assert cond("batond", "redis") == "service_healthy"
    assert cond("batond", "baton-migrate") == "service_completed_successfully"
    assert cond("baton-mcp", "batond") == "service_healthy"
    # No cycles: every service can be started once its dependencies are.
    started, pending = set(), set(services)
    while pending:
        ready = {s for s in pending if set(services[s].get("depends_on", {})) <= started}
        assert ready, f"depends_on cycle among {sorted(pending)}"
        started |= ready
        pending -= ready


def test_the_baton_services_use_the_containerfile_image():
    doc = load_compose()
    assert image_entrypoint() == [BATOND]
    for name, service in baton_services(doc).items():
        assert service["image"] == f"localhost/baton:{workspace_version()}", name
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == ROOT / "Containerfile", name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert program(service) in (BATOND, BATON_MCP), name
    # The image holds baton-mcp beside batond (scripts/image builds the root filesystem).
    assert "/usr/local/bin" in (ROOT / "scripts" / "image").read_text()
    assert "--bin baton-mcp" in (ROOT / "Containerfile").read_text()
    assert doc["services"]["baton-migrate"]["command"] == ["migrate"]
    assert doc["services"]["batond"]["command"] == ["serve"]
    assert program(doc["services"]["baton-mcp"]) == BATON_MCP


def test_mounted_files_exist():
    mounts = 0
    for name, service in load_compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which does not exist"
                mounts += 1
    assert mounts == 2


def _port(addr):
    return int(addr.rsplit(":", 1)[1])


def test_urls_name_services_and_the_ports_they_listen_on():
    services = load_compose()["services"]
    pg = services["postgres"]["environment"]
    batond = services["batond"]["environment"]
    mcp = services["baton-mcp"]["environment"]

    migrate_db = urllib.parse.urlsplit(services["baton-migrate"]["environment"]["DATABASE_URL"])
    serve_db = urllib.parse.urlsplit(batond["DATABASE_URL"])
    for url in (migrate_db, serve_db):
        assert (url.scheme, url.hostname, url.port, url.path) == ("postgres", "postgres", 5432, f"/{pg['POSTGRES_DB']}")
    # Migrations run as the owner; batond serves as the role compose/postgres-init.sh creates.
    assert (migrate_db.username, migrate_db.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert (serve_db.username, serve_db.password) == (pg["BATON_SERVER_ROLE"], pg["BATON_SERVER_PASSWORD"])
    assert serve_db.username != pg["POSTGRES_USER"]
    assert batond["BATON_MIGRATE"] == "false"

    assert urllib.parse.urlsplit(batond["REDIS_URL"])[:2] == ("redis", "redis:6379")
    grpc, admin = _port(batond["BATON_GRPC_ADDR"]), _port(batond["BATON_ADMIN_ADDR"])
    assert services["batond"]["ports"] == [f"127.0.0.1:{grpc}:{grpc}", f"127.0.0.1:{admin}:{admin}"]
    assert mcp["BATON_ENDPOINT"] == f"http://batond:{grpc}"
    http = _port(mcp["BATON_MCP_HTTP_ADDR"])
    assert services["baton-mcp"]["ports"] == [f"127.0.0.1:{http}:{http}"]
    assert mcp["BATON_MCP_TRANSPORT"] == "http"
    # The healthcheck probes the port batond serves on, inside its own container.
    test = services["batond"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", BATOND, "probe"]
    assert test[test.index("--endpoint") + 1] == f"http://127.0.0.1:{grpc}"

    collector = yaml.safe_load(COLLECTOR_FILE.read_text())
    otlp_grpc = _port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    for name in ("batond", "baton-mcp"):
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{otlp_grpc}", name
        assert env["OTEL_SERVICE_NAME"] == name
        assert services[name]["depends_on"]["otel-collector"]["condition"] == "service_started"
    assert f"127.0.0.1:{otlp_grpc}:{otlp_grpc}" in services["otel-collector"]["ports"]


def test_the_collector_sends_every_trace_to_jaeger():
    services = load_compose()["services"]
    config = yaml.safe_load(COLLECTOR_FILE.read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], f"the pipeline names {kind[:-1]} {component}, which is not defined"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    # The collector reads the mounted file, not its image's default configuration.
    mount = next(v for v in services["otel-collector"]["volumes"] if v.startswith("./compose/otel-collector.yaml:"))
    target = mount.split(":")[1]
    assert services["otel-collector"]["command"] == [f"--config={target}"]
