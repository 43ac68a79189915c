// Package backupdtest holds what backupd's tests share (for tests only):
// a loopback TCP proxy that stands between backupd and a dbd and can cut
// the link (drop every connection and refuse new ones) or stall it (stop
// forwarding bytes, keep the connections) and heal it; canonical dumps; test
// mails stored as smtpd stores them; and a random workload whose
// acknowledged writes are checked after convergence.
package backupdtest

import (
	"net"
	"sync"
	"testing"
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
	conns  map[net.Conn]struct{}
	resume chan struct{} // closed when a stall ends
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
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
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

// Set changes the mode. Cut closes every open connection.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	if p.mode == Stall {
		close(p.resume)
	}
	p.mode = m
	switch m {
	case Stall:
		p.resume = make(chan struct{})
	case Cut:
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

// copy forwards from src to dst, waiting out stalls between reads.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			<-resume
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: serve closes both ends
		}
	}
}
