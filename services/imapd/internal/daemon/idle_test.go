package daemon

import (
	"net"
	"testing"
	"time"
)

// TestIdleKeepaliveClientGone: a keepalive that cannot be written during
// IDLE is the client gone (the command counts as an error, as other
// failed writes do), not a dbd failure: before, the write error went to
// the command's error mapping as one, counted in errors_total{kind=
// "dbd"} and logged as a failed command.
func TestIdleKeepaliveClientGone(t *testing.T) {
	conns := make(chan *countingConn, 1)
	k := startWith(t, func(c *Config) {
		c.IdleKeepalive = 20 * time.Millisecond
		c.onConn = func(cc *countingConn) { conns <- cc }
	})
	k.deliver(mail(1))
	r, _ := k.loginSelect()
	cc := <-conns
	r.send("i IDLE\r\n")
	r.until("+ ")
	// imapd's side stops writing (its reads go on, so IDLE keeps running
	// until a keepalive fails to go out).
	if err := cc.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	failed := func() bool {
		return counterValue(t, k, "twinmx_imapd_commands_total", map[string]string{"command": "idle", "result": "error"}) > 0
	}
	for i := 0; i < 1000 && !failed(); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if !failed() {
		t.Fatal("no IDLE failed after its connection stopped taking writes")
	}
	if v := counterValue(t, k, "twinmx_imapd_errors_total", map[string]string{"kind": "dbd"}); v != 0 {
		t.Errorf("errors_total{kind=dbd} = %v after a keepalive could not be written, want 0", v)
	}
	noPanics(t, k.reg)
}

// counterValue is the value of the counter name with the labels (0 when
// it was never counted).
func counterValue(t *testing.T, k *kit, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := k.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
