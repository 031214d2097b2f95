import { X509Certificate } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { RelayService } from "../../src/gen/relay/v1/relay_pb.js";
import { createSelfSignedCertificate, type KeyType, type SelfSignedCertificateOptions } from "../../src/shared/self-signed-certificate.js";
import { fingerprintOf } from "../../src/shared/fingerprint.js";

/** A peer's identity as tests use it: a real certificate and key. */
export interface TestPeer {
  email: string;
  certificatePem: string;
  privateKeyPem: string;
  fingerprint: string;
}

/** Creates a peer certificate: CN and SAN email = email unless options say otherwise. */
export async function createTestPeer(email: string, options: Partial<SelfSignedCertificateOptions> & { keyType?: KeyType } = {}): Promise<TestPeer> {
  const generated = await createSelfSignedCertificate({ commonName: email, emails: [email], ...options });
  return { email, ...generated, fingerprint: fingerprintOf(new X509Certificate(generated.certificatePem)) };
}

export type Protocol = "grpc" | "connect" | "grpc-web" | "connect-json";

/**
 * A RelayService client over real TLS. peer undefined: a connection without a client
 * certificate. Each client has its own HTTP/2 session.
 */
export function relayClient(relay: { url: string; caPem: string }, peer: Pick<TestPeer, "certificatePem" | "privateKeyPem"> | undefined, protocol: Protocol = "grpc"): Client<typeof RelayService> {
  const nodeOptions = { ca: relay.caPem, ...(peer ? { cert: peer.certificatePem, key: peer.privateKeyPem } : {}) };
  const common = { baseUrl: relay.url, httpVersion: "2" as const, nodeOptions };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport(common)
      : protocol === "grpc-web"
        ? createGrpcWebTransport(common)
        : createConnectTransport({ ...common, useBinaryFormat: protocol === "connect" });
  return createClient(RelayService, transport);
}

/** Registers peer with the relay; returns its client. */
export async function registeredClient(relay: { url: string; caPem: string }, peer: TestPeer, protocol: Protocol = "grpc"): Promise<Client<typeof RelayService>> {
  const client = relayClient(relay, peer, protocol);
  await client.register({ email: peer.email, certificatePem: peer.certificatePem });
  return client;
}

/** Sends one heartbeat on a new stream and reads one answer. */
export async function heartbeatOnce(client: Client<typeof RelayService>, request: { broadcastId?: string }): Promise<unknown> {
  const requests = createWritableIterable<{ broadcastId?: string }>();
  void requests.write(request);
  const responses = client.heartbeat(requests)[Symbol.asyncIterator]();
  try {
    return (await responses.next()).value;
  } finally {
    requests.close();
  }
}
