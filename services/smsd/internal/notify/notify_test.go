package notify

import (
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/twinmx/twinmx/pkg/model"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Sent.WithLabelValues("sms").Inc()
	m.Failed.WithLabelValues("sms").Inc()
	m.Retries.WithLabelValues("sms").Inc()
	m.TakenOver.WithLabelValues("sms").Inc()
	m.Decisions.WithLabelValues("sms", "done").Inc()
	m.Gateway.WithLabelValues("http", "ok").Observe(1)
	m.Errors.WithLabelValues("watch").Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func TestMailInfo(t *testing.T) {
	h := []byte("From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Customer.Example>\r\nSubject: =?utf-8?q?Server_l=C3=A4uft_nicht?=\r\n" +
		"Content-Type: multipart/alternative; boundary=xx\r\n\r\n")
	b := []byte("preamble\r\n--xx\r\nContent-Type: text/html\r\n\r\n<p>no</p>\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n\r\n  Bitte =C3=BCberpr=\r\n=C3=BCfen  \r\nmore\r\n--xx--\r\n")
	from, subj := headerInfo(h)
	if from != "juergen@customer.example" || subj != "Server läuft nicht" {
		t.Errorf("headerInfo = %q, %q", from, subj)
	}
	if l := firstLine(h, b); l != "Bitte überprüfen" {
		t.Errorf("firstLine = %q", l)
	}
	h64 := []byte("From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	if l := firstLine(h64, []byte("SGVsbG8g\r\nd29ybGQK\r\n")); l != "Hello world" {
		t.Errorf("firstLine(base64) = %q", l)
	}
}

func TestReadyAndAckTime(t *testing.T) {
	rk := model.KeyOf(model.Received, []byte("r"))
	st := model.State{Cols: map[string]uint64{
		model.ColAcknowledged:    model.FlagSet,
		model.ColVerdict:         model.EncodeVerdict(model.SourceFilter, 5, model.Accept),
		model.ReceivedColumn(rk): 1_780_000_000_000,
	}}
	if !ready(st) {
		t.Error("acknowledged and accepted row is not ready")
	}
	if at, ok := ackTime(st); !ok || at.UnixMilli() != 1_780_000_000_000 {
		t.Errorf("ackTime = %v, %v", at, ok)
	}
	st.Cols[model.ColVerdict] = model.EncodeVerdict(model.SourceOperator, 6, model.Reject)
	if ready(st) {
		t.Error("rejected row is ready")
	}
	delete(st.Cols, model.ColAcknowledged)
	st.Cols[model.ColVerdict] = model.EncodeVerdict(model.SourceFilter, 5, model.Accept)
	if ready(st) {
		t.Error("unacknowledged row is ready")
	}
	if kindSMS.doneCol("+491") == kindSMS.doneCol("+492") || model.CheckName(kindForward.doneCol("a@b.example")) != nil {
		t.Error("confirmation columns collide or are not valid names")
	}
	_ = time.Now
}

// TestMailInfoControls: control characters from an encoded-word subject
// or a body line (NUL, ESC, DEL, C1) do not reach the SMS text. A NUL
// made the command gateway's exec fail on every try.
func TestMailInfoControls(t *testing.T) {
	h := []byte("From: a@b.example\r\nSubject: =?utf-8?q?x=00y=1B[31mz=7F=C2=85w?=\r\n\r\n")
	_, subj := headerInfo(h)
	if strings.ContainsFunc(subj, unicode.IsControl) || subj != "x y [31mz  w" {
		t.Errorf("headerInfo subject = %q", subj)
	}
	if l := firstLine([]byte("From: a@b\r\n\r\n"), []byte("\r\n\x00\r\nhi\x00there\x1b\r\n")); l != "hi there" {
		t.Errorf("firstLine = %q, want %q", l, "hi there")
	}
}
