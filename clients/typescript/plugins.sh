# shellcheck shell=bash
# Sourced by clients/generate (from the repository root): puts the pinned protoc-gen-es (a
# devDependency locked in package-lock.json) on PATH for buf's `local: protoc-gen-es` plugin.
# shellcheck source=clients/typescript/deps.sh
source clients/typescript/deps.sh
baton_ts_deps || return 1
export PATH="$BATON_TS_DEPS/node_modules/.bin:$PATH"
