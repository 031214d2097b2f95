import type { Socket } from "node:net";
import ipaddr from "ipaddr.js";
import { canonicalAddress } from "../service/validation.js";

/**
 * The network a source address stands for, as the key of per-source limits: an IPv4 address
 * itself, an IPv6 address's /64. One IPv6 host is normally handed a whole /64 (RFC 4291 §2.5.1,
 * SLAAC), so keying by the full /128 would give it 2^64 budgets; keying IPv4 by address keeps
 * peers behind one NAT together, as they share that address anyway.
 *
 * Takes a canonical literal (see canonicalAddress); anything else is its own key.
 */
export function sourceNetworkOf(address: string): string {
  if (!address.includes(":") || !ipaddr.IPv6.isValid(address)) return address;
  const parts = ipaddr.IPv6.parse(address).parts;
  return `${parts.slice(0, 4).map((part) => part.toString(16)).join(":")}::/64`;
}

/** The source network of an accepted socket's peer (see sourceNetworkOf). */
export function sourceNetworkOfSocket(socket: Socket): string {
  const address = socket.remoteAddress ?? "";
  return sourceNetworkOf(canonicalAddress(address) ?? address);
}
