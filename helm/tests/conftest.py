"""Shared helpers of the chart tests: render the chart with the pinned helm, pick objects.

HELM_BIN (set by scripts/parts/helm.sh) is the pinned helm; the chart is helm/baton.
"""

import os
import pathlib
import subprocess

import pytest
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "baton"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ["1.27.0", "1.33.0"]
KUBE_DEFAULT = "1.33.0"
RELEASE = "rel"
NAMESPACE = "baton"
PG_URL = "postgres://baton:secret@postgres.db.svc:5432/baton"


def helm_bin():
    helm = os.environ.get("HELM_BIN")
    if not helm or not os.access(helm, os.X_OK):
        pytest.fail("HELM_BIN must name the pinned helm binary (scripts/parts/helm.sh sets it)")
    return helm


def helm(*args, check=True):
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def render_cmd(values_files=(), sets=(), kube=KUBE_DEFAULT, show_only=None):
    cmd = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube]
    for f in values_files:
        cmd += ["-f", str(f)]
    for s in sets:
        cmd += ["--set", s]
    if show_only:
        cmd += ["--show-only", show_only]
    return cmd


def render(values_files=(), sets=(), kube=KUBE_DEFAULT):
    """Renders the chart; returns the list of objects (test hooks included)."""
    out = helm(*render_cmd(values_files, sets, kube)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_error(values_files=(), sets=(), kube=KUBE_DEFAULT):
    """Renders a chart that must fail; returns helm's error output."""
    proc = helm(*render_cmd(values_files, sets, kube), check=False)
    assert proc.returncode != 0, f"render succeeded but should have failed:\n{proc.stdout[:2000]}"
    return proc.stderr


def notes(values_files=(), sets=()):
    """The NOTES.txt text of `helm install --dry-run=client` with these values."""
    cmd = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    for f in values_files:
        cmd += ["-f", str(f)]
    for s in sets:
        cmd += ["--set", s]
    return helm(*cmd).stdout.split("NOTES:", 1)[1]


def by_kind(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def one(objects, kind, name=None):
    found = by_kind(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(obj, name=None):
    spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    cs = spec["containers"]
    if name is None:
        assert len(cs) == 1
        return cs[0]
    return next(c for c in cs if c["name"] == name)


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


@pytest.fixture(scope="session")
def ci_values():
    assert CI_VALUES, "helm/baton/ci/*.yaml is empty"
    return CI_VALUES
