// Package proctest holds what every black-box test of a twinmx program
// needs: building the real binaries, a dbd run as an operator runs it
// (DB), loopback ports, waiting for a process to listen, a log buffer a
// process writes while the test reads, and the memory and CPU time of a
// process. Every service's test package shares it. It is for tests only.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinmx/twinmx/pkg/wire"
)

// Build builds each program (name -> package path, as `go build` takes it)
// into a new temporary folder and returns the folder. The caller removes it.
//
// If the environment names a folder of programs built from this tree
// already (PrebuiltEnv; `make test` builds them once for all the
// black-box suites, which otherwise each linked their own, a minute of
// CI's two cores), they are linked into the new folder instead.
func Build(prefix string, programs map[string]string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if pre := os.Getenv(PrebuiltEnv); pre != "" {
		if err := linkPrebuilt(pre, dir, programs); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		return dir, nil
	}
	// One go build for all programs: it links them in parallel (a go
	// build a program linked one after the other).
	names := slices.Sorted(maps.Keys(programs))
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, name := range names {
		args = append(args, programs[name])
	}
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build %s: %w", strings.Join(names, ", "), err)
	}
	// go build names each program after its package's folder.
	for _, name := range names {
		if base := filepath.Base(programs[name]); base != name {
			if err := os.Rename(filepath.Join(dir, base), filepath.Join(dir, name)); err != nil {
				os.RemoveAll(dir)
				return "", fmt.Errorf("build %s: %w", name, err)
			}
		}
	}
	return dir, nil
}

// PrebuiltEnv names the environment variable of Build's prebuilt
// programs: a folder with one binary for each program, named after its
// package's folder as `go build -o DIR/` names them.
const PrebuiltEnv = "TWINMX_TEST_BIN"

// linkPrebuilt puts the prebuilt program of each entry of programs into
// dir under its name: a hard link (the program's own path stays in dir),
// or a copy across file systems.
func linkPrebuilt(pre, dir string, programs map[string]string) error {
	for name, pkg := range programs {
		src, dst := filepath.Join(pre, filepath.Base(pkg)), filepath.Join(dir, name)
		if err := os.Link(src, dst); err == nil {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("%s=%s: program %s: %w", PrebuiltEnv, pre, name, err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return fmt.Errorf("copy prebuilt %s: %w", name, err)
		}
	}
	return nil
}

// FreePort returns a loopback address that was free a moment ago. Services
// get fixed ports so that a restarted process keeps its address.
//
// The port is drawn at random below the kernel's ephemeral range (where
// it lies, read from Linux's ip_local_port_range), not asked of the kernel
// with port 0: a port the kernel hands out is an ephemeral one, and once
// this function closes its listener the kernel may hand it again to any
// process's outgoing connection before the test's server binds it (CI
// saw a Postfix under test fail with "Address already in use"). Outgoing
// connections never take a port below the range. Where the range cannot
// be read or leaves too little room, port 0 is used as before.
func FreePort(t testing.TB) string {
	t.Helper()
	return FreePortOn(t, "127.0.0.1")
}

// FreePortOn is FreePort on another loopback address, e.g. "::1".
func FreePortOn(t testing.TB, host string) string {
	t.Helper()
	if low := ephemeralLow(); low-minPort >= 1000 {
		for range 100 {
			port := minPort + rand.IntN(low-minPort)
			if _, taken := handedOut.LoadOrStore(port, true); taken {
				continue
			}
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr
			}
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// handedOut holds the ports FreePort returned in this process, so it
// never returns one twice (a test may take two before it binds either, or
// keep one unbound as an address where nothing listens). Process-wide on
// purpose: the ports are.
var handedOut sync.Map

// minPort keeps FreePort above the ports of well-known and registered
// services a developer's machine may run (up to 10000 covers the usual
// ones: databases, caches, proxies).
const minPort = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 0 if it is unknown (not Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}

// WaitListening polls addr until it accepts a connection, for at most
// limit; then it fails the test, showing log.
func WaitListening(t testing.TB, addr string, limit time.Duration, log fmt.Stringer) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s after %s; log:\n%s", addr, limit, log)
}

// SyncBuffer is a bytes.Buffer a process writes to while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// PeakRSS returns the peak resident set (VmHWM) of process pid in bytes.
func PeakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("read peak memory: %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read peak memory: no VmHWM in /proc/%d/status", pid)
}

// clockTicks is the unit of /proc/PID/stat's CPU times: USER_HZ, 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// CPUTime returns the CPU time (user + system) the process pid has used.
// Benchmarks read it before and after a run to say which process the
// run's time went to. It sums the run time of the process's threads in
// nanoseconds (/proc/PID/task/*/schedstat), because /proc/PID/stat counts
// in steps of 10 ms: a FETCH that costs a server 0.06 s was read to
// within a sixth. A thread that has ended is not in that sum (Go
// programs keep their threads, Dovecot's processes have one), so where
// the kernel keeps no schedstat, or the sum is below what /proc/PID/stat
// says by more than its step, the latter is returned.
func CPUTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	coarse, err := ticks(f[11:13]) // utime, stime
	if err != nil {
		return 0, err
	}
	if fine, ok := threadsRunTime(pid); ok && fine > coarse-time.Second/clockTicks {
		return fine, nil
	}
	return coarse, nil
}

// threadsRunTime sums the first field of each thread's schedstat: the
// time it ran, in nanoseconds.
func threadsRunTime(pid int) (time.Duration, bool) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(files) == 0 {
		return 0, false
	}
	var sum int64
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += n
	}
	return time.Duration(sum), true
}

// TreeCPUTime returns the CPU time used so far by pid and all its
// descendants: the live ones' own time, and the time of those that ended
// and were waited for (each process's cutime and cstime), so that a
// server whose workers come and go (Postfix's master) is counted whole.
func TreeCPUTime(pid int) (time.Duration, error) {
	var sum time.Duration
	for _, p := range Tree(pid) {
		f, err := statFields(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // ended meanwhile: its parent's cutime has it
		}
		d, err := ticks(f[11:15]) // utime, stime, cutime, cstime
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// statFields returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is the first).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("read CPU time: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("read CPU time: short /proc/%d/stat", pid)
	}
	return f, nil
}

// ticks sums clock-tick fields.
func ticks(fields []string) (time.Duration, error) {
	var n int64
	for _, v := range fields {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time: %w", err)
		}
		n += t
	}
	return time.Duration(n) * time.Second / clockTicks, nil
}

// Tree returns pid and its live descendants (from /proc).
func Tree(pid int) []int {
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := statFields(p); err == nil {
			pp, _ := strconv.Atoi(f[1])
			kids[pp] = append(kids[pp], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		out = append(out, p)
		for _, k := range kids[p] {
			walk(k)
		}
	}
	walk(pid)
	return out
}

// Ctx returns a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// RecordingConn is a net.Conn that keeps a copy of every byte written to
// it: a client's side of a session, to replay it later.
type RecordingConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *RecordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// Sent returns a copy of the bytes written so far.
func (c *RecordingConn) Sent() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// ReplayRecorded sends a recorded client side of a dbd session (from a
// RecordingConn) to dbd at addr as one write and returns what dbd sent
// back before it ended the connection. dbd must end it (a connection it
// keeps for 20 s fails the test), and must send at most message 2 of the
// handshake: a replay is never served. what names the step in failures.
func ReplayRecorded(t testing.TB, addr string, session []byte, what string) []byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(session); err != nil {
		t.Fatalf("%s: send the recording: %v", what, err)
	}
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: dbd kept the replayed connection open", what)
	}
	if len(got) > wire.LengthSize+wire.Msg2Size {
		t.Fatalf("%s: dbd sent %d bytes, more than message 2", what, len(got))
	}
	return got
}
