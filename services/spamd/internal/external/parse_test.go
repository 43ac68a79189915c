package external

import (
	"errors"
	"slices"
	"testing"
)

func TestParseSpamdResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Result
		wantErr error
	}{
		{"check spam", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.3 / 5.0\r\n\r\n",
			Result{Score: 7.3, Threshold: 5, Spam: true, Engine: "spamassassin"}, nil},
		{"check ham negative", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.9 / 5.0\r\n\r\n",
			Result{Score: -1.9, Threshold: 5, Engine: "spamassassin"}, nil},
		{"symbols", "SPAMD/1.1 0 EX_OK\r\nContent-length: 26\r\nSpam: Yes ; 1002.1 / 5.0\r\n\r\nGTUBE,MISSING_DATE,NO_RECE",
			Result{Score: 1002.1, Threshold: 5, Spam: true, Engine: "spamassassin", Rules: []string{"GTUBE", "MISSING_DATE", "NO_RECE"}}, nil},
		{"symbols trailing crlf, lf lines", "SPAMD/1.5 0 EX_OK\nSpam: no ; 0.0 / 5.0\n\nA,B\r\n",
			Result{Threshold: 5, Engine: "spamassassin", Rules: []string{"A", "B"}}, nil},
		{"header case", "SPAMD/1.1 0 EX_OK\r\nspam: TRUE;5/5\r\n\r\n",
			Result{Score: 5, Threshold: 5, Spam: true, Engine: "spamassassin"}, nil},
		{"error reply", "SPAMD/1.0 76 Bad header line: (EOF)\r\n", Result{}, &SpamdError{}},
		{"empty", "", Result{}, ErrMalformed},
		{"http instead", "HTTP/1.1 200 OK\r\n\r\n", Result{}, ErrMalformed},
		{"no spam header", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", Result{}, ErrMalformed},
		{"header not ended", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.3 / 5.0\r\n", Result{}, ErrMalformed},
		{"verdict maybe", "SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 7.3 / 5.0\r\n\r\n", Result{}, ErrMalformed},
		{"no threshold", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.3\r\n\r\n", Result{}, ErrMalformed},
		{"nan score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n", Result{}, ErrMalformed},
		{"two spam headers", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7 / 5\r\nSpam: False ; 0 / 5\r\n\r\n", Result{}, ErrMalformed},
		{"short body", "SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\nSpam: True ; 7 / 5\r\n\r\nABC", Result{}, ErrMalformed},
		{"bad code", "SPAMD/1.1 x EX_OK\r\n", Result{}, ErrMalformed},
		{"line without colon", "SPAMD/1.1 0 EX_OK\r\nSpam True\r\n\r\n", Result{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSpamdResponse([]byte(tt.in))
			if !sameErr(err, tt.wantErr) || !equalResult(got, tt.want) {
				t.Errorf("parseSpamdResponse(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseRspamdResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Result
		wantErr error
	}{
		{"add header", `{"is_skipped":false,"score":7.4,"required_score":15.0,"action":"add header","symbols":{"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1},"R_SPF_FAIL":{"name":"R_SPF_FAIL","score":1}},"message-id":"x@y"}`,
			Result{Score: 7.4, Threshold: 15, Spam: true, Engine: "rspamd", Rules: []string{"BAYES_SPAM", "R_SPF_FAIL"}}, nil},
		{"no action", `{"is_skipped":false,"score":-0.5,"required_score":15,"action":"no action","symbols":{}}`,
			Result{Score: -0.5, Threshold: 15, Engine: "rspamd"}, nil},
		{"reject", `{"score":20.1,"required_score":15,"action":"reject"}`,
			Result{Score: 20.1, Threshold: 15, Spam: true, Engine: "rspamd"}, nil},
		{"greylist is not spam", `{"score":6,"required_score":15,"action":"greylist"}`,
			Result{Score: 6, Threshold: 15, Engine: "rspamd"}, nil},
		{"skipped", `{"is_skipped":true,"score":0,"required_score":0,"action":"no action"}`, Result{}, ErrSkipped},
		{"missing score", `{"required_score":15,"action":"reject"}`, Result{}, ErrMalformed},
		{"missing action", `{"score":1,"required_score":15}`, Result{}, ErrMalformed},
		{"unknown action", `{"score":1,"required_score":15,"action":"discard"}`, Result{}, ErrMalformed},
		{"string score", `{"score":"1","required_score":15,"action":"reject"}`, Result{}, ErrMalformed},
		{"truncated", `{"score":1,"required_sc`, Result{}, ErrMalformed},
		{"not json", `<html>502 Bad Gateway</html>`, Result{}, ErrMalformed},
		{"empty", ``, Result{}, ErrMalformed},
		{"error object", `{"error":"cannot parse input"}`, Result{}, errRspamd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRspamdResponse([]byte(tt.in))
			if !sameErr(err, tt.wantErr) || !equalResult(got, tt.want) {
				t.Errorf("parseRspamdResponse(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// errRspamd stands for "some error that is neither sentinel".
var errRspamd = errors.New("any other error")

func sameErr(err, want error) bool {
	switch {
	case want == nil:
		return err == nil
	case want == errRspamd:
		return err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSkipped)
	default:
		var se *SpamdError
		if _, ok := want.(*SpamdError); ok {
			return errors.As(err, &se)
		}
		return errors.Is(err, want)
	}
}

func equalResult(a, b Result) bool {
	return a.Score == b.Score && a.Threshold == b.Threshold && a.Spam == b.Spam &&
		a.Engine == b.Engine && slices.Equal(a.Rules, b.Rules)
}

// FuzzParseSpamdResponse: any bytes give a result or an error, never a
// panic, and a result always has finite scores.
func FuzzParseSpamdResponse(f *testing.F) {
	f.Add([]byte("SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 7.3 / 5.0\r\n\r\nA,B,C"))
	f.Add([]byte("SPAMD/1.0 76 Bad header line: (EOF)\r\n"))
	f.Add([]byte("SPAMD/1.1 0 EX_OK\nspam: no;-1e308/1e-308\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := parseSpamdResponse(in)
		if err == nil && (bad(res.Score) || bad(res.Threshold) || res.Engine != "spamassassin") {
			t.Fatalf("parseSpamdResponse(%q) = %+v without error", in, res)
		}
	})
}

// FuzzParseRspamdResponse: as FuzzParseSpamdResponse, for rspamd's JSON.
func FuzzParseRspamdResponse(f *testing.F) {
	f.Add([]byte(`{"is_skipped":false,"score":7.4,"required_score":15.0,"action":"add header","symbols":{"A":{}}}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"score":1e999,"required_score":15,"action":"reject"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := parseRspamdResponse(in)
		if err == nil && (bad(res.Score) || bad(res.Threshold) || res.Engine != "rspamd") {
			t.Fatalf("parseRspamdResponse(%q) = %+v without error", in, res)
		}
	})
}
