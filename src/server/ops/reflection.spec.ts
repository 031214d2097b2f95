import { describe, expect, it } from "vitest";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { createReflectionRoutes } from "./reflection.js";
import { file_relay_v1_relay } from "../../gen/relay/v1/relay_pb.js";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection, type ServerReflectionRequest } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";

const transport = createRouterTransport(createReflectionRoutes({ files: [file_relay_v1_relay, file_grpc_health_v1_health] }));
const client = createClient(ServerReflection, transport);

async function ask(...questions: MessageInitShape<typeof ServerReflectionRequestSchema>[]) {
  async function* requests() {
    yield* questions;
  }
  const answers = [];
  for await (const answer of client.serverReflectionInfo(requests())) answers.push(answer);
  return answers;
}

function fileNames(answer: Awaited<ReturnType<typeof ask>>[number]): string[] {
  if (answer.messageResponse.case !== "fileDescriptorResponse") throw new Error(`unexpected ${answer.messageResponse.case}`);
  return answer.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

describe("reflection", () => {
  it("should list the services of the given files", async () => {
    const [answer] = await ask({ host: "relay", messageRequest: { case: "listServices", value: "" } });
    expect(answer?.validHost).toBe("relay");
    expect(answer?.messageResponse).toMatchObject({
      case: "listServicesResponse",
      value: { service: [{ name: "grpc.health.v1.Health" }, { name: "relay.v1.RelayService" }] },
    });
  });

  it.each([
    ["a service", "relay.v1.RelayService"],
    ["a method", "relay.v1.RelayService.Heartbeat"],
    ["a message", "relay.v1.Peer"],
    ["a field", "relay.v1.Peer.observed_address"],
    ["a nested enum value", "grpc.health.v1.HealthCheckResponse.SERVING"],
  ])("should answer the file containing %s with its imports", async (_, symbol) => {
    const [answer] = await ask({ messageRequest: { case: "fileContainingSymbol", value: symbol } });
    const names = fileNames(answer!);
    expect(names[0]).toBe(symbol.startsWith("grpc") ? "grpc/health/v1/health.proto" : "relay/v1/relay.proto");
    if (!symbol.startsWith("grpc")) {
      expect(names).toEqual(["relay/v1/relay.proto", "google/protobuf/duration.proto", "google/protobuf/timestamp.proto"]);
    }
  });

  // The requested file comes first, as grpc-go orders it; a FileDescriptorSet wants imports first.
  it("should answer descriptors a client can build a registry from", async () => {
    const [answer] = await ask({ messageRequest: { case: "fileByFilename", value: "relay/v1/relay.proto" } });
    const set = create(FileDescriptorSetSchema, {
      file: (answer!.messageResponse.value as { fileDescriptorProto: Uint8Array[] }).fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b)).reverse(), // imports first
    });
    const registry = createFileRegistry(set);
    expect(registry.getService("relay.v1.RelayService")?.methods.map((m) => m.name)).toEqual(["Register", "Ready", "Heartbeat", "Lookup", "List", "Offline", "Watch", "GetRegistration"]);
    expect(registry.getMessage("relay.v1.ReadyResponse")?.field.expiresAt?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it("should serve imported well-known files by name", async () => {
    const [answer] = await ask({ messageRequest: { case: "fileByFilename", value: file_google_protobuf_timestamp.proto.name } });
    expect(fileNames(answer!)).toEqual(["google/protobuf/timestamp.proto"]);
  });

  it.each<[string, MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"]]>([
    ["an unknown file", { case: "fileByFilename", value: "nope.proto" }],
    ["an unknown symbol", { case: "fileContainingSymbol", value: "relay.v1.Nope" }],
    ["an unknown method", { case: "fileContainingSymbol", value: "relay.v1.RelayService.Nope" }],
    ["an unknown extension", { case: "fileContainingExtension", value: { containingType: "relay.v1.Peer", extensionNumber: 1000 } }],
    ["extensions of an unknown type", { case: "allExtensionNumbersOfType", value: "relay.v1.Nope" }],
  ])("should answer NOT_FOUND in the stream for %s and keep the stream open", async (_, messageRequest) => {
    const answers = await ask({ messageRequest }, { messageRequest: { case: "listServices", value: "*" } });
    expect(answers).toHaveLength(2);
    expect(answers[0]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    expect((answers[0]?.originalRequest as ServerReflectionRequest).messageRequest).toMatchObject(messageRequest!);
    expect(answers[1]?.messageResponse.case).toBe("listServicesResponse");
  });

  it("should answer no extension numbers for a message nobody extends", async () => {
    const [answer] = await ask({ messageRequest: { case: "allExtensionNumbersOfType", value: "relay.v1.Peer" } });
    expect(answer?.messageResponse).toMatchObject({ case: "allExtensionNumbersResponse", value: { baseTypeName: "relay.v1.Peer", extensionNumber: [] } });
  });

  it("should answer v1alpha the same as v1", async () => {
    const alpha = createClient(ServerReflectionV1Alpha, transport);
    async function* requests() {
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "relay.v1.RelayService" } };
    }
    const answers = [];
    for await (const answer of alpha.serverReflectionInfo(requests())) answers.push(answer);
    expect(answers[0]?.$typeName).toBe("grpc.reflection.v1alpha.ServerReflectionResponse");
    expect(answers[0]?.messageResponse.case).toBe("fileDescriptorResponse");
  });
});
