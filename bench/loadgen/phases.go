package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"

	relayv1 "relay.example/peer/gen/relay/v1"
	"relay.example/peer/gen/relay/v1/relayv1connect"
)

// stormResult: every peer starts its presence loop at the same instant against a server that
// just started.
type stormResult struct {
	AllOnline bool `json:"allOnline"`
	Online    int  `json:"online"`
	// From the start of the storm until the last peer's first heartbeat answer.
	Ms float64 `json:"ms"`
	// When each peer got online, from the start of the storm.
	TimeToOnline latencies `json:"timeToOnline"`
	// TCP connection attempts per peer (1.0 is every peer connecting once).
	Attempts        int64            `json:"attempts"`
	AttemptsPerPeer float64          `json:"attemptsPerPeer"`
	HandshakeErrors int64            `json:"handshakeErrors"`
	Errors          map[string]int64 `json:"errors"`
	// Server CPU spent during the storm, per peer brought online.
	ServerCPUPerPeerUs int64 `json:"serverCpuPerPeerUs"`
	// CPU the load generator itself spent during the storm, and the server's, in cores: on a
	// machine they share, a generator near its share of the cores is what limits the rate.
	LoadgenCores float64 `json:"loadgenCores"`
	ServerCores  float64 `json:"serverCores"`
	Failed       int     `json:"failedPeers"`
}

func runStorm(ctx context.Context, s *server, f *fleet, timeout time.Duration) stormResult {
	n := len(f.peers)
	cpuBefore := s.cpuMicros()
	selfBefore := selfCPUMicros()
	start := time.Now()
	f.start(ctx)
	deadline := start.Add(timeout)
	for int(f.everOn.Load()) < n && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := s.cpuMicros() - cpuBefore
	self := selfCPUMicros() - selfBefore
	var times []time.Duration
	failed := 0
	for _, p := range f.peers {
		if at := p.firstOnline.Load(); at != 0 {
			times = append(times, time.Duration(at-start.UnixNano()))
		}
		if p.failed.Load() {
			failed++
		}
	}
	online := int(f.everOn.Load())
	attempts := f.counters.dials.Load()
	return stormResult{
		AllOnline:          online == n,
		Online:             online,
		Ms:                 ms(elapsed),
		TimeToOnline:       summarise(times),
		Attempts:           attempts,
		AttemptsPerPeer:    ratio(attempts, int64(n)),
		HandshakeErrors:    f.counters.handshakeErrors.Load(),
		Errors:             f.counters.errorCodes(),
		ServerCPUPerPeerUs: cpu / int64(max(online, 1)),
		LoadgenCores:       float64(int64(float64(self)/float64(elapsed.Microseconds())*100)) / 100,
		ServerCores:        float64(int64(float64(cpu)/float64(elapsed.Microseconds())*100)) / 100,
		Failed:             failed,
	}
}

// memoryResult: the server's resident memory with every peer connected, against before the storm.
type memoryResult struct {
	BaselineKiB int64   `json:"baselineKiB"`
	RssKiB      int64   `json:"rssKiB"`
	Connected   int     `json:"connected"`
	PerPeerKiB  float64 `json:"perPeerKiB"`
	// Where the per-peer RSS is, from bench/memory-probe.ts (absent for a target without it):
	// V8's heap in use, and its share of each heap space, the external memory V8 is told of and
	// the ArrayBuffers within it, and the rest of RSS (native: nghttp2, OpenSSL, the allocator's
	// free lists, V8's heap not in use), each per connected peer against before the storm.
	PerPeer *memorySplit `json:"perPeer,omitempty"`
}

type memorySplit struct {
	HeapUsedKiB     float64            `json:"heapUsedKiB"`
	HeapTotalKiB    float64            `json:"heapTotalKiB"`
	ExternalKiB     float64            `json:"externalKiB"`
	ArrayBuffersKiB float64            `json:"arrayBuffersKiB"`
	NativeKiB       float64            `json:"nativeKiB"`
	SpacesKiB       map[string]float64 `json:"spacesKiB"`
}

func measureMemory(s *server, f *fleet, baseline int64, baselineProbe *memoryProbe, settle time.Duration) memoryResult {
	time.Sleep(settle)
	rss := s.rssKiB()
	probe := s.probeMemory()
	connected := f.online(0)
	perPeer := 0.0
	result := memoryResult{BaselineKiB: baseline, RssKiB: rss, Connected: connected}
	if connected > 0 {
		perPeer = float64(int64(float64(rss-baseline)/float64(connected)*10)) / 10
		if probe != nil && baselineProbe != nil {
			per := func(after, before int64) float64 {
				return float64(int64(float64(after-before)/1024/float64(connected)*10)) / 10
			}
			split := &memorySplit{
				HeapUsedKiB:     per(probe.HeapUsed, baselineProbe.HeapUsed),
				HeapTotalKiB:    per(probe.HeapTotal, baselineProbe.HeapTotal),
				ExternalKiB:     per(probe.External, baselineProbe.External),
				ArrayBuffersKiB: per(probe.ArrayBuffers, baselineProbe.ArrayBuffers),
				SpacesKiB:       map[string]float64{},
			}
			// RSS that is neither V8's heap nor external memory: native allocations.
			split.NativeKiB = float64(int64((perPeer-split.HeapTotalKiB-split.ExternalKiB)*10)) / 10
			for space, used := range probe.Spaces {
				split.SpacesKiB[space] = per(used, baselineProbe.Spaces[space])
			}
			result.PerPeer = split
		}
	}
	result.PerPeerKiB = perPeer
	return result
}

// heartbeatResult: round trips of heartbeats asked of random online peers at a steady rate, on
// their own streams, with every other peer connected and idle.
type heartbeatResult struct {
	WindowS   float64   `json:"windowS"`
	RatePerS  int       `json:"ratePerS"`
	Asked     int64     `json:"asked"`
	Skipped   int64     `json:"skipped"`
	Errors    int64     `json:"errors"`
	RoundTrip latencies `json:"roundTrip"`
}

func runHeartbeats(ctx context.Context, f *fleet, window time.Duration, rate int) heartbeatResult {
	f.probes.begin()
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	defer ticker.Stop()
	var asked, skipped int64
	end := time.Now().Add(window)
	for time.Now().Before(end) && ctx.Err() == nil {
		<-ticker.C
		p := f.peers[rand.IntN(len(f.peers))]
		if p.onlineSince.Load() == 0 {
			skipped++
			continue
		}
		select {
		case p.probe <- struct{}{}:
			asked++
		default:
			skipped++ // its previous probe is still in flight
		}
	}
	// Answers still in flight get a bounded wait; the longest of them is what the max shows.
	time.Sleep(2 * time.Second)
	rtts, errors := f.probes.end()
	return heartbeatResult{WindowS: window.Seconds(), RatePerS: rate, Asked: asked, Skipped: skipped, Errors: errors, RoundTrip: summarise(rtts)}
}

// lookupResult: Lookup of random online peers, `inflight` calls at a time over `connections`
// registered clients' connections, for each protocol.
type lookupResult struct {
	Connections int                             `json:"connections"`
	InFlight    int                             `json:"inFlight"`
	Seconds     float64                         `json:"seconds"`
	Protocols   map[string]lookupProtocolResult `json:"protocols"`
	Error       string                          `json:"error,omitempty"`
}

type lookupProtocolResult struct {
	Calls          int64            `json:"calls"`
	CallsPerS      float64          `json:"callsPerS"`
	Errors         map[string]int64 `json:"errors"`
	Latency        latencies        `json:"latency"`
	ServerCPUPerUs int64            `json:"serverCpuPerCallUs"`
	ServerCPUShare float64          `json:"serverCpuCores"`
}

func runLookups(ctx context.Context, s *server, f *fleet, url string, roots *x509.CertPool, ids []identity, perAddress, inflight int, seconds time.Duration) (lookupResult, error) {
	result := lookupResult{Connections: len(ids), InFlight: inflight, Seconds: seconds.Seconds(), Protocols: map[string]lookupProtocolResult{}}
	counters := newCounters()
	transports := make([]*http.Transport, len(ids))
	for i, id := range ids {
		// Source addresses after the peers'.
		transports[i] = newTransport(id, sourceAddress(len(f.peers)+i*perAddress, perAddress), roots, counters)
		defer transports[i].CloseIdleConnections()
		client := relayv1connect.NewRelayServiceClient(&http.Client{Transport: transports[i]}, url, connect.WithGRPC())
		if err := registerWithRetry(ctx, client, id); err != nil {
			return result, err
		}
	}
	emails := make([]string, 0, len(f.peers))
	for _, p := range f.peers {
		if p.onlineSince.Load() != 0 {
			emails = append(emails, p.id.email)
		}
	}
	if len(emails) == 0 {
		return result, fmt.Errorf("no peer online to look up")
	}
	for _, protocol := range []string{"grpc", "connect"} {
		options := []connect.ClientOption{}
		if protocol == "grpc" {
			options = append(options, connect.WithGRPC())
		}
		clients := make([]relayv1connect.RelayServiceClient, len(ids))
		for i := range ids {
			clients[i] = relayv1connect.NewRelayServiceClient(&http.Client{Transport: transports[i]}, url, options...)
		}
		// One second of warm-up, then the measured window.
		driveLookups(ctx, clients, emails, inflight, time.Second)
		cpuBefore := s.cpuMicros()
		calls, codes, latency := driveLookups(ctx, clients, emails, inflight, seconds)
		cpu := s.cpuMicros() - cpuBefore
		result.Protocols[protocol] = lookupProtocolResult{
			Calls:          calls,
			CallsPerS:      float64(int64(float64(calls)/seconds.Seconds()*10)) / 10,
			Errors:         codes,
			Latency:        latency,
			ServerCPUPerUs: cpu / max(calls, 1),
			ServerCPUShare: float64(int64(float64(cpu)/seconds.Seconds()/1e4)) / 100,
		}
	}
	return result, nil
}

func registerWithRetry(ctx context.Context, client relayv1connect.RelayServiceClient, id identity) error {
	var err error
	for attempt := 0; attempt < 8 && ctx.Err() == nil; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = client.Register(callCtx, connect.NewRequest(&relayv1.RegisterRequest{CertificatePem: id.certificatePEM, Email: id.email}))
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(backoff(attempt, retryAfter(err)))
	}
	return fmt.Errorf("failed to register lookup client %s: %w", id.email, err)
}

func driveLookups(ctx context.Context, clients []relayv1connect.RelayServiceClient, emails []string, inflight int, window time.Duration) (int64, map[string]int64, latencies) {
	runCtx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var calls atomic.Int64
	var mu sync.Mutex
	codes := map[string]int64{}
	var all []time.Duration
	var wg sync.WaitGroup
	for g := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := clients[g%len(clients)]
			var mine []time.Duration
			for runCtx.Err() == nil {
				start := time.Now()
				callCtx, cancelCall := context.WithTimeout(runCtx, callTimeout)
				_, err := client.Lookup(callCtx, connect.NewRequest(&relayv1.LookupRequest{Email: emails[rand.IntN(len(emails))]}))
				cancelCall()
				if runCtx.Err() != nil {
					break // cut off by the end of the window: not a call of the window
				}
				if err != nil {
					mu.Lock()
					codes[connect.CodeOf(err).String()]++
					mu.Unlock()
					continue
				}
				calls.Add(1)
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return calls.Load(), codes, summarise(all)
}

// restartResult: the server killed with SIGKILL and started again at once on the same port;
// every peer finds its stream broken and comes back through its presence loop.
type restartResult struct {
	// From the kill until the old process was reaped: the kernel has freed its memory and closed
	// its sockets, and the new process is started.
	ReapedMs float64 `json:"reapedMs"`
	// From the kill until the new process has its listening socket (the kernel's socket table).
	ListenMs float64 `json:"listenMs"`
	// From the kill until a probe TCP connection of the load generator's was accepted into the
	// backlog: later than ListenMs by however long the reconnecting peers keep the backlog full.
	AcceptMs float64 `json:"acceptMs"`
	AllBack  bool    `json:"allBack"`
	Back     int     `json:"back"`
	// From the kill until the last peer's new heartbeat stream was answered.
	Ms float64 `json:"ms"`
	// TCP connection attempts per peer, in all and after the new process listened.
	AttemptsPerPeer            float64 `json:"attemptsPerPeer"`
	AttemptsPerPeerAfterListen float64 `json:"attemptsPerPeerAfterListen"`
	// Share of the new TLS handshakes that resumed a session from before the restart.
	ResumedShare float64          `json:"resumedShare"`
	Errors       map[string]int64 `json:"errors"`
}

func runRestart(ctx context.Context, s *server, f *fleet, listenTimeout, timeout time.Duration) (restartResult, error) {
	n := len(f.peers)
	dials, handshakes, resumed := f.counters.dials.Load(), f.counters.handshakes.Load(), f.counters.resumed.Load()
	killedAt := time.Now()
	s.kill()
	reapedMs := ms(time.Since(killedAt))
	if err := s.start(); err != nil {
		return restartResult{}, err
	}
	if err := s.waitListening(listenTimeout); err != nil {
		return restartResult{}, err
	}
	listenMs := ms(time.Since(killedAt))
	dialsAtListen := f.counters.dials.Load()
	acceptMs := 0.0
	if err := s.waitAccepting(listenTimeout); err == nil {
		acceptMs = ms(time.Since(killedAt))
	}
	deadline := killedAt.Add(timeout)
	back := 0
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if back = f.online(killedAt.UnixNano()); back == n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(killedAt)
	newHandshakes := f.counters.handshakes.Load() - handshakes
	return restartResult{
		ReapedMs:                   reapedMs,
		ListenMs:                   listenMs,
		AcceptMs:                   acceptMs,
		AllBack:                    back == n,
		Back:                       back,
		Ms:                         ms(elapsed),
		AttemptsPerPeer:            ratio(f.counters.dials.Load()-dials, int64(n)),
		AttemptsPerPeerAfterListen: ratio(f.counters.dials.Load()-dialsAtListen, int64(n)),
		ResumedShare:               ratio(f.counters.resumed.Load()-resumed, newHandshakes),
		Errors:                     f.counters.errorCodes(),
	}, nil
}

// heapSnapshot asks a node started with --heapsnapshot-signal=SIGUSR2 for a heap snapshot.
func heapSnapshot(s *server, wait time.Duration) {
	s.signal(syscall.SIGUSR2)
	time.Sleep(wait)
	fmt.Fprintf(os.Stderr, "loadgen: asked %s for a heap snapshot\n", s.name)
}
