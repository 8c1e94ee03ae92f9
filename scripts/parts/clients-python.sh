# shellcheck shell=bash
# Test part `clients-python`: builds the wheel of clients/python (hatchling, pinned), installs it
# into a venv under ~/.cache/baton (pinned test requirements; rebuilt only when
# requirements-test.txt changes, the wheel reinstalled only when its hash changes), type-checks
# the wrapper with mypy --strict (and lints it with ruff), and runs the pytest suite from outside the source tree
# against the locally built batond. Sourced by scripts/test; defines part_clients_python.

part_clients_python() {
  local dir=clients/python root=$PWD py req_sum venv stamp whl whl_sum log rc tmp
  py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    echo "python3 not found: install Python 3.9 or newer" >&2
    check_failed "clients-python (python3 missing)" 1
    return 0
  fi
  baton_build_bins || { check_failed "clients-python (build batond)" $?; return 0; }

  req_sum=$(cat "$dir/requirements-test.txt" <("$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
  venv=$BATON_CACHE_DIR/py-client-test-$req_sum
  if [[ ! -f $venv/.requirements-installed ]]; then
    echo "[clients-python] creating $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements-test.txt" \
      && touch "$venv/.requirements-installed" \
      || { check_failed "clients-python (venv)" $?; return 0; }
  fi

  # Build the wheel (hatchling from the pinned venv; its builds are reproducible, so an
  # unchanged source gives the same hash) and install it when it changed.
  tmp=$(mktemp -d)
  rc=0
  (cd "$dir" && "$venv/bin/hatchling" build -t wheel -d "$tmp/dist" >&2) || rc=$?
  whl=$(ls "$tmp"/dist/baton_client-*.whl 2>/dev/null | head -n 1)
  if ((rc == 0)) && [[ -z $whl ]]; then rc=1; fi
  if ((rc != 0)); then
    check_failed "clients-python (wheel build)" "$rc"
    rm -rf "$tmp"
    return 0
  fi
  whl_sum=$(sha256sum "$whl" | cut -c1-64)
  stamp=$venv/.wheel-sha256
  if [[ ! -f $stamp || $(cat "$stamp") != "$whl_sum" ]]; then
    echo "[clients-python] installing $(basename "$whl")" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$whl" \
      && echo "$whl_sum" >"$stamp" \
      || { check_failed "clients-python (wheel install)" $?; rm -rf "$tmp"; return 0; }
  else
    echo "[clients-python] $(basename "$whl") unchanged (sha256 $whl_sum)" >&2
  fi

  echo "[clients-python] ruff check" >&2
  rc=0
  (cd "$dir" && "$venv/bin/ruff" check --no-cache .) || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "clients-python ruff" "$rc"; fi

  echo "[clients-python] mypy --strict" >&2
  rc=0
  (cd "$dir" && "$venv/bin/mypy" --cache-dir "$BATON_CACHE_DIR/mypy-cache") || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "clients-python mypy" "$rc"; fi

  # pytest runs from a directory outside the source tree, so `import baton` is the installed wheel.
  log=$tmp/pytest.log
  rc=0
  (cd "$tmp" && BATOND_BIN=$BATOND_BIN env -u DATABASE_URL -u REDIS_URL \
    "$venv/bin/python" -m pytest -p no:cacheprovider -c "$root/$dir/pyproject.toml" --rootdir "$root/$dir" \
      --timeout 180 -v "$root/$dir/tests") 2>&1 | tee "$log" || rc=$?
  count_pytest_results "$log"
  rm -rf "$tmp"
  if ((rc != 0)); then check_failed "clients-python pytest" "$rc"; fi
}
