"""helm lint --strict and helm template for every ci/*.yaml, and every rendered object validated
offline: Kubernetes objects against the OpenAPI schemas of the pinned Kubernetes versions
(kubernetes-validate, strict: unknown fields fail), ServiceMonitors against the
prometheus-operator CRD schema (validators generated from it, @kubernetes-models/prometheus-operator).
"""

import json
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest

from conftest import CHART, CI_VALUES, KUBE_VERSIONS, helm, render

CI_IDS = [p.name for p in CI_VALUES]


def test_ci_values_cover_the_required_shapes():
    names = {p.stem for p in CI_VALUES}
    assert {"default-values", "ha-values", "existing-secret-values", "hooks-off-values", "tls-values",
            "mtls-values"} <= names


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_lint_strict(values, kube):
    proc = helm("lint", "--strict", str(CHART), "-f", str(values), "--kube-version", kube, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def validate_k8s(objects, kube):
    errors, checked = [], 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{obj['kind']} {obj['metadata']['name']}: no schema for {obj['apiVersion']} in {kube}: {e}")
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            errors.append(f"{obj['kind']} {obj['metadata']['name']} at {path}: {e.message}")
    return checked, errors


def validate_servicemonitors(objects, tmp_path):
    sms = [o for o in objects if o["kind"] == "ServiceMonitor"]
    if not sms:
        return None
    validator = os.environ.get("SERVICEMONITOR_VALIDATOR")
    if not validator or not pathlib.Path(validator, "validate.mjs").exists():
        pytest.fail("SERVICEMONITOR_VALIDATOR must name the installed helm/tests/servicemonitor copy")
    data = tmp_path / "servicemonitors.json"
    data.write_text(json.dumps(sms))
    return subprocess.run(["node", "validate.mjs", str(data)], cwd=validator, capture_output=True, text=True)


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rendered_objects_are_valid(values, kube, tmp_path):
    objects = render([values], kube=kube)
    assert objects, "nothing rendered"
    checked, errors = validate_k8s(objects, kube)
    assert not errors, "\n".join(errors)
    assert checked >= 4  # at least ServiceAccount, Service, Deployment, test Pod
    proc = validate_servicemonitors(objects, tmp_path)
    if proc is not None:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "valid ServiceMonitor" in proc.stdout


def test_validators_reject_bad_objects(tmp_path):
    """The offline validation can fail: an unknown field, a wrong type, a bad ServiceMonitor."""
    objects = render([CHART / "ci" / "ha-values.yaml"])
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["startupprobe"] = {}
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    _, errors = validate_k8s([typo, wrong_type, deployment], "1.33.0")
    assert len(errors) == 2, errors
    assert "startupprobe" in errors[0] and "replicas" in errors[1]
    sm = next(o for o in objects if o["kind"] == "ServiceMonitor")
    sm["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    proc = validate_servicemonitors([sm], tmp_path)
    assert proc.returncode == 1 and "interval" in proc.stdout


def test_native_sleep_only_where_the_api_has_it():
    """The preStop sleep action exists from Kubernetes 1.30; 1.27's schema rejects it."""
    new = render([CHART / "ci" / "default-values.yaml"], kube="1.33.0")
    _, errors = validate_k8s([o for o in new if o["kind"] == "Deployment"], "1.27.0")
    assert errors and "sleep" in errors[0]
