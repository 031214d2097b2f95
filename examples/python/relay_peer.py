"""A relay peer in Python: it makes its own self-signed Ed25519 certificate, registers it,
announces a loopback address, heartbeats on the bidi stream and looks up another peer by email.
Exits non-zero on any failure.

    python relay_peer.py --relay https://127.0.0.1:8443 --ca relay-cert.pem \
        --email py-peer@example.com --lookup ts-peer@example.com

The client is grpcio (gRPC over HTTP/2) with mutual TLS; stubs are generated into gen/ by
`npx buf generate --template buf.gen.python.yaml`.
"""

import argparse
import datetime
import os
import queue
import sys
import time
from urllib.parse import urlsplit

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from relay.v1 import relay_pb2, relay_pb2_grpc  # noqa: E402  (generated, on the path above)


def self_signed_certificate(email: str) -> tuple[bytes, bytes]:
    """An Ed25519 certificate naming email in its CN and SAN, as the relay's identity rules ask,
    valid from a minute ago (clock skew) for a year. Returns (certificate PEM, key PEM)."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, None)  # Ed25519 signs without a separate hash
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def load_or_create_identity(directory: str | None, email: str) -> tuple[bytes, bytes]:
    """The certificate kept in directory, or a new one kept there: the relay binds an email to
    one certificate, so a peer registering again after a restart must present the same one."""
    if not directory:
        return self_signed_certificate(email)
    cert_file, key_file = os.path.join(directory, f"{email}.cert.pem"), os.path.join(directory, f"{email}.key.pem")
    if os.path.exists(cert_file) and os.path.exists(key_file):
        with open(cert_file, "rb") as c, open(key_file, "rb") as k:
            return c.read(), k.read()
    certificate_pem, key_pem = self_signed_certificate(email)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as k:
        k.write(key_pem)
    with open(cert_file, "wb") as c:
        c.write(certificate_pem)
    return certificate_pem, key_pem


def run(args: argparse.Namespace) -> None:
    certificate_pem, key_pem = load_or_create_identity(args.identity, args.email)
    with open(args.ca, "rb") as f:
        ca_pem = f.read()
    url = urlsplit(args.relay)
    if url.scheme != "https" or not url.port:
        raise SystemExit(f"relay-python-peer: --relay {args.relay!r} must be https://HOST:PORT")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=certificate_pem)
    with grpc.secure_channel(url.netloc, credentials) as channel:
        relay = relay_pb2_grpc.RelayServiceStub(channel)
        timeout = 10

        registered = relay.Register(relay_pb2.RegisterRequest(certificate_pem=certificate_pem.decode(), email=args.email), timeout=timeout)
        print(f"registered {args.email} as {registered.client_id} (already registered: {registered.already_registered})")

        ready = relay.Ready(
            relay_pb2.ReadyRequest(port=args.port, addresses=["127.0.0.1", "::1"], capabilities={"proto": "http/1.1", "lang": "python"}),
            timeout=timeout,
        )
        print(
            f"ready: broadcast {ready.broadcast_id} until {ready.expires_at.ToJsonString()}, "
            f"heartbeat every {ready.heartbeat_interval.ToJsonString()}, relay sees us at {ready.observed_address}"
        )

        # One request, then its response, on one bidi stream: the request iterator blocks on a
        # queue until the next heartbeat is due; None ends the request side.
        outgoing: "queue.Queue[relay_pb2.HeartbeatRequest | None]" = queue.Queue()
        beats = relay.Heartbeat(iter(outgoing.get, None), timeout=60)
        for i in range(1, args.heartbeats + 1):
            outgoing.put(relay_pb2.HeartbeatRequest(broadcast_id=ready.broadcast_id))
            beat = next(beats)
            print(f"heartbeat {i}: expires in {beat.expires_in.ToJsonString()}, next in {beat.next_heartbeat_in.ToJsonString()}")
            time.sleep(args.interval)
        outgoing.put(None)
        for _ in beats:  # the relay ends the stream once the request side is closed
            pass

        found = relay.Lookup(relay_pb2.LookupRequest(email=args.lookup), timeout=timeout).peer
        print(
            f"found {found.email} on port {found.port} at {list(found.addresses)} "
            f"(observed {found.observed_address}), expires {found.expires_at.ToJsonString()}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="A relay peer in Python (grpcio, mutual TLS).")
    parser.add_argument("--relay", default="https://127.0.0.1:8443", help="relay URL")
    parser.add_argument("--ca", required=True, help="PEM file of the relay's certificate (or its CA) to trust")
    parser.add_argument("--email", default="py-peer@example.com", help="this peer's email (certificate CN and SAN)")
    parser.add_argument("--lookup", required=True, help="email of a peer to look up")
    parser.add_argument("--port", type=int, default=7002, help="TCP port this peer announces")
    parser.add_argument("--heartbeats", type=int, default=3, help="heartbeats to send on the stream")
    parser.add_argument("--identity", help="directory keeping this peer's certificate and key across runs (default: a new one each run)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between heartbeats (a real peer waits next_heartbeat_in)")
    args = parser.parse_args()
    try:
        run(args)
    except grpc.RpcError as error:
        print(f"relay-python-peer: {error.code().name}: {error.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except (OSError, StopIteration) as error:
        print(f"relay-python-peer: {error!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
