/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) for Connect, answered from the
 * embedded descriptors that protoc-gen-es generates, so that `buf curl`, grpcurl and grpcui work
 * against the relay without a copy of the schema.
 *
 * Written here because no package fits: connect-es has no reflection yet
 * (connectrpc/connect-es#507) and `@grpc/reflection` needs `@grpc/grpc-js` and protobufjs, a
 * second protobuf runtime beside `@bufbuild/protobuf`.
 * Protocol: https://github.com/grpc/grpc/blob/master/doc/server-reflection.md
 */
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  create,
  createRegistry,
  fromBinary,
  toBinary,
  type DescFile,
  type MessageInitShape,
  type Registry,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha,
  ServerReflectionRequestSchema as ServerReflectionRequestV1AlphaSchema,
  ServerReflectionResponseSchema as ServerReflectionResponseV1AlphaSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Options of {@link createReflectionRoutes}. */
export interface ReflectionOptions {
  /**
   * Files whose services, messages and enums reflection exposes; their imports (the well-known
   * types, for example) are served too, as clients need them to resolve field types.
   * Include the health and reflection files to make those services discoverable as well.
   */
  files: readonly DescFile[];
  /**
   * Upper bound of one reflection request, in bytes. Default 64 KiB: a request is a file or
   * symbol name; connect-es would otherwise accept ~4 GiB messages.
   */
  readMaxBytes?: number;
}

/** gRPC status codes carried in ErrorResponse.error_code (numerically equal to Connect's). */
const NOT_FOUND = Code.NotFound;

/**
 * Returns routes serving `grpc.reflection.v1.ServerReflection` and its predecessor
 * `grpc.reflection.v1alpha.ServerReflection` (still asked for by older grpcurl) for files.
 */
export function createReflectionRoutes(options: ReflectionOptions): (router: ConnectRouter) => void {
  const answer = createReflectionAnswerer(options.files);
  const handlerOptions = { readMaxBytes: options.readMaxBytes ?? 64 * 1024 };
  return (router) => {
    router.service(
      ServerReflection,
      {
        async *serverReflectionInfo(requests) {
          for await (const request of requests) {
            yield answer(request);
          }
        },
      },
      handlerOptions,
    );
    // The two versions are wire-identical (same messages and field numbers under another
    // package), so v1alpha requests are answered by the v1 code through a binary round trip.
    router.service(
      ServerReflectionV1Alpha,
      {
        async *serverReflectionInfo(requests) {
          for await (const request of requests) {
            const v1 = fromBinary(ServerReflectionRequestSchema, toBinary(ServerReflectionRequestV1AlphaSchema, request));
            yield fromBinary(ServerReflectionResponseV1AlphaSchema, toBinary(ServerReflectionResponseSchema, answer(v1)));
          }
        },
      },
      handlerOptions,
    );
  };
}

/**
 * Returns the function answering one reflection request for files. Exported for unit tests;
 * the routes above are the public surface.
 */
export function createReflectionAnswerer(files: readonly DescFile[]): (request: ServerReflectionRequest) => ServerReflectionResponse {
  const filesByName = new Map<string, DescFile>();
  const addWithImports = (file: DescFile): void => {
    // DescFile.name drops ".proto"; reflection clients ask by the full path, as in proto.name.
    if (filesByName.has(file.proto.name)) return;
    filesByName.set(file.proto.name, file);
    file.dependencies.forEach(addWithImports);
  };
  files.forEach(addWithImports);
  const registry = createRegistry(...filesByName.values());
  const serviceNames = files.flatMap((file) => file.services.map((service) => service.typeName)).sort();
  // Serialized once: descriptors are immutable for the life of the process.
  const serialized = new Map<string, Uint8Array>();
  const bytesOf = (file: DescFile): Uint8Array => {
    let bytes = serialized.get(file.proto.name);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      serialized.set(file.proto.name, bytes);
    }
    return bytes;
  };
  // The file first, then its transitive imports: clients need them all to build the file, and
  // sending them on every answer (the protocol allows skipping ones sent earlier) keeps the
  // stream stateless.
  const withImports = (file: DescFile): MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"] => {
    const seen = new Set<string>();
    const ordered: Uint8Array[] = [];
    const visit = (f: DescFile): void => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      ordered.push(bytesOf(f));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: ordered } };
  };
  const notFound = (message: string): MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"] => ({
    case: "errorResponse",
    value: { errorCode: NOT_FOUND, errorMessage: message },
  });

  return (request) => {
    const question = request.messageRequest;
    let messageResponse: MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];
    switch (question.case) {
      case "listServices":
        messageResponse = { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
        break;
      case "fileByFilename": {
        const file = filesByName.get(question.value);
        messageResponse = file ? withImports(file) : notFound(`file not found: ${question.value}`);
        break;
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(registry, question.value);
        messageResponse = file ? withImports(file) : notFound(`symbol not found: ${question.value}`);
        break;
      }
      case "fileContainingExtension": {
        const extendee = registry.getMessage(question.value.containingType);
        const extension = extendee && registry.getExtensionFor(extendee, question.value.extensionNumber);
        messageResponse = extension
          ? withImports(extension.file)
          : notFound(`extension not found: ${question.value.containingType} ${question.value.extensionNumber}`);
        break;
      }
      case "allExtensionNumbersOfType": {
        const typeName = question.value;
        if (!registry.getMessage(typeName)) {
          messageResponse = notFound(`type not found: ${typeName}`);
          break;
        }
        const numbers: number[] = [];
        for (const desc of registry) {
          if (desc.kind === "extension" && desc.extendee.typeName === typeName) numbers.push(desc.number);
        }
        messageResponse = { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
        break;
      }
      default:
        // As grpc-go does: a request with no known question is the client's bug, and ends the stream.
        throw new ConnectError("reflection request names no known question", Code.InvalidArgument);
    }
    return create(ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse,
    });
  };
}

/**
 * The file declaring a fully-qualified symbol: a message, enum, service or extension, or a
 * member of one (method, field, oneof, enum value), the forms grpcurl and buf curl ask for.
 */
function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc) return desc.file;
  const dot = symbol.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const parent = registry.get(symbol.slice(0, dot));
  const member = symbol.slice(dot + 1);
  switch (parent?.kind) {
    case "service":
      return parent.methods.some((m) => m.name === member) ? parent.file : undefined;
    case "message":
      return parent.fields.some((f) => f.name === member) ||
        parent.oneofs.some((o) => o.name === member) ||
        parent.nestedEnums.some((e) => e.values.some((v) => v.name === member))
        ? parent.file
        : undefined;
    case "enum":
      return parent.values.some((v) => v.name === member) ? parent.file : undefined;
    default:
      return undefined;
  }
}
