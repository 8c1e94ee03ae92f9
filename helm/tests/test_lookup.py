"""The generated key pepper survives upgrades and reinstalls: the chart reads it back with
`lookup` instead of drawing a new one (a new pepper would invalidate every API key).

`lookup` needs a Kubernetes API server, and none can run here (no cluster, no kube-apiserver
binary). So this test stands up the smallest stand-in that answers what `helm template
--dry-run=server` asks of one: version and discovery for the kinds the chart renders, GETs of
named objects (404 unless the test put a Secret there). It is a stand-in for the API server
only: the chart, helm and its lookup are the real ones. What a real API server adds (RBAC on the
lookup, server-side validation) stays unchecked, as the chart README says.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, by_kind, helm, one

FULL = f"{RELEASE}-baton"
PEPPER_SECRET = f"{FULL}-key-pepper"
DEFAULT = CHART / "ci" / "default-values.yaml"

# Discovery: the kinds the chart renders with default-values.yaml.
RESOURCES = {
    "/api/v1": [("secrets", "Secret"), ("services", "Service"), ("serviceaccounts", "ServiceAccount"),
                ("pods", "Pod")],
    "/apis/apps/v1": [("deployments", "Deployment")],
    "/apis/batch/v1": [("jobs", "Job")],
}


class FakeApiServer:
    """Answers discovery and GETs of the objects in `objects` ({path: object}); records paths."""

    def __init__(self):
        self.objects = {}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                outer.requests.append(path)
                code, body = 200, None
                if path == "/version":
                    body = {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
                elif path == "/api":
                    body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
                elif path == "/apis":
                    body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                         "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in ("apps", "batch")]}
                elif path in RESOURCES:
                    group_version = path.split("/", 2)[2]
                    body = {"kind": "APIResourceList", "groupVersion": group_version, "resources": [
                        {"name": n, "singularName": n[:-1], "namespaced": True, "kind": k, "verbs": ["get", "list"]}
                        for n, k in RESOURCES[path]]}
                elif path in outer.objects:
                    body = outer.objects[path]
                else:
                    code, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": "NotFound", "code": 404, "message": f"{path} not found"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def put_secret(self, name, data):
        """A Secret as an earlier `helm install` of the release left it (Helm's ownership marks)."""
        self.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}"] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": RELEASE,
                                         "meta.helm.sh/release-namespace": NAMESPACE}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.fixture
def api(tmp_path, monkeypatch):
    server = FakeApiServer()
    server.thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield server
    server.server.shutdown()
    server.server.server_close()


def render_against(api, *sets):
    """`helm template --dry-run=server`: rendered as `helm install` would, lookups answered by api."""
    cmd = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(DEFAULT), "--dry-run=server",
           "--disable-openapi-validation"]
    for s in sets:
        cmd += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*cmd).stdout) if d]


def pepper(objects):
    return base64.b64decode(one(objects, "Secret", PEPPER_SECRET)["data"]["BATON_KEY_PEPPER"]).decode()


def test_an_existing_pepper_is_read_back(api):
    api.put_secret(PEPPER_SECRET, {"BATON_KEY_PEPPER": "the-pepper-of-the-first-install"})
    objects = render_against(api)
    assert pepper(objects) == "the-pepper-of-the-first-install"
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{PEPPER_SECRET}" in api.requests
    # The same on every render: nothing rolls, no key is invalidated.
    assert pepper(render_against(api)) == "the-pepper-of-the-first-install"


def test_without_one_a_new_pepper_is_generated(api):
    first = pepper(render_against(api))
    assert len(first) == 64 and first.isalnum()
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{PEPPER_SECRET}" in api.requests
    assert pepper(render_against(api)) != first  # nothing stored it: each first install draws anew


def test_an_empty_secret_gets_a_pepper(api):
    """A Secret of that name without the key (edited by hand) gets a fresh pepper, not an empty one."""
    api.put_secret(PEPPER_SECRET, {"other": "x"})
    assert len(pepper(render_against(api))) == 64


def test_a_pepper_of_your_own_is_not_looked_up(api):
    objects = render_against(api, "auth.keyPepper.existingSecret=baton-auth")
    assert not by_kind(objects, "Secret", PEPPER_SECRET)
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{PEPPER_SECRET}" not in api.requests
