"""protoc-gen-grpc_python for buf: runs grpcio-tools' built-in grpc_python generator as a plugin.

grpcio-tools ships the generator inside its bundled protoc (python -m grpc_tools.protoc
--grpc_python_out), not as a protoc-gen-* executable, and buf only runs executables for names
other than protoc's own. This reads the CodeGeneratorRequest from stdin, hands the request's
files to the bundled protoc as a descriptor set, and answers the files it writes.
"""

import os
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse()
    with tempfile.TemporaryDirectory() as work:
        descriptors = os.path.join(work, "input.binpb")
        with open(descriptors, "wb") as f:
            f.write(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = os.path.join(work, "out")
        os.mkdir(out)
        parameter = f"{request.parameter}:" if request.parameter else ""
        status = protoc.main(["protoc", f"--descriptor_set_in={descriptors}", f"--grpc_python_out={parameter}{out}", *request.file_to_generate])
        if status != 0:
            response.error = f"grpc_tools.protoc exited with {status}"
        else:
            for root, _, files in os.walk(out):
                for name in sorted(files):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        response.file.add(name=os.path.relpath(path, out), content=f.read())
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
