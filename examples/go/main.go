// Command relay-go-peer is a relay peer in Go: it makes its own self-signed Ed25519
// certificate, registers it, announces a loopback address, heartbeats on the bidi stream and
// looks up another peer by email. It exits non-zero on any failure.
//
//	go run . -relay https://127.0.0.1:8443 -ca relay-cert.pem -email go-peer@example.com -lookup ts-peer@example.com
//
// The client is connect-go over HTTP/2 with mutual TLS; -protocol picks grpc (default),
// connect or grpcweb, all of which the relay serves.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"

	relayv1 "relay.example/peer/gen/relay/v1"
	"relay.example/peer/gen/relay/v1/relayv1connect"
)

func main() {
	relayURL := flag.String("relay", "https://127.0.0.1:8443", "relay URL")
	caFile := flag.String("ca", "", "PEM file of the relay's certificate (or its CA) to trust")
	email := flag.String("email", "go-peer@example.com", "this peer's email (certificate CN and SAN)")
	lookup := flag.String("lookup", "", "email of a peer to look up (required)")
	port := flag.Uint("port", 7001, "TCP port this peer announces")
	heartbeats := flag.Int("heartbeats", 3, "heartbeats to send on the stream")
	interval := flag.Duration("interval", 200*time.Millisecond, "pause between heartbeats (a real peer waits next_heartbeat_in)")
	protocol := flag.String("protocol", "grpc", "grpc, connect or grpcweb")
	identityDir := flag.String("identity", "", "directory keeping this peer's certificate and key across runs (empty: a new one each run)")
	flag.Parse()
	if *lookup == "" || *caFile == "" {
		fmt.Fprintln(os.Stderr, "relay-go-peer: -ca and -lookup are required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *relayURL, *caFile, *identityDir, *email, *lookup, uint32(*port), *heartbeats, *interval, *protocol); err != nil {
		fmt.Fprintf(os.Stderr, "relay-go-peer: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, relayURL, caFile, identityDir, email, lookup string, port uint32, heartbeats int, interval time.Duration, protocol string) error {
	certificate, certificatePEM, err := loadOrCreateIdentity(identityDir, email)
	if err != nil {
		return fmt.Errorf("failed to load or make a certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("failed to read the relay CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s", caFile)
	}
	httpClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:      roots,
			Certificates: []tls.Certificate{certificate},
			MinVersion:   tls.VersionTLS12,
		},
		// A custom TLS config turns off Go's automatic HTTP/2; streams need it.
		ForceAttemptHTTP2: true,
	}}
	var options []connect.ClientOption
	switch protocol {
	case "grpc":
		options = append(options, connect.WithGRPC())
	case "grpcweb":
		options = append(options, connect.WithGRPCWeb())
	case "connect":
	default:
		return fmt.Errorf("unknown protocol %q", protocol)
	}
	client := relayv1connect.NewRelayServiceClient(httpClient, relayURL, options...)

	registered, err := client.Register(ctx, connect.NewRequest(&relayv1.RegisterRequest{CertificatePem: certificatePEM, Email: email}))
	if err != nil {
		return fmt.Errorf("Register: %w", err)
	}
	fmt.Printf("registered %s as %s (already registered: %v)\n", email, registered.Msg.ClientId, registered.Msg.AlreadyRegistered)

	ready, err := client.Ready(ctx, connect.NewRequest(&relayv1.ReadyRequest{
		Port:         port,
		Addresses:    []string{"127.0.0.1", "::1"},
		Capabilities: map[string]string{"proto": "http/1.1", "lang": "go"},
	}))
	if err != nil {
		return fmt.Errorf("Ready: %w", err)
	}
	fmt.Printf("ready: broadcast %s until %s, heartbeat every %s, relay sees us at %s\n",
		ready.Msg.BroadcastId, ready.Msg.ExpiresAt.AsTime().Format(time.RFC3339), ready.Msg.HeartbeatInterval.AsDuration(), ready.Msg.ObservedAddress)

	stream := client.Heartbeat(ctx)
	for i := 1; i <= heartbeats; i++ {
		if err := stream.Send(&relayv1.HeartbeatRequest{BroadcastId: ready.Msg.BroadcastId}); err != nil {
			return fmt.Errorf("Heartbeat send: %w", err)
		}
		beat, err := stream.Receive()
		if err != nil {
			return fmt.Errorf("Heartbeat receive: %w", err)
		}
		fmt.Printf("heartbeat %d: expires in %s, next in %s\n", i, beat.ExpiresIn.AsDuration(), beat.NextHeartbeatIn.AsDuration())
		time.Sleep(interval)
	}
	if err := stream.CloseRequest(); err != nil {
		return fmt.Errorf("Heartbeat close: %w", err)
	}
	if _, err := stream.Receive(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("Heartbeat end: %w", err)
	}
	if err := stream.CloseResponse(); err != nil {
		return fmt.Errorf("Heartbeat close: %w", err)
	}

	found, err := client.Lookup(ctx, connect.NewRequest(&relayv1.LookupRequest{Email: lookup}))
	if err != nil {
		return fmt.Errorf("Lookup %s: %w", lookup, err)
	}
	peer := found.Msg.Peer
	fmt.Printf("found %s on port %d at %v (observed %s), expires %s\n",
		peer.Email, peer.Port, peer.Addresses, peer.ObservedAddress, peer.ExpiresAt.AsTime().Format(time.RFC3339))
	return nil
}

// loadOrCreateIdentity returns the certificate kept in dir, or makes one and keeps it there:
// the relay binds an email to one certificate, so a peer that registers again after a restart
// must present the same one (Register is idempotent for it).
func loadOrCreateIdentity(dir, email string) (tls.Certificate, string, error) {
	if dir == "" {
		return selfSignedCertificate(email)
	}
	certFile, keyFile := filepath.Join(dir, email+".cert.pem"), filepath.Join(dir, email+".key.pem")
	if certificate, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		certificatePEM, err := os.ReadFile(certFile)
		return certificate, string(certificatePEM), err
	}
	certificate, certificatePEM, err := selfSignedCertificate(email)
	if err != nil {
		return certificate, "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(certificate.PrivateKey)
	if err != nil {
		return certificate, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return certificate, "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return certificate, "", err
	}
	return certificate, certificatePEM, os.WriteFile(certFile, []byte(certificatePEM), 0o644)
}

// selfSignedCertificate makes an Ed25519 certificate naming email in its CN and SAN, as the
// relay's identity rules ask, valid from a minute ago (clock skew) for a year.
func selfSignedCertificate(email string) (tls.Certificate, string, error) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	template := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: email},
		EmailAddresses: []string{email},
		NotBefore:      time.Now().Add(-time.Minute),
		NotAfter:       time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, public, private)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	certificatePEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: private}, certificatePEM, nil
}
