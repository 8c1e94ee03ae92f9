# shellcheck shell=bash
# Test part `clients-drift`: regenerates every client's stubs with clients/generate into a
# temporary directory (pinned buf and plugins) and fails when the committed generated code
# differs: changed, missing, or stale extra files in the generated directories.
# Sourced by scripts/test; defines part_clients_drift.

part_clients_drift() {
  local rc=0
  bash clients/generate --check || rc=$?
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
  else
    FAILED_TESTS=$((FAILED_TESTS + 1))
    check_failed "clients drift (clients/generate --check)" "$rc"
  fi
}
