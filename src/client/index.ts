/**
 * The peer client library: identity, relay client, addresses, presence and dialer.
 * See docs/peer-client.md.
 */
export { loadOrCreateIdentity, parseIdentity, emailOf, certificateFileName, privateKeyFileName, type PeerIdentity, type IdentityOptions } from "./identity.js";
export {
  createRelayClient,
  peerToJson,
  type RelayClient,
  type RelayClientOptions,
  type Registration,
  type Announcement,
  type Broadcast,
  type HeartbeatAck,
  type HeartbeatStream,
  type PeerPage,
  type Peer,
} from "./relay-client.js";
export { classifyAddress, orderAddresses, gatherLocalAddresses, announcedAddresses, type AddressClass, type AnnouncedAddressesOptions, type InterfaceTable } from "./addresses.js";
export { createPresence, Presence, backoffDelay, defaultBackoff, type PresenceOptions, type PresenceStatus, type PresenceStatusEvent, type PresenceEvents, type BackoffOptions } from "./presence.js";
export { createDialer, Dialer, dialCandidates, baseUrlOf, httpGet, type DialerOptions, type DialResult, type DialAttempt, type DialStrategy, type PeerState, type PeerResponse, type DialerEvents } from "./dialer.js";
export { systemClock, type Clock } from "../shared/clock.js";
export { PeerClientError, IdentityError, EmailTakenError, isRetryable, retryAfterMs, describeError, type IdentityProblem } from "./errors.js";
