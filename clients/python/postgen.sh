#!/usr/bin/env bash
# Fix-ups after `buf generate` of the Python stubs (clients/generate runs it with the output
# root): baton/v1 becomes a regular package whose __init__.py re-exports the messages and
# enums, and the package is marked as typed (PEP 561).
set -euo pipefail
out=$1
pkg=$out/clients/python/src/baton/v1
[[ -d $pkg ]] || { echo "postgen: $pkg was not generated" >&2; exit 1; }
rm -f "$pkg"/options_pb2_grpc.py "$pkg"/options_pb2_grpc.pyi "$pkg"/common_pb2_grpc.py "$pkg"/common_pb2_grpc.pyi
{
  echo '"""Generated baton.v1 messages, enums and gRPC stubs (do not edit: run clients/generate)."""'
  echo
  for m in common options context handoff; do
    echo "from baton.v1.${m}_pb2 import *  # noqa: F401,F403"
  done
  echo "from baton.v1 import common_pb2, context_pb2, context_pb2_grpc, handoff_pb2, handoff_pb2_grpc, options_pb2  # noqa: F401"
} >"$pkg/__init__.py"
