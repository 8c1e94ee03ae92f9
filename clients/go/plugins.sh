# shellcheck shell=bash
# Sourced by clients/generate before `buf generate --template clients/go/buf.gen.yaml`:
# installs the pinned Go protoc plugins (once, into ~/.cache/baton/go-tools) and puts them
# first on PATH. Bump a version here and the drift check regenerates with the new plugin.
#
#   protoc-gen-go       messages    (google.golang.org/protobuf; the runtime in go.mod matches)
#   protoc-gen-go-grpc  gRPC stubs  (google.golang.org/grpc/cmd/protoc-gen-go-grpc)

BATON_GO_PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
BATON_GO_PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

if ! declare -F baton_go_tool >/dev/null; then
  # shellcheck source=scripts/lib/tools.sh
  source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib/tools.sh"
fi

baton_go_plugin_gen_go=$(baton_go_tool protoc-gen-go "$BATON_GO_PROTOC_GEN_GO") || return 1
baton_go_plugin_gen_go_grpc=$(baton_go_tool protoc-gen-go-grpc "$BATON_GO_PROTOC_GEN_GO_GRPC") || return 1
PATH="$(dirname "$baton_go_plugin_gen_go"):$(dirname "$baton_go_plugin_gen_go_grpc"):$PATH"
export PATH
unset baton_go_plugin_gen_go baton_go_plugin_gen_go_grpc
