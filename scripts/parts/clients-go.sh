# shellcheck shell=bash
# Part "clients-go": the Go client in clients/go. go vet and staticcheck (pinned) over the
# module, then `go test -v ./...` against the locally built batond (BATOND_BIN; the tests fail,
# never skip, without it). Go's caches live under ~/.cache/go (scripts/lib/tools.sh).

BATON_STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Adds up `go test -v` result lines (--- PASS / --- FAIL / --- SKIP, subtests included).
count_go_test_results() {
  local log=$1 p f s
  p=$(grep -cE '^[[:space:]]*--- PASS: ' "$log" || true)
  f=$(grep -cE '^[[:space:]]*--- FAIL: ' "$log" || true)
  s=$(grep -cE '^[[:space:]]*--- SKIP: ' "$log" || true)
  PASSED=$((PASSED + p)) FAILED_TESTS=$((FAILED_TESTS + f)) SKIPPED=$((SKIPPED + s))
}

part_clients_go() {
  local rc=0 log staticcheck
  if ! command -v go >/dev/null 2>&1; then
    echo "go not found: install Go 1.23 or newer"
    check_failed "clients-go: go missing" 1
    return 0
  fi
  go version
  if ! baton_build_bins; then
    check_failed "clients-go: building batond" 1
    return 0
  fi
  if ! staticcheck=$(baton_go_tool staticcheck "$BATON_STATICCHECK"); then
    check_failed "clients-go: installing staticcheck" 1
    return 0
  fi
  (cd clients/go && go mod download && go mod verify) || { check_failed "clients-go: go mod download/verify" $?; return 0; }
  (cd clients/go && go vet ./...) || check_failed "clients-go: go vet" $?
  (cd clients/go && "$staticcheck" ./...) || check_failed "clients-go: staticcheck" $?
  log=$(mktemp)
  (cd clients/go && BATOND_BIN="$BATOND_BIN" go test -count=1 -timeout 15m -v ./... 2>&1) | tee "$log" || rc=$?
  count_go_test_results "$log"
  if ! grep -qE '^[[:space:]]*--- PASS: ' "$log"; then
    echo "clients-go: go test ran no test"
    ((rc != 0)) || rc=1
  fi
  rm -f "$log"
  if ((rc != 0)); then check_failed "clients-go: go test" "$rc"; fi
}
