# shellcheck shell=bash
# Installs the TypeScript client's pinned npm dependencies (package-lock.json, `npm ci`) into a
# cache outside the clone, keyed by the lock file's sha256, so a run with an unchanged lock file
# installs nothing. Sourced by plugins.sh and scripts/parts/clients-typescript.sh.
#
#   baton_ts_deps   installs when needed; sets BATON_TS_DEPS to the directory holding node_modules

baton_ts_deps() {
  local src=clients/typescript cache key dir tmp
  command -v node >/dev/null 2>&1 || { echo "node not found: install Node.js 18 or newer" >&2; return 1; }
  command -v npm >/dev/null 2>&1 || { echo "npm not found: install npm" >&2; return 1; }
  cache="${BATON_CACHE_DIR:-$HOME/.cache/baton}/typescript"
  key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16) || return 1
  dir="$cache/deps-$key"
  if [[ ! -f $dir/.installed ]]; then
    echo "[typescript] npm ci (pinned by clients/typescript/package-lock.json) into $dir" >&2
    tmp="$dir.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp" || return 1
    cp "$src/package.json" "$src/package-lock.json" "$tmp/" || return 1
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) || { rm -rf "$tmp"; return 1; }
    touch "$tmp/.installed"
    rm -rf "$dir" && mv "$tmp" "$dir" || return 1
  fi
  BATON_TS_DEPS=$dir
}
