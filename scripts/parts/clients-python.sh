# shellcheck shell=bash
# Test part `clients-python`: builds the wheel of clients/python (hatchling, pinned), lints and
# type-checks the wrapper (ruff, mypy --strict), and runs the pytest suite against the locally
# built batond twice: with the newest pinned runtime (requirements-test.txt) and with the oldest
# one the package supports (requirements-test-oldest.txt). Each runs in a venv under
# ~/.cache/baton named after its requirements' hash (created once), where the built wheel is
# installed (again only when its sha256 changed), and from a directory outside the source tree,
# so `import baton` is the installed wheel. Sourced by scripts/test; defines part_clients_python.

# Prints the path of the venv for a requirements file, creating it when missing.
_baton_py_venv() {
  local py=$1 req=$2 name=$3 sum venv
  sum=$(cat "$req" <("$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
  venv=$BATON_CACHE_DIR/$name-$sum
  if [[ ! -f $venv/.requirements-installed ]]; then
    echo "[clients-python] creating $venv from $req" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary grpcio -r "$req" >&2 || return 1
    touch "$venv/.requirements-installed"
  fi
  printf '%s\n' "$venv"
}

# Installs the wheel into the venv unless the same wheel (by sha256) is installed already.
_baton_py_install_wheel() {
  local venv=$1 whl=$2 sum
  sum=$(sha256sum "$whl" | cut -c1-64)
  if [[ -f $venv/.wheel-sha256 && $(cat "$venv/.wheel-sha256") == "$sum" ]]; then
    echo "[clients-python] $(basename "$whl") unchanged in $(basename "$venv")" >&2
    return 0
  fi
  echo "[clients-python] installing $(basename "$whl") into $(basename "$venv")" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$whl" >&2 || return 1
  echo "$sum" >"$venv/.wheel-sha256"
}

# Runs the pytest suite with the venv's interpreter from an empty directory; adds the counts.
_baton_py_pytest() {
  local venv=$1 label=$2 root=$3 rc=0 work
  work=$(mktemp -d)
  echo "[clients-python] pytest ($label runtime)" >&2
  (cd "$work" && env -u DATABASE_URL -u REDIS_URL BATOND_BIN="$BATOND_BIN" \
    "$venv/bin/python" -m pytest -p no:cacheprovider -c "$root/pyproject.toml" --rootdir "$root" \
      --timeout 180 -v --ignore "$root/tests/adapters" "$root/tests") 2>&1 | tee "$work/pytest.log" || rc=$?
  count_pytest_results "$work/pytest.log"
  rm -rf "$work"
  if ((rc != 0)); then check_failed "clients-python pytest ($label runtime)" "$rc"; fi
}

part_clients_python() {
  local dir=clients/python root py venv old dist whl rc
  root=$PWD/$dir
  py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    echo "python3 not found: install Python 3.9 or newer" >&2
    check_failed "clients-python (python3 missing)" 1
    return 0
  fi
  baton_build_bins || { check_failed "clients-python (build batond)" $?; return 0; }
  venv=$(_baton_py_venv "$py" "$dir/requirements-test.txt" py-client-test) ||
    { check_failed "clients-python (venv)" 1; return 0; }
  old=$(_baton_py_venv "$py" "$dir/requirements-test-oldest.txt" py-client-oldest) ||
    { check_failed "clients-python (oldest-runtime venv)" 1; return 0; }

  # hatchling's builds are reproducible: an unchanged source gives the same wheel and hash.
  dist=$(mktemp -d)
  rc=0
  (cd "$dir" && "$venv/bin/hatchling" build -t wheel -d "$dist" >&2) || rc=$?
  whl=$(find "$dist" -name 'baton_client-*.whl' | head -n 1)
  if ((rc == 0)) && [[ -z $whl ]]; then rc=1; fi
  if ((rc != 0)); then
    check_failed "clients-python (wheel build)" "$rc"
    rm -rf "$dist"
    return 0
  fi
  if ! { _baton_py_install_wheel "$venv" "$whl" && _baton_py_install_wheel "$old" "$whl"; }; then
    check_failed "clients-python (wheel install)" 1
    rm -rf "$dist"
    return 0
  fi
  rm -rf "$dist"

  echo "[clients-python] ruff check" >&2
  rc=0
  (cd "$dir" && "$venv/bin/ruff" check --no-cache .) || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "clients-python ruff" "$rc"; fi

  echo "[clients-python] mypy --strict" >&2
  rc=0
  (cd "$dir" && "$venv/bin/mypy" --cache-dir "$BATON_CACHE_DIR/mypy-cache") || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "clients-python mypy" "$rc"; fi

  _baton_py_pytest "$venv" newest "$root"
  _baton_py_pytest "$old" oldest "$root"
}
