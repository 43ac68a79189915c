package main

import (
	"strings"
	"testing"
)

// TestCheckFlags: values the server would silently turn into its defaults
// (--idle-timeout 0 waited 10 minutes, --auth-fail-window 0 15 minutes,
// --max-auth-failures 0 allowed 10, --max-conns 0 1000), negative
// timeouts the server refused without naming the flag, a negative
// --login-cache read as "every login is checked" and half a TLS pair are
// refused, from the command line and from the environment alike, with the
// flag named.
func TestCheckFlags(t *testing.T) {
	base := []string{"pop3d", "--listen", "127.0.0.1:0"}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" for accepted
	}{
		{name: "defaults"},
		{name: "idle-timeout 0", args: []string{"--idle-timeout", "0s"}, wantErr: "--idle-timeout 0s"},
		{name: "idle-timeout negative", args: []string{"--idle-timeout", "-1m"}, wantErr: "--idle-timeout -1m0s"},
		{name: "db-timeout 0 from env", env: map[string]string{"TWINMX_POP3D_DB_TIMEOUT": "0s"}, wantErr: "--db-timeout 0s"},
		{name: "db-timeout negative", args: []string{"--db-timeout", "-1s"}, wantErr: "--db-timeout -1s"},
		{name: "db-timeout 1s", args: []string{"--db-timeout", "1s"}},
		{name: "auth-fail-window 0", args: []string{"--auth-fail-window", "0s"}, wantErr: "--auth-fail-window 0s"},
		{name: "auth-fail-window negative", args: []string{"--auth-fail-window", "-15m"}, wantErr: "--auth-fail-window -15m0s"},
		{name: "max-auth-failures 0", args: []string{"--max-auth-failures", "0"}, wantErr: "--max-auth-failures 0"},
		{name: "max-auth-failures -1 is no limit", args: []string{"--max-auth-failures", "-1"}},
		{name: "max-conns 0", args: []string{"--max-conns", "0"}, wantErr: "--max-conns 0"},
		{name: "max-conns -1 is no limit", args: []string{"--max-conns", "-1"}},
		{name: "max-conns-per-ip 0 from env", env: map[string]string{"TWINMX_POP3D_MAX_CONNS_PER_IP": "0"}, wantErr: "--max-conns-per-ip 0"},
		{name: "login-cache negative", args: []string{"--login-cache", "-1s"}, wantErr: "--login-cache -1s"},
		{name: "login-cache 0 is every login checked", args: []string{"--login-cache", "0"}},
		{name: "auth-fail-delay 0 is none", args: []string{"--auth-fail-delay", "0"}},
		{name: "auth-fail-delay negative is none", args: []string{"--auth-fail-delay", "-1s"}},
		{name: "tls-cert alone", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-key go together"},
		{name: "tls-key alone from env", env: map[string]string{"TWINMX_POP3D_TLS_KEY": "k.pem"}, wantErr: "--tls-key go together"},
		{name: "tls pair and self-signed", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-self-signed"}, wantErr: "--tls-self-signed"},
		{name: "tls pair", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}},
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
