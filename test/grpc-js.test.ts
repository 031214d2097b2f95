// Error messages as a grpc-js client shows them. grpc-js decodes grpc-message with decodeURI, so
// a relay that percent-encodes more than the gRPC spec asks ("@", ":") shows up as
// "nobody%40example.com"; the relay encodes only what the spec says and every client reads the
// plain message.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { GetRegistrationRequestSchema, GetRegistrationResponseSchema, LookupRequestSchema, LookupResponseSchema, RelayService } from "../src/gen/relay/v1/relay_pb.js";
import { createTestPeer, registeredClient, type TestPeer } from "./support/peers.js";
import { startTestRelay, type TestRelay } from "./support/relay.js";

// The relay's test certificate names localhost too: TLS SNI takes a name, not an IP.
const channelOptions = { "grpc.ssl_target_name_override": "localhost" };

/** One unary call with grpc-js's generic client; resolves with the status it ended with. */
function call<I extends DescMessage, O extends DescMessage>(client: grpc.Client, method: string, input: I, output: O, request: MessageInitShape<I>): Promise<{ code: grpc.status; details: string } | MessageShape<O>> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      `/${RelayService.typeName}/${method}`,
      (message: MessageShape<I>) => Buffer.from(toBinary(input, message)),
      (bytes: Buffer) => fromBinary(output, bytes),
      create(input, request),
      (error, response) => resolve(error ? { code: error.code, details: error.details } : response!),
    );
  });
}

describe("a grpc-js client", () => {
  let relay: TestRelay;
  let peer: TestPeer;
  let client: grpc.Client;

  beforeAll(async () => {
    relay = await startTestRelay();
    peer = await createTestPeer(`grpcjs-${process.pid}@example.com`);
    await registeredClient(relay, peer);
    const credentials = grpc.credentials.createSsl(Buffer.from(relay.caPem), Buffer.from(peer.privateKeyPem), Buffer.from(peer.certificatePem));
    client = new grpc.Client(`127.0.0.1:${relay.port}`, credentials, channelOptions);
  });
  afterAll(async () => {
    client?.close();
    await relay?.stop();
  });

  it("should read the relay's error message plain, with its @ and its colon", async () => {
    const outcome = await call(client, "Lookup", LookupRequestSchema, LookupResponseSchema, { email: "nobody@example.com" });
    expect(outcome).toEqual({ code: grpc.status.NOT_FOUND, details: "peer nobody@example.com is not online" });
    const missing = await call(client, "GetRegistration", GetRegistrationRequestSchema, GetRegistrationResponseSchema, { key: { case: "email", value: "nobody@example.com" } });
    expect(missing).toEqual({ code: grpc.status.NOT_FOUND, details: "no registration for email nobody@example.com" });
  });

  it("should read a message with non-ASCII text and a colon from an unregistered certificate", async () => {
    const stranger = await createTestPeer(`stranger-${process.pid}@example.com`);
    const strangerClient = new grpc.Client(`127.0.0.1:${relay.port}`, grpc.credentials.createSsl(Buffer.from(relay.caPem), Buffer.from(stranger.privateKeyPem), Buffer.from(stranger.certificatePem)), channelOptions);
    try {
      const outcome = await call(strangerClient, "Lookup", LookupRequestSchema, LookupResponseSchema, { email: peer.email });
      expect(outcome).toEqual({ code: grpc.status.UNAUTHENTICATED, details: `client certificate ${stranger.fingerprint.slice(0, 16)}… is not registered: call Register first` });
    } finally {
      strangerClient.close();
    }
  });
});
