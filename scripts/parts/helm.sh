# shellcheck shell=bash
# Part "helm": the chart helm/baton. helm lint --strict and helm template for every
# helm/baton/ci/*.yaml, offline validation of every rendered object (kubernetes-validate for
# Kubernetes 1.27 and 1.33; ServiceMonitors against the prometheus-operator CRD schema through
# @kubernetes-models/prometheus-operator), template unit tests, the key pepper's `lookup`
# against a stand-in API server, and the pod-spec smoke test (helm/tests/, pytest) against the
# PostgreSQL (owner and serving roles) and Redis that scripts/test starts; openssl makes the TLS
# test's certificates.
#
# Pins: helm (Go module, below), helm/tests/requirements.txt (PyPI, venv under
# ~/.cache/baton/venv-helm), helm/tests/servicemonitor/package-lock.json (npm, installed under
# ~/.cache/baton/helm-servicemonitor). Each is reinstalled only when its pin changes.

BATON_HELM_MODULE="helm.sh/helm/v4/cmd/helm@v4.3.2"

# Creates or refreshes a directory from pinned inputs when their sha256 changed: DIR STAMP_INPUTS... -- CMD...
baton_helm_stamped() {
  local dir=$1 stamp want
  shift
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  want=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
  stamp="$dir/.baton-stamp"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  "$@" || return 1
  printf '%s\n' "$want" >"$stamp"
}

baton_helm_venv() {
  local venv=$1
  # The interpreter's version is part of the stamp: a new Python gets a new venv.
  python3 --version >"$BATON_CACHE_DIR/.helm-python-version"
  baton_helm_stamped "$venv" helm/tests/requirements.txt "$BATON_CACHE_DIR/.helm-python-version" -- \
    bash -c 'python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check -r helm/tests/requirements.txt' _ "$venv"
}

baton_helm_servicemonitor() {
  local dir=$1
  baton_helm_stamped "$dir" helm/tests/servicemonitor/package.json helm/tests/servicemonitor/package-lock.json -- \
    bash -c 'cp helm/tests/servicemonitor/package.json helm/tests/servicemonitor/package-lock.json "$1"/ &&
      cd "$1" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error' _ "$dir"
  # The script itself is not pinned input: always the working tree's.
  cp helm/tests/servicemonitor/validate.mjs "$dir/"
}

part_helm() {
  local helm_bin venv="$BATON_CACHE_DIR/venv-helm" smdir="$BATON_CACHE_DIR/helm-servicemonitor" log rc=0 tool
  for tool in python3 node npm psql openssl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "helm: $tool not found"; check_failed "helm: $tool missing" 1; return 0; }
  done
  helm_bin=$(baton_go_tool helm "$BATON_HELM_MODULE") || { check_failed "helm: go install $BATON_HELM_MODULE" 1; return 0; }
  "$helm_bin" version
  baton_helm_venv "$venv" || { check_failed "helm: Python test environment" 1; return 0; }
  baton_helm_servicemonitor "$smdir" || { check_failed "helm: ServiceMonitor validator (npm ci)" 1; return 0; }
  baton_build_bins || { check_failed "helm: building batond and baton-mcp" 1; return 0; }

  log=$(mktemp)
  HELM_BIN="$helm_bin" SERVICEMONITOR_VALIDATOR="$smdir" \
    "$venv/bin/python" -m pytest helm/tests -p no:cacheprovider -v -rfE 2>&1 | tee "$log" || rc=$?
  count_pytest_results "$log"
  rm -f "$log"
  if ((rc != 0)); then check_failed "helm chart tests" "$rc"; fi
}
