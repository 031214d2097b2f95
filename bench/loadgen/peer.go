package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	relayv1 "relay.example/peer/gen/relay/v1"
	"relay.example/peer/gen/relay/v1/relayv1connect"
)

// The presence loop's settings, the client library's defaults (src/client/presence.ts and
// relay-client.ts), so the load is what that many library peers would make.
const (
	callTimeout      = 10 * time.Second // deadline of each unary call; a connection being made goes on past it (see MaxConnsPerHost)
	connectTimeout   = 90 * time.Second // deadline of making the connection before Register (RelayClient.connect)
	backoffInitial   = 500 * time.Millisecond
	backoffMax       = 30 * time.Second
	backoffFactor    = 2
	minBeatInterval  = 100 * time.Millisecond
	pingInterval     = 15 * time.Second // HTTP/2 PING on a quiet connection
	pingTimeout      = 5 * time.Second
	announcedPort    = 7000
	announcedAddress = "127.0.0.2"
)

// counters are shared by every connection the load generator makes to one target.
type counters struct {
	dials           atomic.Int64 // TCP connection attempts
	dialErrors      atomic.Int64 // TCP connect failed (refused while the server is down)
	handshakeErrors atomic.Int64 // TCP connected, TLS failed (a connection closed before or during TLS)
	handshakes      atomic.Int64 // TLS handshakes done
	resumed         atomic.Int64 // of which resumed a TLS session (no certificate exchange)

	mu    sync.Mutex
	codes map[string]int64 // failed calls by Connect code
}

func newCounters() *counters { return &counters{codes: map[string]int64{}} }

func (c *counters) countError(err error) {
	if err == nil {
		return
	}
	code := connect.CodeOf(err).String()
	c.mu.Lock()
	c.codes[code]++
	c.mu.Unlock()
}

func (c *counters) errorCodes() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.codes))
	for code, n := range c.codes {
		out[code] = n
	}
	return out
}

// sourceAddress is connection i's source: loopback only, from 127.0.1.1 up, perAddress
// connections on each (peers behind one NAT share an address).
func sourceAddress(i, perAddress int) net.IP {
	a := i / perAddress
	return net.IPv4(127, 0, byte(1+a/254), byte(1+a%254))
}

// dialer opens one peer's connections: its own TLS connection from its own source address,
// presenting its own certificate, resuming a TLS session when it holds a ticket.
func newTransport(id identity, source net.IP, roots *x509.CertPool, c *counters) *http.Transport {
	config := &tls.Config{
		RootCAs:            roots,
		ServerName:         "127.0.0.1",
		Certificates:       []tls.Certificate{id.certificate},
		NextProtos:         []string{"h2"},
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(2),
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: source}, Timeout: callTimeout}
	transport := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			c.dials.Add(1)
			raw, err := dialer.DialContext(ctx, network, address)
			if err != nil {
				c.dialErrors.Add(1)
				return nil, err
			}
			conn := tls.Client(raw, config)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				c.handshakeErrors.Add(1)
				return nil, err
			}
			c.handshakes.Add(1)
			if conn.ConnectionState().DidResume {
				c.resumed.Add(1)
			}
			return conn, nil
		},
		TLSClientConfig: config,
		HTTP2:           &http.HTTP2Config{SendPingTimeout: pingInterval, PingTimeout: pingTimeout},
		// One connection at a time, as the library's session manager (connect-node's
		// Http2SessionManager) keeps: a call that reaches its deadline while the connection is
		// still being made leaves it connecting, and the next call waits for that connection
		// instead of dialing another. net/http also goes on dialing after the call that asked
		// gave up, but without this it dials again for the next call.
		MaxConnsPerHost: 1,
	}
	transport.Protocols = new(http.Protocols)
	transport.Protocols.SetHTTP2(true)
	return transport
}

// peer is one simulated peer: its identity, its connection, and its presence loop's state.
type peer struct {
	id        identity
	transport *http.Transport
	client    relayv1connect.RelayServiceClient
	// Unix nanoseconds when the current heartbeat stream got its first answer; 0 while offline.
	onlineSince atomic.Int64
	// Unix nanoseconds when the peer first got online; 0 before.
	firstOnline atomic.Int64
	// A beat asked for by the heartbeat phase, on top of the relay's schedule.
	probe chan struct{}
	// Set when the presence loop stopped on a failure retrying cannot fix.
	failed atomic.Bool
}

// fleet is every peer of one run against one target.
type fleet struct {
	peers    []*peer
	counters *counters
	everOn   atomic.Int64
	probes   probeRecorder
	wg       sync.WaitGroup
}

func newFleet(ids []identity, url string, roots *x509.CertPool, perAddress int) *fleet {
	f := &fleet{counters: newCounters()}
	for i, id := range ids {
		transport := newTransport(id, sourceAddress(i, perAddress), roots, f.counters)
		f.peers = append(f.peers, &peer{
			id:        id,
			transport: transport,
			client:    relayv1connect.NewRelayServiceClient(&http.Client{Transport: transport}, url, connect.WithGRPC()),
			probe:     make(chan struct{}, 1),
		})
	}
	return f
}

// start runs every peer's presence loop at once: a cold-start storm.
func (f *fleet) start(ctx context.Context) {
	for _, p := range f.peers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			p.run(ctx, f)
		}()
	}
}

// stop waits (bounded) for the loops to end after ctx was canceled, then closes connections.
func (f *fleet) stop(timeout time.Duration) {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	for _, p := range f.peers {
		p.transport.CloseIdleConnections()
	}
}

// online counts peers whose heartbeat stream is up and that came online after since (0: ever).
func (f *fleet) online(since int64) int {
	n := 0
	for _, p := range f.peers {
		if at := p.onlineSince.Load(); at != 0 && at > since {
			n++
		}
	}
	return n
}

// run is the client library's presence loop (src/client/presence.ts): Register, Ready, a
// heartbeat stream beating at the relay's interval; on any failure that retrying can fix,
// back off with full jitter (never sooner than a retry-after hint) and start over.
func (p *peer) run(ctx context.Context, f *fleet) {
	attempt := 0
	for ctx.Err() == nil {
		reachedOnline, err := p.session(ctx, f)
		if ctx.Err() != nil {
			return
		}
		f.counters.countError(err)
		if reachedOnline {
			attempt = 0
		}
		if !retryable(err) {
			p.failed.Store(true)
			return
		}
		delay := backoff(attempt, retryAfter(err))
		attempt++
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// session registers, announces and heartbeats until the stream breaks.
func (p *peer) session(ctx context.Context, f *fleet) (reachedOnline bool, err error) {
	// The library waits for the connection under its own deadline, then gives Register a call's
	// deadline; net/http has no separate connect, so Register gets the sum (it differs only for a
	// relay answering Register slower than a call's deadline on a connection already open).
	callCtx, cancel := context.WithTimeout(ctx, connectTimeout+callTimeout)
	_, err = p.client.Register(callCtx, connect.NewRequest(&relayv1.RegisterRequest{CertificatePem: p.id.certificatePEM, Email: p.id.email}))
	cancel()
	if err != nil {
		return false, err
	}
	callCtx, cancel = context.WithTimeout(ctx, callTimeout)
	ready, err := p.client.Ready(callCtx, connect.NewRequest(&relayv1.ReadyRequest{Port: announcedPort, Addresses: []string{announcedAddress}}))
	cancel()
	if err != nil {
		return false, err
	}
	interval := ready.Msg.GetHeartbeatInterval().AsDuration()

	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	stream := p.client.Heartbeat(streamCtx)
	defer stream.CloseResponse()
	// Answers are read as they come, as the library's `for await` over acks does: a broken
	// stream is noticed at once, not at the next beat twenty minutes later.
	type answer struct {
		ack *relayv1.HeartbeatResponse
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		for {
			ack, err := stream.Receive()
			select {
			case answers <- answer{ack, err}:
			case <-streamCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	request := &relayv1.HeartbeatRequest{BroadcastId: ready.Msg.GetBroadcastId()}

	// The first beat goes at once and must be answered within a call's deadline: it proves the
	// stream works.
	if err := stream.Send(request); err != nil {
		return false, err
	}
	var first answer
	select {
	case first = <-answers:
	case <-time.After(callTimeout):
		return false, connect.NewError(connect.CodeDeadlineExceeded, errors.New("first heartbeat not answered in time"))
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if first.err != nil {
		return false, first.err
	}
	now := time.Now().UnixNano()
	p.onlineSince.Store(now)
	defer p.onlineSince.Store(0)
	if p.firstOnline.CompareAndSwap(0, now) {
		f.everOn.Add(1)
	}

	next := func(ack *relayv1.HeartbeatResponse) time.Duration {
		wait := ack.GetNextHeartbeatIn().AsDuration()
		if wait <= 0 {
			wait = interval
		}
		return max(wait, minBeatInterval)
	}
	timer := time.NewTimer(next(first.ack))
	defer timer.Stop()
	var probeSent time.Time // when a probe beat went out; zero when none is in flight
	inFlight := false
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-timer.C:
			if !inFlight {
				if err := stream.Send(request); err != nil {
					return true, err
				}
				inFlight = true
			}
		case <-p.probe:
			if !inFlight {
				timer.Stop()
				if err := stream.Send(request); err != nil {
					return true, err
				}
				inFlight, probeSent = true, time.Now()
			}
		case got := <-answers:
			if !probeSent.IsZero() {
				f.probes.record(time.Since(probeSent), got.err)
				probeSent = time.Time{}
			}
			if got.err != nil {
				return true, got.err
			}
			inFlight = false
			timer.Reset(next(got.ack))
		}
	}
}

// permanentCodes are those after which retrying cannot succeed (src/client/errors.ts).
var permanentCodes = map[connect.Code]bool{
	connect.CodeInvalidArgument:    true,
	connect.CodePermissionDenied:   true,
	connect.CodeAlreadyExists:      true,
	connect.CodeFailedPrecondition: true,
	connect.CodeUnimplemented:      true,
}

func retryable(err error) bool {
	var connectErr *connect.Error
	if errors.As(err, &connectErr) {
		return !permanentCodes[connectErr.Code()]
	}
	return true
}

// retryAfter reads the relay's retry-after hint (whole seconds) off a failed call.
func retryAfter(err error) time.Duration {
	var connectErr *connect.Error
	if !errors.As(err, &connectErr) {
		return 0
	}
	seconds, parseErr := strconv.Atoi(connectErr.Meta().Get("retry-after"))
	if parseErr != nil || seconds <= 0 {
		return 0
	}
	return time.Duration(seconds) * time.Second
}

// backoff is "full jitter" (uniform in [0, base)) on a capped exponential base, plus the relay's
// hint when it gave one: never sooner than the hint, and peers refused together spread out.
func backoff(attempt int, hint time.Duration) time.Duration {
	base := backoffInitial
	for i := 0; i < attempt && base < backoffMax; i++ {
		base *= backoffFactor
	}
	base = min(base, backoffMax)
	return hint + time.Duration(rand.Int64N(int64(base)))
}
