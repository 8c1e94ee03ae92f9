# shellcheck shell=bash
# Test part `buf`: `buf lint` over the workspace (buf.yaml) and `buf breaking` of baton.v1
# (the proto module) against the committed image of the last release,
# proto/breaking-baseline.binpb. Sourced by scripts/test; defines part_buf.
#
# At a release, after the protos changed compatibly, refresh the baseline and commit it:
#   bash scripts/parts/buf.sh refresh-baseline

BATON_BUF_SPEC=github.com/bufbuild/buf/cmd/buf@v1.75.0
BATON_BUF_BASELINE=proto/breaking-baseline.binpb

part_buf() {
  local buf rc
  buf=$(baton_go_tool buf "$BATON_BUF_SPEC") || { check_failed "buf install" $?; return 0; }
  "$buf" --version
  echo "[buf] lint"
  rc=0
  "$buf" lint || rc=$?
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "buf lint" "$rc"; fi
  echo "[buf] breaking proto --against $BATON_BUF_BASELINE"
  rc=0
  if [[ ! -f $BATON_BUF_BASELINE ]]; then
    echo "missing $BATON_BUF_BASELINE" >&2
    rc=1
  else
    "$buf" breaking proto --against "$BATON_BUF_BASELINE" || rc=$?
  fi
  if ((rc == 0)); then PASSED=$((PASSED + 1)); else FAILED_TESTS=$((FAILED_TESTS + 1)); check_failed "buf breaking" "$rc"; fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  # shellcheck source=scripts/lib/tools.sh
  source scripts/lib/tools.sh
  case ${1:-} in
    refresh-baseline)
      buf=$(baton_go_tool buf "$BATON_BUF_SPEC")
      "$buf" build proto --exclude-source-info -o "$BATON_BUF_BASELINE"
      echo "wrote $BATON_BUF_BASELINE: commit it with the release"
      ;;
    *) echo "usage: bash scripts/parts/buf.sh refresh-baseline" >&2; exit 2 ;;
  esac
fi
