package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestPrefixes(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"127.0.0.0/8", "::1/128"}, "[127.0.0.0/8 ::1/128]"},
		{[]string{""}, "[]"}, // --conn-rate-exempt "": nobody exempt
		{[]string{" 192.0.2.7 ", "2001:db8::1"}, "[192.0.2.7/32 2001:db8::1/128]"},
		{[]string{"10.1.2.3/8"}, "[10.0.0.0/8]"},
	} {
		got, err := prefixes(c.in)
		if err != nil || got == nil || fmt.Sprint(got) != c.want {
			t.Errorf("prefixes(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
	if _, err := prefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix was accepted")
	}
	if _, err := prefixes([]string{"mx.example"}); err == nil {
		t.Error("a host name was accepted")
	}
}

// TestCheckFlags: values the daemon would silently turn into its defaults
// (--min-copies 0 ran strict, --decision-window 0 waited 20 s, a timeout 0
// took the default), a negative --db-timeout (every dbd request failed at
// once: 451 for every mail), a zero limit (--max-conns 0 ran with 1000,
// --capture-max 0 kept 256 KiB), a negative size and half a TLS pair are
// refused, from the
// command line and from the environment alike, with the flag named.
func TestCheckFlags(t *testing.T) {
	base := []string{"smtpd", "--listen", "127.0.0.1:0", "--hostname", "mx.test"}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" for accepted
	}{
		{name: "defaults"},
		{name: "degraded", args: []string{"--min-copies", "1"}},
		{name: "min-copies 0", args: []string{"--min-copies", "0"}, wantErr: "--min-copies 0"},
		{name: "min-copies 3", args: []string{"--min-copies", "3"}, wantErr: "--min-copies 3"},
		{name: "min-copies -1", args: []string{"--min-copies", "-1"}, wantErr: "--min-copies -1"},
		{name: "min-copies 0 from env", env: map[string]string{"TWINMX_SMTPD_MIN_COPIES": "0"}, wantErr: "--min-copies 0"},
		{name: "window 0", args: []string{"--decision-window", "0s"}, wantErr: "--decision-window 0s"},
		{name: "window negative", args: []string{"--decision-window", "-1s"}, wantErr: "--decision-window -1s"},
		{name: "window beyond the sender's timeout", args: []string{"--decision-window", "10m"}, wantErr: "--decision-window 10m0s"},
		{name: "window 0 from env", env: map[string]string{"TWINMX_SMTPD_DECISION_WINDOW": "0s"}, wantErr: "--decision-window 0s"},
		{name: "window 9m", args: []string{"--decision-window", "9m"}},
		{name: "db-timeout negative", args: []string{"--db-timeout", "-1s"}, wantErr: "--db-timeout -1s"},
		{name: "db-timeout 0", args: []string{"--db-timeout", "0s"}, wantErr: "--db-timeout 0s"},
		{name: "idle-timeout 0", args: []string{"--idle-timeout", "0s"}, wantErr: "--idle-timeout 0s"},
		{name: "data-timeout negative from env", env: map[string]string{"TWINMX_SMTPD_DATA_TIMEOUT": "-3m"}, wantErr: "--data-timeout -3m0s"},
		{name: "session-timeout 0", args: []string{"--session-timeout", "0s"}, wantErr: "--session-timeout 0s"},
		{name: "tls-cert alone", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-key go together"},
		{name: "tls-key alone from env", env: map[string]string{"TWINMX_SMTPD_TLS_KEY": "k.pem"}, wantErr: "--tls-key go together"},
		{name: "tls pair and self-signed", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-self-signed"}, wantErr: "--tls-self-signed"},
		{name: "tls pair", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}},
		{name: "max-size 0", args: []string{"--max-size", "0"}, wantErr: "--max-size 0"},
		{name: "max-size negative", args: []string{"--max-size", "-1"}, wantErr: "--max-size -1"},
		{name: "max-recipients 0", args: []string{"--max-recipients", "0"}, wantErr: "--max-recipients 0"},
		{name: "max-recipients negative from env", env: map[string]string{"TWINMX_SMTPD_MAX_RECIPIENTS": "-5"}, wantErr: "--max-recipients -5"},
		{name: "data-memory negative", args: []string{"--data-memory", "-1"}, wantErr: "--data-memory -1"},
		{name: "data-memory 0 is the default", args: []string{"--data-memory", "0"}},
		{name: "max-conns 0", args: []string{"--max-conns", "0"}, wantErr: "--max-conns 0"},
		{name: "max-conns -1 is no limit", args: []string{"--max-conns", "-1"}},
		{name: "max-conns-per-ip 0 from env", env: map[string]string{"TWINMX_SMTPD_MAX_CONNS_PER_IP": "0"}, wantErr: "--max-conns-per-ip 0"},
		{name: "capture-max 0", args: []string{"--capture-max", "0"}, wantErr: "--capture-max 0"},
		{name: "capture-max -1 is off", args: []string{"--capture-max", "-1"}},
		{name: "max-header-size 0", args: []string{"--max-header-size", "0"}, wantErr: "--max-header-size 0"},
		{name: "max-hops 0", args: []string{"--max-hops", "0"}, wantErr: "--max-hops 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			app := newApp()
			app.Action = checkFlags
			err := app.Run(append(append([]string(nil), base...), c.args...))
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("checkFlags(%q) = %v, want nil", c.args, err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("checkFlags(%q) = %v, want an error naming %q", c.args, err, c.wantErr)
			}
		})
	}
}

// TestCheckReplayFlags: `smtpd replay --wait 0` failed every session with
// an i/o timeout (its deadlines lay in the past), and --last 0 played
// nothing and exited 0 as if all had matched. Both are refused before
// anything is read or sent.
func TestCheckReplayFlags(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "defaults", args: []string{"--to", "127.0.0.1:2525"}},
		{name: "wait 0", args: []string{"--to", "127.0.0.1:2525", "--wait", "0s"}, wantErr: "--wait 0s"},
		{name: "wait negative", args: []string{"--to", "127.0.0.1:2525", "--wait", "-1s"}, wantErr: "--wait -1s"},
		{name: "last 0", args: []string{"--to", "127.0.0.1:2525", "--last", "0"}, wantErr: "--last 0"},
		{name: "no port", args: []string{"--to", "mx.example"}, wantErr: "--to \"mx.example\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := newApp()
			cmd := app.Command("replay")
			cmd.Action = checkReplayFlags
			err := app.Run(append([]string{"smtpd", "replay"}, c.args...))
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("replay %q: %v, want nil", c.args, err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("replay %q: %v, want an error naming %q", c.args, err, c.wantErr)
			}
		})
	}
}

// FuzzPrefixes: --conn-rate-exempt's parser never panics, and what it
// returns is masked prefixes only (the guard compares masked keys).
func FuzzPrefixes(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "::1/128", "", " 192.0.2.7 ", "10.1.2.3/8", "10.0.0.0/33", "mx.example", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := prefixes([]string{s})
		if err != nil {
			return
		}
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("prefixes(%q) holds %v", s, p)
			}
		}
	})
}
