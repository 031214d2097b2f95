// Command relay-loadgen puts a relay, and beside it a bare server of the same stack (the floor),
// under the load of many peers, each with its own Ed25519 certificate and its own TLS
// connection from its own loopback source address, each running the client library's presence
// loop. It starts each target's process itself (so it can read its memory and CPU from /proc,
// and kill and restart it), runs the phases in order, and prints one JSON line of figures.
//
//	relay-loadgen -peers 1000 -ca relay-cert.pem \
//	  -target 'relay=node --import tsx src/server/main.ts --listen 127.0.0.1:{port} ...' \
//	  -target 'floor=node --import tsx bench/floor-server.ts --listen 127.0.0.1:{port} ...'
//
// Phases (-phases): storm (every peer starts at once against a fresh process), memory (RSS per
// connected peer), heartbeat (round trips at a steady probe rate), lookup (gRPC, then Connect,
// `-lookup-inflight` calls over `-lookup-connections` connections), restart (SIGKILL, start
// again, time until every peer is back). Every phase is bounded in time, the whole run by
// -max-seconds. Loopback only: targets listen on 127.0.0.1, peers connect from 127.0.1.1 upwards,
// -peers-per-address on each.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type targetFlag []string

func (t *targetFlag) String() string     { return strings.Join(*t, ", ") }
func (t *targetFlag) Set(v string) error { *t = append(*t, v); return nil }

type options struct {
	peers             int
	caFile            string
	phases            []string
	stormTimeout      time.Duration
	settle            time.Duration
	heartbeatWindow   time.Duration
	heartbeatRate     int
	lookupSeconds     time.Duration
	lookupInflight    int
	lookupConnections int
	restartTimeout    time.Duration
	listenTimeout     time.Duration
	heapSnapshot      bool
	perAddress        int
}

type targetResult struct {
	Name string `json:"name"`
	// From exec until the process accepted connections.
	StartMs   float64          `json:"startMs"`
	Storm     *stormResult     `json:"storm,omitempty"`
	Memory    *memoryResult    `json:"memory,omitempty"`
	// The same figures again after the heartbeat window, when both phases run: what the heap kept
	// or gave back while the peers idled (V8's memory reducer, when on, runs in a long window).
	MemoryAfterHeartbeat *memoryResult `json:"memoryAfterHeartbeat,omitempty"`
	Heartbeat *heartbeatResult `json:"heartbeat,omitempty"`
	Lookup    *lookupResult    `json:"lookup,omitempty"`
	Restart   *restartResult   `json:"restart,omitempty"`
	Error     string           `json:"error,omitempty"`
	Seconds   float64          `json:"seconds"`
}

type report struct {
	Peers   int            `json:"peers"`
	CPUs    int            `json:"cpus"`
	Go      string         `json:"go"`
	At      string         `json:"at"`
	Phases  []string       `json:"phases"`
	Targets []targetResult `json:"targets"`
}

func main() {
	var targets targetFlag
	var o options
	var phases string
	var maxSeconds int
	flag.IntVar(&o.peers, "peers", 1000, "simulated peers (1-20000), each with its own certificate and connection")
	flag.Var(&targets, "target", "name=command to start a target; {port} is replaced by the port it must listen on (repeat: relay, floor)")
	flag.StringVar(&o.caFile, "ca", "", "PEM of the targets' TLS certificate, to trust")
	flag.StringVar(&phases, "phases", "storm,memory,heartbeat,lookup,restart", "phases to run, in this order (storm is always first)")
	flag.DurationVar(&o.stormTimeout, "storm-timeout", 150*time.Second, "longest wait for every peer to come online in the storm")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "pause before reading memory")
	flag.DurationVar(&o.heartbeatWindow, "heartbeat-window", 30*time.Second, "length of the heartbeat round-trip window")
	flag.IntVar(&o.heartbeatRate, "heartbeat-rate", 100, "heartbeats per second asked of random online peers")
	flag.DurationVar(&o.lookupSeconds, "lookup-seconds", 10*time.Second, "length of each Lookup window (one per protocol)")
	flag.IntVar(&o.lookupInflight, "lookup-inflight", 64, "Lookup calls in flight")
	flag.IntVar(&o.lookupConnections, "lookup-connections", 4, "connections (registered clients) the Lookup calls share")
	flag.DurationVar(&o.restartTimeout, "restart-timeout", 150*time.Second, "longest wait for every peer to be back after the kill")
	flag.DurationVar(&o.listenTimeout, "listen-timeout", 60*time.Second, "longest wait for a target process to listen")
	flag.BoolVar(&o.heapSnapshot, "heap-snapshot", false, "send SIGUSR2 after the storm and memory phases (a node target started with --heapsnapshot-signal=SIGUSR2 writes a heap snapshot)")
	flag.IntVar(&o.perAddress, "peers-per-address", 8, "peers sharing one source address (127.0.1.1 upwards), as behind a NAT")
	flag.IntVar(&maxSeconds, "max-seconds", 570, "bound on the whole run; targets are killed when it passes")
	flag.Parse()
	o.phases = strings.Split(phases, ",")
	if o.peers < 1 || o.peers > 20000 || len(targets) == 0 || o.caFile == "" || o.heartbeatRate < 1 || o.lookupInflight < 1 || o.lookupConnections < 1 || o.perAddress < 1 || (o.peers+o.lookupConnections)/o.perAddress > 254*254 {
		fmt.Fprintln(os.Stderr, "relay-loadgen: -peers 1-20000, -ca and at least one -target are required")
		os.Exit(2)
	}
	caPEM, err := os.ReadFile(o.caFile)
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail(fmt.Errorf("no certificate in %s", o.caFile))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(maxSeconds)*time.Second)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// One set of identities for every target: the same certificates meet the relay and the floor.
	started := time.Now()
	ids := make([]identity, o.peers+o.lookupConnections)
	for i := range ids {
		email := fmt.Sprintf("peer-%05d@scale.example", i)
		if i >= o.peers {
			email = fmt.Sprintf("lookup-%d@scale.example", i-o.peers)
		}
		if ids[i], err = newIdentity(email); err != nil {
			fail(err)
		}
	}
	fmt.Fprintf(os.Stderr, "loadgen: %d identities in %s\n", len(ids), time.Since(started).Round(time.Millisecond))

	out := report{Peers: o.peers, CPUs: runtime.NumCPU(), Go: runtime.Version(), At: time.Now().UTC().Format(time.RFC3339), Phases: o.phases}
	for _, spec := range targets {
		name, command, ok := strings.Cut(spec, "=")
		if !ok {
			fail(fmt.Errorf("-target %q is not name=command", spec))
		}
		result := runTarget(ctx, name, command, o, ids, roots)
		out.Targets = append(out.Targets, result)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func runTarget(ctx context.Context, name, command string, o options, ids []identity, roots *x509.CertPool) (result targetResult) {
	result.Name = name
	began := time.Now()
	defer func() { result.Seconds = ms(time.Since(began)) / 1000 }()
	port, err := freePort()
	if err != nil {
		result.Error = err.Error()
		return result
	}
	s := newServer(name, command, port)
	if err := s.start(); err != nil {
		result.Error = err.Error()
		return result
	}
	defer s.stop(15 * time.Second)
	if err := s.waitListening(o.listenTimeout); err != nil {
		result.Error = err.Error()
		return result
	}
	result.StartMs = ms(time.Since(began))
	time.Sleep(time.Second) // let start-up work (module loading, GC) settle before the baseline
	baseline := s.rssKiB()
	baselineProbe := s.probeMemory()
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "loadgen: %s: %s\n", name, fmt.Sprintf(format, args...))
	}

	peersCtx, stopPeers := context.WithCancel(ctx)
	f := newFleet(ids[:o.peers], url, roots, o.perAddress)
	defer f.stop(10 * time.Second)
	defer stopPeers()

	storm := runStorm(peersCtx, s, f, o.stormTimeout)
	result.Storm = &storm
	log("storm: %d/%d online in %.1f s, %.2f attempts per peer, %d µs server CPU per peer (server %.2f cores, load generator %.2f)", storm.Online, o.peers, storm.Ms/1000, storm.AttemptsPerPeer, storm.ServerCPUPerPeerUs, storm.ServerCores, storm.LoadgenCores)
	if slices.Contains(o.phases, "memory") && ctx.Err() == nil {
		memory := measureMemory(s, f, baseline, baselineProbe, o.settle)
		result.Memory = &memory
		log("memory: %d KiB RSS, %.1f KiB per connected peer (%d)", memory.RssKiB, memory.PerPeerKiB, memory.Connected)
		if split := memory.PerPeer; split != nil {
			log("memory per peer: heap used %.1f KiB (heap total %.1f), external %.1f KiB (ArrayBuffers %.1f), native %.1f KiB", split.HeapUsedKiB, split.HeapTotalKiB, split.ExternalKiB, split.ArrayBuffersKiB, split.NativeKiB)
		}
	}
	// After the memory phase: writing a snapshot runs a full GC and allocates, which would move
	// the RSS read above.
	if o.heapSnapshot {
		heapSnapshot(s, 15*time.Second)
	}
	if slices.Contains(o.phases, "heartbeat") && ctx.Err() == nil {
		heartbeat := runHeartbeats(ctx, f, o.heartbeatWindow, o.heartbeatRate)
		result.Heartbeat = &heartbeat
		log("heartbeat: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d", heartbeat.RoundTrip.P50, heartbeat.RoundTrip.P99, heartbeat.RoundTrip.Max, heartbeat.RoundTrip.Count)
		if result.Memory != nil && ctx.Err() == nil {
			after := measureMemory(s, f, baseline, baselineProbe, 0)
			result.MemoryAfterHeartbeat = &after
			log("memory after the heartbeat window: %d KiB RSS, %.1f KiB per connected peer (%d)", after.RssKiB, after.PerPeerKiB, after.Connected)
			if split := after.PerPeer; split != nil {
				log("memory per peer after the heartbeat window: heap used %.1f KiB (heap total %.1f), external %.1f KiB (ArrayBuffers %.1f), native %.1f KiB", split.HeapUsedKiB, split.HeapTotalKiB, split.ExternalKiB, split.ArrayBuffersKiB, split.NativeKiB)
			}
		}
	}
	if slices.Contains(o.phases, "lookup") && ctx.Err() == nil {
		lookup, err := runLookups(ctx, s, f, url, roots, ids[o.peers:], o.perAddress, o.lookupInflight, o.lookupSeconds)
		if err != nil {
			// Recorded, and the run goes on: the restart phase does not need it.
			lookup.Error = err.Error()
		}
		result.Lookup = &lookup
		for protocol, figures := range lookup.Protocols {
			log("lookup %s: %.0f calls/s, %d µs server CPU per call", protocol, figures.CallsPerS, figures.ServerCPUPerUs)
		}
	}
	if slices.Contains(o.phases, "restart") && ctx.Err() == nil {
		restart, err := runRestart(ctx, s, f, o.listenTimeout, o.restartTimeout)
		result.Restart = &restart
		if err != nil {
			result.Error = err.Error()
			return result
		}
		log("restart: reaped after %.1f s, listening after %.1f s (a probe connection accepted after %.1f s), %d/%d back after %.1f s, %.2f attempts per peer, %.0f%% resumed", restart.ReapedMs/1000, restart.ListenMs/1000, restart.AcceptMs/1000, restart.Back, o.peers, restart.Ms/1000, restart.AttemptsPerPeer, restart.ResumedShare*100)
	}
	if ctx.Err() != nil {
		result.Error = "stopped: " + context.Cause(ctx).Error()
	}
	return result
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "relay-loadgen: %v\n", err)
	os.Exit(1)
}
