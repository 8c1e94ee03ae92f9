# shellcheck shell=bash
# Test part `mcp-packages`: baton-mcp as users install it without Rust (issue 20). Builds the
# PyPI wheel (maturin, pinned) and the npm packages (@baton/mcp and this machine's
# @baton/mcp-<os>-<cpu>) with packaging/build.py from the workspace, then runs
# packaging/tests/test_packages.py: each package installed from its file into a fresh venv / npm
# project, started as an MCP client starts it (`--embedded`) and driven with the official MCP SDK.
#
# The wheel is built with the dev profile (stripped), so a warm run relinks the debug binary
# instead of making a release build. The venv (SDK, pytest, maturin) lives under
# ~/.cache/baton, named after its requirements' hash; npm and pip caches are the shared ones.
# Sourced by scripts/test; defines part_mcp_packages.

# Debian's packages for what a fresh machine may lack: Node.js with npm, and python3's venv.
_mcp_packages_tools() {
  local missing=()
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  ((${#missing[@]})) || return 0
  echo "[mcp-packages] installing ${missing[*]}" >&2
  { baton_as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive baton_as_root apt-get install -y -qq "${missing[@]}"; } >&2
}

_mcp_packages_venv() {
  local req=packaging/tests/requirements.txt sum venv
  sum=$(cat "$req" gateway/tests/requirements.txt <(python3 -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
  venv=$BATON_CACHE_DIR/venv-packaging-$sum
  if [[ ! -f $venv/.requirements-installed ]]; then
    echo "[mcp-packages] creating $venv from $req" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 || return 1
    touch "$venv/.requirements-installed"
  fi
  printf '%s\n' "$venv"
}

part_mcp_packages() {
  local venv out built files wheel npm_packages log rc=0 start
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is needed to build and install the packages" >&2
    check_failed "mcp-packages (python3 missing)" 1
    return 0
  fi
  _mcp_packages_tools || { check_failed "mcp-packages (installing Node.js or python3-venv)" 1; return 0; }
  venv=$(_mcp_packages_venv) || { check_failed "mcp-packages (venv)" 1; return 0; }
  out=$BATON_CACHE_DIR/mcp-packages
  rm -rf "$out"
  start=$SECONDS
  built=$(MATURIN="$venv/bin/maturin" "$venv/bin/python" packaging/build.py --profile dev --out "$out") ||
    { check_failed "mcp-packages (build)" 1; return 0; }
  echo "[mcp-packages] built in $((SECONDS - start))s:" >&2
  mapfile -t files <<<"$built"
  ls -l "${files[@]}" >&2
  wheel=$(grep '\.whl$' <<<"$built")
  npm_packages=$(grep '\.tgz$' <<<"$built" | tr '\n' ' ')
  log=$(mktemp)
  (cd packaging/tests && env -u DATABASE_URL -u REDIS_URL BATON_WHEEL="$wheel" BATON_NPM_PACKAGES="$npm_packages" \
    "$venv/bin/python" -m pytest -p no:cacheprovider -v) 2>&1 | tee "$log" || rc=$?
  count_pytest_results "$log"
  rm -f "$log"
  if ((rc != 0)); then check_failed "mcp-packages pytest" "$rc"; fi
}
