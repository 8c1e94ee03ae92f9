# shellcheck shell=bash
# Sourced by clients/generate before `buf generate --template clients/python/buf.gen.yaml`.
# Installs the pinned Python generators (requirements-gen.txt) into a venv under
# ~/.cache/baton named after the file's hash, once, and puts them on PATH:
#   baton-py-protoc        grpcio-tools' bundled protoc (python, pyi and grpc_python built in),
#                          used by buf as protoc_path for the protoc_builtin plugins
#   protoc-gen-grpc_python tools/protoc_gen_grpc_python.py: grpcio-tools' gRPC generator as a
#                          protoc plugin (grpcio-tools ships none)
#   protoc-gen-mypy_grpc   mypy-protobuf's generator of the _pb2_grpc.pyi stubs

_baton_py_gen() {
  local here req sum venv py
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  req=$here/requirements-gen.txt
  sum=$(sha256sum "$req" | cut -c1-16)
  venv=${BATON_CACHE_DIR:-$HOME/.cache/baton}/py-gen-$sum
  if [[ ! -f $venv/.complete ]]; then
    py=$(command -v python3 || true)
    [[ -n $py ]] || { echo "python3 not found: install Python 3.9 or newer" >&2; return 1; }
    echo "[python] installing the pinned generators into $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 || return 1
    mkdir -p "$venv/wrappers"
    printf '#!/bin/sh\nexec "%s" -m grpc_tools.protoc "$@"\n' "$venv/bin/python" >"$venv/wrappers/baton-py-protoc"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/protoc-gen-mypy_grpc" >"$venv/wrappers/protoc-gen-mypy_grpc"
    chmod +x "$venv/wrappers/"*
    touch "$venv/.complete"
  fi
  # The grpc_python wrapper is a file of the repository: write its launcher on every run, so a
  # change to it needs no new venv.
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$venv/bin/python" "$here/tools/protoc_gen_grpc_python.py" \
    >"$venv/wrappers/protoc-gen-grpc_python"
  chmod +x "$venv/wrappers/protoc-gen-grpc_python"
  PATH=$venv/wrappers:$PATH
  export PATH
}
_baton_py_gen || return 1
