# shellcheck shell=bash
# Test part `clients-typescript`: the TypeScript client @baton/client (clients/typescript).
#
#   1. npm ci of the pinned dependencies (package-lock.json) into a cache keyed by the lock file;
#   2. tsc build and `npm pack` from a copy of the sources (nothing is written into the clone);
#   3. the tarball installed into a temporary consumer project under ~/.cache/baton/typescript
#      (reused while the tarball's sha256 is unchanged);
#   4. the tests and examples compiled there against the installed package, and run with
#      node's test runner against the locally built batond (embedded store, loopback ports), on
#      the machine's Node.js and on Node.js 18 and 22 (npm's node-linux-<arch> packages). The
#      OpenAI Agents SDK adapter's test (test/openai-agents.test.ts) runs only on Node.js 22 and
#      newer: @openai/agents-core depends on openai 7, whose engines field requires Node.js 22.
#
# Test counts come from node's TAP summary (# pass / # fail / # cancelled / # skipped).

_ts_fail() {
  echo "clients-typescript: $*" >&2
  return 1
}

_ts_node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'
}

# `npm install ./clients/typescript`, as the README tells users, on a copy of the folder: npm's
# prepare step must install the build tools and compile dist/, and the package must import.
_ts_folder_install_check() {
  local src=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir/app" || return 1
  (cd "$src" && tar --exclude=./node_modules --exclude=./dist -cf - .) | (mkdir -p "$dir/typescript" && cd "$dir/typescript" && tar -xf -) || return 1
  printf '{ "name": "folder-install-check", "private": true, "type": "module" }\n' >"$dir/app/package.json"
  (cd "$dir/app" && npm install --no-audit --no-fund --loglevel=error ../typescript) || return 1
  (cd "$dir/app" && node --input-type=module -e '
    const { BatonClient, BatonError } = await import("@baton/client");
    const { EntryKind } = await import("@baton/client/v1");
    if (typeof BatonClient !== "function" || typeof BatonError !== "function" || EntryKind.MESSAGE !== 1) process.exit(1);
    console.log("npm install ./clients/typescript: @baton/client imports");
  ') || return 1
  rm -rf "$dir"
}

_ts_run() {
  local src=clients/typescript cache build packs tarball sum consumer rc=0
  if ! _ts_node_ok; then
    echo "[typescript] Node.js >= 18 with npm not found: installing Debian's nodejs and npm"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } ||
      _ts_fail "could not install Node.js" || return 1
    _ts_node_ok || _ts_fail "Node.js >= 18 with npm is required" || return 1
  fi
  if ! command -v openssl >/dev/null 2>&1; then # the TLS tests make a self-signed certificate
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } ||
      _ts_fail "could not install openssl" || return 1
  fi
  echo "node $(node --version), npm $(npm --version)"
  baton_build_bins || _ts_fail "building batond failed" || return 1
  [[ -x ${BATOND_BIN:-} ]] || _ts_fail "BATOND_BIN ($BATOND_BIN) is not executable" || return 1

  # shellcheck source=clients/typescript/deps.sh
  source "$src/deps.sh"
  baton_ts_deps || _ts_fail "npm ci failed" || return 1

  cache="${BATON_CACHE_DIR:-$HOME/.cache/baton}/typescript"
  build="$cache/build"
  packs="$cache/packs"
  rm -rf "$build" "$packs" && mkdir -p "$build" "$packs" || return 1
  cp -r "$src/package.json" "$src/package-lock.json" "$src/tsconfig.json" "$src/README.md" "$src/src" "$build/" || return 1
  ln -s "$BATON_TS_DEPS/node_modules" "$build/node_modules" || return 1
  echo "[typescript] tsc build"
  (cd "$build" && ./node_modules/.bin/tsc -p tsconfig.json) || _ts_fail "tsc build failed" || return 1
  echo "[typescript] npm pack"
  (cd "$build" && npm pack --ignore-scripts --silent --pack-destination "$packs" >/dev/null) || _ts_fail "npm pack failed" || return 1
  tarball=$(ls "$packs"/*.tgz) && [[ -f $tarball ]] || _ts_fail "npm pack made no tarball" || return 1
  local files
  files=$(tar -tzf "$tarball") || _ts_fail "cannot read $tarball" || return 1
  echo "tarball: $tarball ($(wc -l <<<"$files") files)"
  for f in package/dist/index.d.ts package/dist/v1.js package/dist/rpc.js package/dist/openai-agents.js package/README.md; do
    grep -qx "$f" <<<"$files" || _ts_fail "the tarball has no $f" || return 1
  done

  # The consumer's pins come from the tarball's package.json and from package-lock.json.
  sum=$(cat "$tarball" "$src/package-lock.json" | sha256sum | cut -c1-16)
  consumer="$cache/consumer-$sum"
  if [[ ! -f $consumer/.installed ]]; then
    echo "[typescript] installing the tarball into a fresh consumer project $consumer"
    find "$cache" -maxdepth 1 -name 'consumer-*' -exec rm -rf {} + 2>/dev/null
    mkdir -p "$consumer" && cp "$tarball" "$consumer/baton-client.tgz" || return 1
    # The consumer's own tools and the Agents SDK, at the versions clients/typescript/package.json
    # pins; the SDK's openai dependency at the version package-lock.json resolved.
    node -e '
      const pkg = require(process.argv[1]);
      const lock = require(process.argv[2]);
      const pin = (n) => pkg.devDependencies[n] ?? pkg.dependencies[n];
      const out = {
        name: "baton-client-consumer", private: true, type: "module",
        dependencies: { "@baton/client": "file:./baton-client.tgz", "@bufbuild/protobuf": pin("@bufbuild/protobuf") },
        devDependencies: {
          typescript: pin("typescript"), "@types/node": pin("@types/node"), "@opentelemetry/api": pin("@opentelemetry/api"),
          "@openai/agents-core": pin("@openai/agents-core"), zod: pin("zod"),
        },
        overrides: { openai: lock.packages["node_modules/openai"].version },
      };
      require("fs").writeFileSync(process.argv[3], JSON.stringify(out, null, 2) + "\n");
    ' "$PWD/$src/package.json" "$PWD/$src/package-lock.json" "$consumer/package.json" || return 1
    (cd "$consumer" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error) ||
      _ts_fail "installing the tarball failed" || return 1
    echo "[typescript] checking npm install from the folder"
    _ts_folder_install_check "$src" "$cache/folder-install" || _ts_fail "npm install ./clients/typescript failed" || return 1
    touch "$consumer/.installed"
  else
    echo "[typescript] tarball unchanged: reusing $consumer"
  fi
  rm -rf "$consumer/test" "$consumer/examples" "$consumer/build"
  cp -r "$src/test" "$src/examples" "$consumer/" || return 1
  echo "[typescript] compiling the tests and examples against the installed package"
  (cd "$consumer" && ./node_modules/.bin/tsc -p test/tsconfig.json) || _ts_fail "compiling the tests failed" || return 1

  _ts_suite "$consumer" node || rc=$?
  # The same compiled suite on the oldest and newest supported Node lines, from the npm
  # registry's node-linux-<arch> packages (the binary is inside the package).
  local ver nodebin
  for ver in "${TS_EXTRA_NODE_VERSIONS[@]}"; do
    nodebin=$(_ts_node_bin "$ver") || { _ts_fail "could not install Node.js $ver"; rc=1; continue; }
    _ts_suite "$consumer" "$nodebin" || rc=$?
  done
  return "$rc"
}

# Node.js versions the suite runs on besides the machine's own (supported: 18, 20, 22).
TS_EXTRA_NODE_VERSIONS=(18.20.8 22.23.5)

# Installs (once) the node-linux-<arch> npm package of a Node.js version; prints the binary.
_ts_node_bin() {
  local ver=$1 arch dir
  case $(uname -m) in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "no node-linux package for $(uname -m)" >&2; return 1 ;;
  esac
  dir="${BATON_CACHE_DIR:-$HOME/.cache/baton}/typescript/node-$ver-$arch"
  if [[ ! -x $dir/node_modules/node-linux-$arch/bin/node ]]; then
    echo "[typescript] installing Node.js $ver (npm package node-linux-$arch@$ver)" >&2
    rm -rf "$dir" && mkdir -p "$dir" && printf '{ "private": true }\n' >"$dir/package.json" || return 1
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "node-linux-$arch@$ver" >&2) || return 1
  fi
  printf '%s\n' "$dir/node_modules/node-linux-$arch/bin/node"
}

# Tests that need a newer Node.js than the package's own minimum, as "<file>:<major>":
# @openai/agents-core depends on openai 7, which requires Node.js 22 (its engines field).
TS_TESTS_MIN_NODE=(openai-agents.test.js:22)

# Runs the compiled suite with one node binary and adds node's TAP counts to the totals.
_ts_suite() {
  local consumer=$1 nodebin=$2 log rc=0 p f c s major t files=()
  major=$("$nodebin" -p 'process.versions.node.split(".")[0]') || return 1
  for t in "$consumer"/build/test/*.test.js; do
    local name=${t##*/} need=0 m
    for m in "${TS_TESTS_MIN_NODE[@]}"; do [[ ${m%%:*} == "$name" ]] && need=${m##*:}; done
    if ((major < need)); then
      echo "[typescript] $name not run on Node.js $major: it needs Node.js $need or newer"
      continue
    fi
    files+=("build/test/$name")
  done
  echo "[typescript] node --test on Node.js $("$nodebin" --version)"
  log=$(mktemp)
  (cd "$consumer" && BATOND_BIN="$BATOND_BIN" "$nodebin" --test --test-reporter=tap "${files[@]}") 2>&1 | tee "$log" || rc=$?
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -n 1)
  f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -n 1)
  c=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$log" | tail -n 1)
  s=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$log" | tail -n 1)
  rm -f "$log"
  PASSED=$((PASSED + ${p:-0})) FAILED_TESTS=$((FAILED_TESTS + ${f:-0} + ${c:-0})) SKIPPED=$((SKIPPED + ${s:-0}))
  echo "[typescript] Node.js $("$nodebin" --version): ${p:-0} passed, $((${f:-0} + ${c:-0})) failed, ${s:-0} skipped"
  if [[ -z $p ]]; then
    echo "clients-typescript: node's test runner printed no summary" >&2
    ((rc != 0)) || rc=1
  fi
  if ((${p:-0} == 0)); then
    echo "clients-typescript: no test passed" >&2
    ((rc != 0)) || rc=1
  fi
  return "$rc"
}

part_clients_typescript() {
  local rc=0
  _ts_run || rc=$?
  if ((rc != 0)); then check_failed "clients-typescript" "$rc"; fi
  return 0
}
