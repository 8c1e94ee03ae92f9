"""protoc plugin ``protoc-gen-grpc_python`` built on grpcio-tools.

grpcio-tools has the gRPC Python generator compiled into its bundled protoc, but ships no
plugin executable that buf could call. This wrapper is that executable: it reads the
CodeGeneratorRequest from stdin, hands the request's descriptors to grpcio-tools' protoc
(``--descriptor_set_in``, ``--grpc_python_out``) and answers with the files it wrote.
clients/python/plugins.sh installs it on PATH, running under the pinned generator venv.
"""

from __future__ import annotations

import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory() as tmp:
        fds = descriptor_pb2.FileDescriptorSet(file=list(request.proto_file))
        fds_path = os.path.join(tmp, "request.binpb")
        with open(fds_path, "wb") as f:
            f.write(fds.SerializeToString())
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        spec = f"{request.parameter}:{out}" if request.parameter else out
        args = ["protoc", f"--descriptor_set_in={fds_path}", f"--grpc_python_out={spec}"]
        rc = protoc.main(args + list(request.file_to_generate))
        if rc != 0:
            response.error = f"grpc_tools.protoc exited with {rc}"
        else:
            for dirpath, _, names in os.walk(out):
                for name in sorted(names):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as f:
                        response.file.add(name=os.path.relpath(path, out), content=f.read())
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
