package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// probeRecorder collects heartbeat round trips while the heartbeat phase is recording.
type probeRecorder struct {
	mu        sync.Mutex
	recording bool
	rtts      []time.Duration
	errors    int64
}

func (r *probeRecorder) begin() {
	r.mu.Lock()
	r.recording, r.rtts, r.errors = true, nil, 0
	r.mu.Unlock()
}

func (r *probeRecorder) end() ([]time.Duration, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recording = false
	return r.rtts, r.errors
}

func (r *probeRecorder) record(rtt time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.recording {
		return
	}
	if err != nil {
		r.errors++
		return
	}
	r.rtts = append(r.rtts, rtt)
}

// latencies summarises durations in milliseconds.
type latencies struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

func summarise(values []time.Duration) latencies {
	if len(values) == 0 {
		return latencies{}
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	at := func(q float64) float64 {
		i := min(len(sorted)-1, int(math.Floor(q*float64(len(sorted)))))
		return ms(sorted[i])
	}
	return latencies{Count: len(sorted), P50: at(0.50), P99: at(0.99), Max: ms(sorted[len(sorted)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(float64(a)/float64(b)*1000) / 1000
}
