package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one target's process: started from a command, killed and restarted by the
// load generator, its memory and CPU read from /proc.
type server struct {
	name string
	argv []string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	// Where a node target started with bench/memory-probe.js writes its memory on SIGWINCH.
	memoryFile string
	// What a node target started with bench/listen-probe.js writes once it listens on port.
	listenFile string
}

func newServer(name, template string, port int) *server {
	argv := strings.Fields(strings.ReplaceAll(template, "{port}", strconv.Itoa(port)))
	memoryFile := filepath.Join(os.TempDir(), fmt.Sprintf("relay-loadgen-memory-%d-%d.json", os.Getpid(), port))
	listenFile := filepath.Join(os.TempDir(), fmt.Sprintf("relay-loadgen-listening-%d-%d", os.Getpid(), port))
	return &server{name: name, argv: argv, port: port, memoryFile: memoryFile, listenFile: listenFile}
}

func (s *server) start() error {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "RELAY_BENCH_MEMORY_FILE="+s.memoryFile, "RELAY_BENCH_LISTEN_FILE="+s.listenFile, "RELAY_BENCH_LISTEN_PORT="+strconv.Itoa(s.port))
	os.Remove(s.listenFile)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", s.name, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	return nil
}

// waitListening polls until the process reports that it listens on the port (bench/listen-probe.ts
// writes listenFile from the server's 'listening' event), or the process exits, or timeout. Not a
// TCP connect: after a restart thousands of peers reconnect into the listen backlog the moment the
// server listens, and a probe connection queued behind them (or dropped with the backlog full)
// times how long the backlog takes to drain, not the start-up. Nor the kernel's socket table:
// /proc/net/tcp takes longer to read the more connections the machine holds (about a second
// behind the process's own record of its start-up with 10,000 peers reconnecting).
func (s *server) waitListening(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before listening", s.name)
		default:
		}
		if _, err := os.Stat(s.listenFile); err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s did not report listening on port %d within %s (started without bench/listen-probe.js?)", s.name, s.port, timeout)
}

// waitAccepting polls until a TCP connection to the port is accepted by the kernel (it completes
// its handshake into the listen backlog), or the process exits, or timeout: what a peer dialing
// in sees, backlog included.
func (s *server) waitAccepting(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before accepting", s.name)
		default:
		}
		conn, err := net.DialTimeout("tcp", address, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s accepted no connection on %s within %s", s.name, address, timeout)
}

func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop asks for a graceful stop (SIGTERM: profiles get written), then kills after grace.
func (s *server) stop(grace time.Duration) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(grace):
		s.kill()
	}
}

func (s *server) signal(sig syscall.Signal) { s.cmd.Process.Signal(sig) }

// memoryProbe is what bench/memory-probe.ts writes: process.memoryUsage() and V8's heap spaces,
// bytes.
type memoryProbe struct {
	Rss          int64            `json:"rss"`
	HeapTotal    int64            `json:"heapTotal"`
	HeapUsed     int64            `json:"heapUsed"`
	External     int64            `json:"external"`
	ArrayBuffers int64            `json:"arrayBuffers"`
	Spaces       map[string]int64 `json:"spaces"`
}

// probeMemory asks the target for its memory (SIGWINCH) and waits up to a second for the answer;
// nil when the target does not answer (not started with bench/memory-probe.js).
func (s *server) probeMemory() *memoryProbe {
	os.Remove(s.memoryFile)
	s.signal(syscall.SIGWINCH)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(s.memoryFile)
		if err != nil || !bytes.HasSuffix(data, []byte("\n")) {
			continue
		}
		var probe memoryProbe
		if json.Unmarshal(data, &probe) == nil {
			return &probe
		}
	}
	return nil
}

// rssKiB is VmRSS from /proc/<pid>/status, the process's and its children's.
func (s *server) rssKiB() int64 {
	total := rssKiBOf(s.cmd.Process.Pid)
	for _, child := range childrenOf(s.cmd.Process.Pid) {
		total += rssKiBOf(child)
	}
	return total
}

func rssKiBOf(pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kib
		}
	}
	return 0
}

// clockTicks is the kernel's USER_HZ: /proc/<pid>/stat counts CPU time in these.
const clockTicks = 100

// cpuMicros is user + system CPU time of the process and its children (the workers of
// `relay --workers`) from /proc/<pid>/stat, µs.
func (s *server) cpuMicros() int64 {
	total := cpuMicrosOf(s.cmd.Process.Pid)
	for _, child := range childrenOf(s.cmd.Process.Pid) {
		total += cpuMicrosOf(child)
	}
	return total
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, entry := range entries {
		child, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if parent, _ := strconv.Atoi(fields[1]); parent == pid {
			children = append(children, child)
		}
	}
	return children
}

// selfCPUMicros is the load generator's own CPU time, µs.
func selfCPUMicros() int64 { return cpuMicrosOf(os.Getpid()) }

func cpuMicrosOf(pid int) int64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return (utime + stime) * 1_000_000 / clockTicks
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}
