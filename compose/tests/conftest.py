"""Shared helpers of the compose tests: the compose file, the Compose Specification's schema, and
what the repository says about the image and the binaries' settings."""

import functools
import hashlib
import importlib.metadata
import json
import pathlib
import re

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COLLECTOR_FILE = ROOT / "compose" / "otel-collector.yaml"
INIT_SCRIPT = ROOT / "compose" / "postgres-init.sh"
BATOND = "/usr/local/bin/batond"
BATON_MCP = "/usr/local/bin/baton-mcp"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def load_compose(text=None):
    return yaml.safe_load(COMPOSE_FILE.read_text() if text is None else text)


@functools.cache
def compose_schema():
    """The Compose Specification's JSON Schema as check-jsonschema vendors it, after checking the
    file against the sha256 check-jsonschema recorded for it."""
    dist = importlib.metadata.distribution("check-jsonschema")
    vendor = pathlib.Path(dist.locate_file("check_jsonschema/builtin_schemas/vendor"))
    raw = (vendor / "compose-spec.json").read_bytes()
    recorded = (vendor / "sha256" / "compose-spec.sha256").read_text().split()[0]
    if hashlib.sha256(raw).hexdigest() != recorded:
        pytest.fail("the vendored compose-spec.json does not match check-jsonschema's recorded sha256")
    return json.loads(raw)


def schema_errors(doc):
    """Every violation of the Compose Specification in `doc`, as 'path: message' lines."""
    validator = jsonschema.Draft202012Validator(compose_schema())
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc))


def workspace_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version = "([^"]+)"', section, re.M).group(1)


def image_entrypoint():
    """The Containerfile's ENTRYPOINT (the image's default program)."""
    m = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Containerfile").read_text(), re.M)
    return json.loads(m.group(1))


def program(service):
    """The program a service of the Baton image runs: its entrypoint, else the image's."""
    return (service.get("entrypoint") or image_entrypoint())[0]


def baton_services(doc):
    image = f"localhost/baton:{workspace_version()}"
    return {name: s for name, s in doc["services"].items() if s.get("image") == image}


def clap_env_names(crate_dir):
    """The environment variables a crate's clap configuration reads (`env = "NAME"`)."""
    names = set()
    for path in (ROOT / crate_dir / "src").rglob("*.rs"):
        names.update(re.findall(r'\benv = "([A-Z][A-Z0-9_]*)"', path.read_text()))
    return names


def readme_env_only_names():
    """The README's Configuration rows with an environment variable and no flag (RUST_LOG, the
    OTEL_* variables both binaries read)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in re.findall(r"^\| \| (.+?) \|", section, re.M):
        names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", row))
    return names


def env_names_read_by(prog):
    crate = {BATOND: "server", BATON_MCP: "gateway"}[prog]
    return clap_env_names(crate) | readme_env_only_names()


def duration_secs(value):
    """A Compose duration such as '15s', '1m30s' in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value}"
    return sum(float(n) * units[u] for n, u in parts)
