import * as http2 from "node:http2";

/**
 * A raw HTTP/2 session to relay with peer's certificate and a receive window of zero: the relay
 * may not send one byte of DATA on any of its streams, so every answer it writes stays unsent.
 */
export function zeroWindowSession(relay: { url: string; caPem: string }, peer: { certificatePem: string; privateKeyPem: string }): http2.ClientHttp2Session {
  const session = http2.connect(relay.url, { ca: relay.caPem, cert: peer.certificatePem, key: peer.privateKeyPem, settings: { initialWindowSize: 0 } });
  session.on("error", () => {});
  return session;
}

/**
 * The RST_STREAM code stream closes with, or undefined when it is still open after withinMs: a
 * stream nobody closes would otherwise hold the test until its own timeout.
 */
export function rstCodeWithin(stream: http2.ClientHttp2Stream, withinMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const giveUp = setTimeout(() => resolve(undefined), withinMs);
    stream.once("close", () => {
      clearTimeout(giveUp);
      resolve(stream.rstCode);
    });
  });
}
