# shellcheck shell=bash
# Tool helpers shared by the test parts: pinned Go tools installed by version into a cache
# outside the clone, and the debug builds of batond and baton-mcp that client, gateway and
# chart tests start. Sourced; defines functions only.
#
#   baton_go_tool NAME MODULE@VERSION   installs (once) and prints the path of a pinned Go tool
#   baton_build_bins                    builds batond + baton-mcp, exports BATOND_BIN, BATON_MCP_BIN

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
: "${BATON_CACHE_DIR:=$HOME/.cache/baton}"
: "${CARGO_TARGET_DIR:=$BATON_CACHE_DIR/target}"
export CARGO_TARGET_DIR
export GOPATH="${GOPATH:-$HOME/.cache/go}"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/go/mod}"
export GOCACHE="${GOCACHE:-$HOME/.cache/go/build}"
export npm_config_cache="${npm_config_cache:-$HOME/.cache/npm}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"

# Each tool goes to its own directory named after its version, so bumping a pin installs anew.
baton_go_tool() {
  local name=$1 spec=$2 dir
  dir="$BATON_CACHE_DIR/go-tools/${spec//[\/@]/_}"
  if [[ ! -x $dir/$name ]]; then
    command -v go >/dev/null 2>&1 || { echo "go not found: install Go 1.22 or newer" >&2; return 1; }
    echo "[tools] go install $spec" >&2
    mkdir -p "$dir"
    GOBIN="$dir" GOFLAGS=-mod=mod go install "$spec" >&2 || return 1
  fi
  printf '%s\n' "$dir/$name"
}

baton_build_bins() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  local locked=()
  [[ -f Cargo.lock ]] && locked=(--locked)
  echo "[tools] building batond and baton-mcp (target dir $CARGO_TARGET_DIR)" >&2
  cargo build "${locked[@]}" -p baton-server --bin batond -p baton-gateway --bin baton-mcp >&2 || return 1
  export BATOND_BIN="$CARGO_TARGET_DIR/debug/batond"
  export BATON_MCP_BIN="$CARGO_TARGET_DIR/debug/baton-mcp"
}
