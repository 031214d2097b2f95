import { describe, expect, it } from "vitest";
import { PeerConnectionError } from "./peer-error.js";
import { redirectTarget } from "./peer-request.js";

// Which redirects stay on the peer: pure, over literal strings; nothing here is dialled.
describe("redirectTarget", () => {
  const peerAddresses = ["192.168.1.50", "2001:db8::1"];

  it.each([
    { location: "/files/", target: { address: "192.168.1.50", port: 8445, path: "/files/" } },
    { location: "files?path=a", target: { address: "192.168.1.50", port: 8445, path: "/api/files?path=a" } },
    { location: "https://192.168.1.50:9000/x", target: { address: "192.168.1.50", port: 9000, path: "/x" } },
    { location: "https://[2001:db8::1]:8445/y", target: { address: "2001:db8::1", port: 8445, path: "/y" } },
    { location: "https://192.168.1.50/z", target: { address: "192.168.1.50", port: 443, path: "/z" } },
  ])("should follow $location", ({ location, target }) => {
    expect(redirectTarget(location, "192.168.1.50", 8445, "/api/list", peerAddresses)).toEqual(target);
  });

  it.each([
    { name: "another address", location: "https://203.0.113.9:8445/files" },
    { name: "plain http on the same address", location: "http://192.168.1.50:8445/files" },
    { name: "a host name", location: "https://files.example/" },
    { name: "another scheme", location: "ftp://192.168.1.50/files" },
    { name: "a location that is no URL", location: "https://[::1" },
  ])("should refuse $name", ({ location }) => {
    let error: unknown;
    try {
      redirectTarget(location, "192.168.1.50", 8445, "/api/list", peerAddresses);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(PeerConnectionError);
    expect((error as PeerConnectionError).failure).toBe("redirect_refused");
  });
});
