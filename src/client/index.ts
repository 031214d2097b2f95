/**
 * The peer client library: identity, relay client, addresses, presence, dialer, and the share
 * server with peer-to-peer TLS.
 * See docs/peer-client.md.
 */
export { loadOrCreateIdentity, parseIdentity, emailOf, certificateFileName, privateKeyFileName, type PeerIdentity, type IdentityOptions } from "./identity.js";
export {
  createRelayClient,
  peerToJson,
  presenceChangeOf,
  type PresenceChange,
  type OfflineCause,
  type RelayClient,
  type RelayClientOptions,
  type Registration,
  type Announcement,
  type Broadcast,
  type HeartbeatAck,
  type HeartbeatStream,
  type PeerPage,
  type Peer,
  type RegistrationRecord,
} from "./relay-client.js";
export { classifyAddress, orderAddresses, gatherLocalAddresses, announcedAddresses, type AddressClass, type AnnouncedAddressesOptions, type InterfaceTable } from "./addresses.js";
export { createPresence, Presence, type PresenceOptions, type PresenceStatus, type PresenceStatusEvent, type PresenceEvents } from "./presence.js";
export { backoffDelay, defaultBackoff, type BackoffOptions } from "./backoff.js";
export { createDialer, Dialer, dialCandidates, baseUrlOf, type DialerOptions, type DialResult, type DialAttempt, type DialStrategy, type PeerState, type PeerResponse, type DialerEvents } from "./dialer.js";
export { createShareServer, type ShareServer, type ShareServerOptions, type ShareEntry, type ShareListing } from "./share/share-server.js";
export { createVisitorCheck, type VisitorCheck, type VisitorCheckOptions, type VisitorVerdict, type RegistrationLookup } from "./share/visitor-check.js";
export { connectPeer, remoteFingerprint, type ConnectPeerOptions } from "./share/peer-tls.js";
export { peerRequest, readPeerBody, type PeerRequestOptions, type PeerStream } from "./share/peer-request.js";
export { PeerConnectionError, type PeerFailure } from "./share/peer-error.js";
export { systemClock, type Clock } from "../shared/clock.js";
export { PeerClientError, IdentityError, EmailTakenError, isRetryable, retryAfterMs, describeError, type IdentityProblem } from "./errors.js";
