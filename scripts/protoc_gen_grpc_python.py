"""A protoc plugin (CodeGeneratorRequest on stdin, response on stdout) that runs
grpcio-tools' built-in grpc_python generator.

buf only knows protoc's own built-in generators by name; grpc_python lives inside
grpcio-tools' protoc and has no standalone `protoc-gen-grpc_python` binary. This
hands buf's already-compiled descriptors to that protoc and returns its output.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        descriptors = root / "descriptors.binpb"
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString()
        )
        out = root / "out"
        out.mkdir()
        args = ["protoc", f"--descriptor_set_in={descriptors}", f"--grpc_python_out={out}"]
        if request.parameter:
            args[-1] = f"--grpc_python_out={request.parameter}:{out}"
        code = protoc.main([*args, *request.file_to_generate])
        if code != 0:
            response.error = f"grpc_tools.protoc exited with {code}"
        for path in sorted(out.rglob("*.py")):
            response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
