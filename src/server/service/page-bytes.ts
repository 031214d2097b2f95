/**
 * How many bytes a peer takes in a List page, bounded from above, without serializing it: a page
 * is filled against a byte budget before any of it is encoded, so an oversized page is never
 * built, let alone refused after the work.
 */
import type { BroadcastRecord } from "../store/store.js";

/** Field name, quotes, colon and comma in JSON; tag and length prefix in binary: at most this per field. */
const perFieldBytes = 24;
/** Timestamps, port and the message envelope: at most this per peer, in either encoding. */
const perPeerBytes = 160;

/**
 * An upper bound on the encoded size of one broadcast as a `Peer`, in protobuf binary and in
 * protobuf JSON alike: each string counts as its JSON-escaped UTF-8 text, never shorter than its
 * binary form.
 */
export function peerBytesAtMost(broadcast: BroadcastRecord): number {
  let bytes = perPeerBytes;
  const text = (value: string) => {
    bytes += Buffer.byteLength(JSON.stringify(value)) + perFieldBytes;
  };
  text(broadcast.email);
  text(broadcast.observedAddress);
  text(broadcast.fingerprint);
  for (const address of broadcast.addresses) text(address);
  for (const [key, value] of Object.entries(broadcast.capabilities)) {
    text(key);
    text(value);
  }
  return bytes;
}

/**
 * The longest prefix of broadcasts that fits in maxBytes; at least one, so a page always makes
 * progress (one peer is a few KiB at most, far under any budget).
 */
export function fitPage(broadcasts: readonly BroadcastRecord[], maxBytes: number): BroadcastRecord[] {
  let used = 0;
  let count = 0;
  for (const broadcast of broadcasts) {
    used += peerBytesAtMost(broadcast);
    if (count > 0 && used > maxBytes) break;
    count++;
  }
  return broadcasts.slice(0, count);
}
