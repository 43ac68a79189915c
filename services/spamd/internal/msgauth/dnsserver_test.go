package msgauth

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// testZone is the data of a loopback DNS server: records by owner name,
// names that answer SERVFAIL, and a count of the questions asked. It is
// safe for concurrent use (the server answers from many goroutines).
type testZone struct {
	mu       sync.Mutex
	rrs      map[string][]dns.RR // lower-case FQDN → records
	servfail map[string]bool
	asked    map[string]int // "name TYPE" → count
}

func newTestZone() *testZone {
	return &testZone{rrs: map[string][]dns.RR{}, servfail: map[string]bool{}, asked: map[string]int{}}
}

func hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(strings.ToLower(name)), Rrtype: typ, Class: dns.ClassINET, Ttl: 60}
}

func (z *testZone) add(rr dns.RR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	name := rr.Header().Name
	z.rrs[name] = append(z.rrs[name], rr)
}

// TXT adds a TXT record, split into 255-byte strings as a zone file would
// (RFC 1035 §3.3.14); resolvers join them again.
func (z *testZone) TXT(name, value string) {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	z.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: parts})
}

func (z *testZone) A(name, ip string) {
	z.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: net.ParseIP(ip).To4()})
}

func (z *testZone) AAAA(name, ip string) {
	z.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.ParseIP(ip)})
}

func (z *testZone) MX(name, host string) {
	z.add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 10, Mx: dns.Fqdn(host)})
}

// ServFail makes every question about name answer SERVFAIL.
func (z *testZone) ServFail(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.servfail[dns.Fqdn(strings.ToLower(name))] = true
}

// Asked returns how many questions of names containing substr were asked.
func (z *testZone) Asked(substr string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for k, v := range z.asked {
		if strings.Contains(k, substr) {
			n += v
		}
	}
	return n
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.asked[name+" "+dns.TypeToString[q.Qtype]]++
	rrs, exists := z.rrs[name]
	fail := z.servfail[name]
	z.mu.Unlock()
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case !exists:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	_ = w.WriteMsg(m)
}

// dnsServer is a DNS server on a random loopback UDP port.
type dnsServer struct {
	Addr string
	srv  *dns.Server
	once sync.Once
}

// startDNS serves z on 127.0.0.1; the server stops at test cleanup.
func startDNS(t *testing.T, z *testZone) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	started := make(chan struct{})
	s := &dnsServer{Addr: pc.LocalAddr().String()}
	s.srv = &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- s.srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		<-done
	})
	return s
}

// Stop shuts the server down; its port then refuses queries.
func (s *dnsServer) Stop(t *testing.T) {
	t.Helper()
	s.once.Do(func() {
		if err := s.srv.Shutdown(); err != nil {
			t.Errorf("dns server shutdown: %v", err)
		}
	})
}
