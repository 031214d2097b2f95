/**
 * A small HTTP/2 frame writer and reader (RFC 9113 §4, §6) for clients that break the rules on
 * purpose: Node's own client queues streams, answers flow control and never floods, so attacks
 * are played with raw frames on a TLS socket.
 */
import * as tls from "node:tls";

export const enum FrameType {
  Data = 0,
  Headers = 1,
  Priority = 2,
  RstStream = 3,
  Settings = 4,
  Ping = 6,
  Goaway = 7,
  WindowUpdate = 8,
}

/** The client connection preface (RFC 9113 §3.4). */
export const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** One frame. */
export function frame(type: FrameType, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** A SETTINGS frame with the given (id, value) pairs. */
export function settings(values: Array<[number, number]> = []): Buffer {
  const payload = Buffer.alloc(6 * values.length);
  values.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FrameType.Settings, 0, 0, payload);
}

/** RST_STREAM with an error code (8: CANCEL). */
export function rstStream(streamId: number, code = 8): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code, 0);
  return frame(FrameType.RstStream, 0, streamId, payload);
}

/** An HPACK block of literal header fields without indexing (names and values < 127 bytes). */
export function hpackLiterals(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(headers)) parts.push(Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value));
  return Buffer.concat(parts);
}

/** Request headers of a gRPC call to path. */
export function grpcHeaders(path: string): Buffer {
  return hpackLiterals({ ":method": "POST", ":scheme": "https", ":path": path, ":authority": "localhost", "content-type": "application/grpc", te: "trailers" });
}

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw HTTP/2 client on TLS: what it received, and whether the relay closed it. */
export interface RawConnection {
  readonly socket: tls.TLSSocket;
  readonly frames: ReceivedFrame[];
  /** Resolves when the socket closes, however. */
  readonly closed: Promise<void>;
  /** The GOAWAY error code received, if any. */
  goawayCode(): number | undefined;
}

/** Connects with ALPN h2 (and optionally a client certificate), sends the preface and SETTINGS. */
export function rawConnect(options: { port: number; caPem: string; cert?: string; key?: string; localAddress?: string; initialSettings?: Array<[number, number]> }): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: options.port, ca: options.caPem, servername: "localhost", ALPNProtocols: ["h2"], cert: options.cert, key: options.key, localAddress: options.localAddress } as tls.ConnectionOptions);
    const frames: ReceivedFrame[] = [];
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        frames.push({ type: buffered.readUInt8(3), flags: buffered.readUInt8(4), streamId: buffered.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buffered.subarray(9, 9 + length)) });
        buffered = buffered.subarray(9 + length);
      }
    });
    const closed = new Promise<void>((done) => socket.once("close", () => done()));
    socket.on("error", () => {});
    socket.once("secureConnect", () => {
      socket.write(Buffer.concat([preface, settings(options.initialSettings)]));
      resolve({
        socket,
        frames,
        closed,
        goawayCode: () => {
          const goaway = frames.find((f) => f.type === FrameType.Goaway);
          return goaway?.payload.readUInt32BE(4);
        },
      });
    });
    socket.once("error", reject);
  });
}
