import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import ipaddr from "ipaddr.js";

/**
 * Where an address sits in the dialling order: LAN IPv4 first
 * (lowest latency), then other private ranges, then IPv6, then public IPv4.
 */
export type AddressClass =
  /** 192.168.0.0/16, 10.0.0.0/8, 172.16.0.0/12 (RFC 1918). */
  | "lan-ipv4"
  /** Other non-public ranges a peer may share: CGNAT 100.64.0.0/10 (RFC 6598), IPv6 ULA fc00::/7. */
  | "private"
  /** Any other routable IPv6 (global unicast and the like). */
  | "ipv6"
  /** Any other routable IPv4. */
  | "public"
  /** Never announced from the gathered list: loopback, link-local, unspecified, multicast, broadcast. */
  | "excluded";

const classRank: Record<AddressClass, number> = { "lan-ipv4": 0, private: 1, ipv6: 2, public: 3, excluded: 4 };

// Within RFC 1918, 192.168/16 is nearly always the home or office LAN; 10/8 is often a VPN or a
// corporate network and 172.16/12 often a container bridge, so they come after it (plan 2.4.2
// lists 192.168.1.50 as "local" before 10.0.0.5 as "private network").
const lanRanges: Array<[ipaddr.IPv4, number]> = [
  ipaddr.IPv4.parseCIDR("192.168.0.0/16"),
  ipaddr.IPv4.parseCIDR("10.0.0.0/8"),
  ipaddr.IPv4.parseCIDR("172.16.0.0/12"),
];

const excludedRanges = new Set<string>(["loopback", "linkLocal", "unspecified", "multicast", "broadcast"]);

/** Classifies an IP literal; throws on anything that is not one. */
export function classifyAddress(address: string): AddressClass {
  return rankAddress(address).addressClass;
}

function rankAddress(address: string): { addressClass: AddressClass; rank: number } {
  if (isIP(stripZone(address)) === 0) throw new TypeError(`not an IP literal: ${JSON.stringify(address)}`);
  let parsed = ipaddr.parse(stripZone(address));
  if (parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  const range = parsed.range();
  if (excludedRanges.has(range)) return { addressClass: "excluded", rank: classRank.excluded * 10 };
  if (parsed.kind() === "ipv4") {
    const v4 = parsed as ipaddr.IPv4;
    const lan = lanRanges.findIndex((cidr) => v4.match(cidr));
    if (lan >= 0) return { addressClass: "lan-ipv4", rank: classRank["lan-ipv4"] * 10 + lan };
    if (range === "carrierGradeNat") return { addressClass: "private", rank: classRank.private * 10 };
    return { addressClass: "public", rank: classRank.public * 10 };
  }
  if (range === "uniqueLocal") return { addressClass: "private", rank: classRank.private * 10 + 1 };
  return { addressClass: "ipv6", rank: classRank.ipv6 * 10 };
}

/** "fe80::1%eth0" → "fe80::1": zone ids only ever come with link-local addresses. */
function stripZone(address: string): string {
  const percent = address.indexOf("%");
  return percent < 0 ? address : address.slice(0, percent);
}

/**
 * Orders addresses for announcing and dialling: by {@link AddressClass} (LAN IPv4, other
 * private, IPv6, public), keeping the given order within a class; drops excluded addresses
 * and duplicates. Pure: the addresses are only compared, never contacted.
 */
export function orderAddresses(addresses: readonly string[]): string[] {
  const seen = new Set<string>();
  return addresses
    .map((address, index) => ({ address, index, ...rankAddress(address) }))
    .filter(({ address, addressClass }) => addressClass !== "excluded" && !seen.has(address) && seen.add(address))
    .sort((a, b) => a.rank - b.rank || a.index - b.index)
    .map(({ address }) => address);
}

/** The shape of `os.networkInterfaces()`, so tests can pass literals. */
export type InterfaceTable = ReturnType<typeof networkInterfaces>;

/**
 * The machine's non-loopback, non-link-local IPv4 and IPv6 addresses, ordered by
 * {@link orderAddresses}.
 */
export function gatherLocalAddresses(interfaces: InterfaceTable = networkInterfaces()): string[] {
  const all = Object.values(interfaces)
    .flatMap((entries) => entries ?? [])
    .filter((entry) => !entry.internal)
    .map((entry) => entry.address);
  return orderAddresses(all);
}

/** Options of {@link announcedAddresses}. */
export interface AnnouncedAddressesOptions {
  /**
   * Announce exactly these addresses, in this order, instead of the gathered ones (the CLI's
   * `--address`). Not filtered: a test may announce loopback. Default: gather.
   */
  override?: readonly string[];
  /** Added to the gathered addresses, then ordered with them (a port-forwarded public IP). */
  extra?: readonly string[];
  /** Default: `os.networkInterfaces()`. */
  interfaces?: InterfaceTable;
  /**
   * Most gathered addresses announced, best first: the relay refuses a Ready with more than 16
   * (its default limit), and a machine with many bridges or VPNs can have more. Does not apply
   * to override, which is announced as given. Default: 16.
   */
  maxAddresses?: number;
}

/** The addresses a peer announces in Ready. Throws TypeError on a string that is not an IP literal. */
export function announcedAddresses(options: AnnouncedAddressesOptions = {}): string[] {
  for (const address of [...(options.override ?? []), ...(options.extra ?? [])]) {
    if (isIP(address) === 0) throw new TypeError(`not an IP literal: ${JSON.stringify(address)}`);
  }
  if (options.override && options.override.length > 0) return [...new Set(options.override)];
  const gathered = gatherLocalAddresses(options.interfaces);
  return orderAddresses([...gathered, ...(options.extra ?? [])]).slice(0, options.maxAddresses ?? 16);
}
