// Package backupdtest holds what backupd's tests share (for tests only):
// a loopback TCP proxy that stands between backupd and a dbd and can cut
// the link (drop every connection and refuse new ones), stall it (stop
// forwarding bytes, keep the connections) or delay it (forward every chunk
// of bytes a fixed time after it arrived) and heal it; canonical dumps; test
// mails stored as smtpd stores them; and a random workload whose
// acknowledged writes are checked after convergence.
package backupdtest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Mode is what the proxy does with traffic.
type Mode int

// Modes.
const (
	Pass  Mode = iota // forward
	Cut               // close every connection, refuse new ones
	Stall             // keep connections, forward nothing
)

// Proxy forwards 127.0.0.1 connections to a target. Safe for concurrent use.
type Proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	mode   Mode
	delay  time.Duration // added to every chunk read from now on
	rate   int           // bytes a second each direction forwards at most (0: no bound)
	conns  map[net.Conn]struct{}
	resume chan struct{} // closed when a stall ends
	cut    chan struct{} // closed when the link is cut
	wg     sync.WaitGroup
}

// Start listens on a free 127.0.0.1 port and forwards to target until the
// test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, resume: make(chan struct{}), cut: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections go (a restarted dbd).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// SetDelay makes the proxy forward each chunk of bytes it reads from now
// on d after it read it, in both directions, keeping their order (0: at
// once). It is latency, not a bandwidth limit: chunks read meanwhile are
// queued. Chunks already queued keep their time. It is independent of
// the mode (a stall holds delayed chunks too; a cut drops them).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetRate bounds how fast the proxy forwards, in bytes a second in each
// direction of each connection (0: no bound): a slow link, where SetDelay
// is a far one.
func (p *Proxy) SetRate(bytesPerSecond int) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

// Set changes the mode. Cut closes every open connection.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	switch p.mode {
	case Stall:
		close(p.resume)
	case Cut:
		p.cut = make(chan struct{})
	}
	p.mode = m
	switch m {
	case Stall:
		p.resume = make(chan struct{})
	case Cut:
		close(p.cut)
		for c := range p.conns {
			c.Close()
		}
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Set(Cut)
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode, target := p.mode, p.target
		if mode == Cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c, target)
	}
}

func (p *Proxy) serve(c net.Conn, target string) {
	defer p.wg.Done()
	defer p.forget(c)
	u, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.mode == Cut {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2)
	go func() { p.copy(u, c); done <- struct{}{} }()
	go func() { p.copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// copy forwards from src to dst, each chunk after its delay, waiting out
// stalls. It returns when src fails and what it read is written, or when
// dst fails or the link is cut.
func (p *Proxy) copy(dst, src net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	// The queue bounds the bytes in flight (64 chunks of 32 KiB); beyond
	// it the reader waits, and TCP pushes back on the sender.
	q := make(chan chunk, 64)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for ch := range q {
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			if d := time.Until(ch.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-cut:
					t.Stop()
					return
				}
			}
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			select {
			case <-resume:
			case <-cut:
				return
			}
			if _, err := dst.Write(ch.b); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(q)
		<-written
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			due := time.Now().Add(p.delay)
			rate := p.rate
			p.mu.Unlock()
			if rate > 0 {
				// Reading no faster than the rate leaves the rest in the
				// sender's socket, as a slow link does: the sender's
				// writes wait, and so does whatever it sends after.
				time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
			}
			select {
			case q <- chunk{buf[:n], due}:
			case <-written:
				return // dst failed or the link was cut
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: serve closes both ends
		}
	}
}
