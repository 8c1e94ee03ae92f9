# shellcheck shell=bash
# Test part `adapters-python`: the framework adapters of the Python client (baton.integrations:
# OpenAI Agents SDK, Google ADK, A2A). Builds the wheel, installs it with its extras
# ([openai-agents,adk,a2a]) into a venv pinned by clients/python/requirements-adapters.txt, lints
# and type-checks src/baton/integrations (ruff, mypy --strict) and runs tests/adapters against
# the locally built batond with each framework's real runner. Reuses the venv and wheel helpers of
# clients-python.sh. Sourced by scripts/test; defines part_adapters_python.

part_adapters_python() {
  local dir=clients/python root py venv dist whl rc work
  root=$PWD/$dir
  py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    check_failed "adapters-python (python3 missing)" 1
    return 0
  fi
  baton_build_bins || { check_failed "adapters-python (build batond)" $?; return 0; }
  venv=$(_baton_py_venv "$py" "$dir/requirements-adapters.txt" py-adapters) ||
    { check_failed "adapters-python (venv)" 1; return 0; }

  dist=$(mktemp -d)
  rc=0
  (cd "$dir" && "$venv/bin/hatchling" build -t wheel -d "$dist" >&2) || rc=$?
  whl=$(find "$dist" -name 'baton_client-*.whl' | head -n 1)
  if ((rc == 0)) && [[ -z $whl ]]; then rc=1; fi
  if ((rc != 0)); then
    check_failed "adapters-python (wheel build)" "$rc"
    rm -rf "$dist"
    return 0
  fi
  # The wheel itself, then the same wheel with its extras: pip resolves the extras' ranges against
  # the pinned frameworks already installed (nothing new may be needed, so nothing is fetched).
  if ! _baton_py_install_wheel "$venv" "$whl" ||
    ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$whl[openai-agents,adk,a2a]" >&2; then
    check_failed "adapters-python (wheel install with extras)" 1
    rm -rf "$dist"
    return 0
  fi
  rm -rf "$dist"

  echo "[adapters-python] ruff check" >&2
  rc=0
  (cd "$dir" && "$venv/bin/ruff" check --no-cache src/baton/integrations tests/adapters examples) || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "adapters-python ruff" "$rc"; fi

  echo "[adapters-python] mypy --strict (baton.integrations)" >&2
  rc=0
  (cd "$dir" && "$venv/bin/mypy" --cache-dir "$BATON_CACHE_DIR/mypy-cache-adapters" --strict \
    --python-version 3.10 src/baton/integrations) || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "adapters-python mypy" "$rc"; fi

  work=$(mktemp -d)
  rc=0
  echo "[adapters-python] pytest tests/adapters" >&2
  (cd "$work" && env -u DATABASE_URL -u REDIS_URL -u OPENAI_API_KEY -u GOOGLE_API_KEY BATOND_BIN="$BATOND_BIN" \
    OPENAI_AGENTS_DISABLE_TRACING=1 \
    "$venv/bin/python" -m pytest -p no:cacheprovider -c "$root/pyproject.toml" --rootdir "$root" \
      --timeout 300 -v "$root/tests/adapters") 2>&1 | tee "$work/pytest.log" || rc=$?
  count_pytest_results "$work/pytest.log"
  rm -rf "$work"
  if ((rc != 0)); then check_failed "adapters-python pytest" "$rc"; fi
}
