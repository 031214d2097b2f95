/** A host and port to listen on. */
export interface ListenAddress {
  /** A host name or an IP literal, without brackets. */
  host: string;
  /** 0 to 65535; 0 picks a free port. */
  port: number;
}

/**
 * Parses a listen address: "HOST:PORT" or "[IPv6]:PORT". Undefined when malformed. The one
 * parser behind every `--listen`-like flag (the relay's, its admin listener's, the house's).
 */
export function parseListenAddress(value: string): ListenAddress | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) return undefined;
  return { host: match[1] ?? match[2]!, port };
}

/** "host:port", with brackets around an IPv6 host. */
export function formatListenAddress({ host, port }: ListenAddress): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
