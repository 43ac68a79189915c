package main

import (
	"strings"
	"testing"
)

// TestCheckFlags: values the daemon would silently turn into its defaults
// (--max-conns 0 ran with 1000, --max-auth-failures 0 with 10,
// --auth-fail-window 0 with 15 min, --append-memory 0 with 256 MiB) or
// read as "off" where the help says nothing of it (a negative
// --auth-fail-window turned the login-failure limit off; a negative
// --cache-mb, --body-cache-mb, --compress-sessions or --login-cache was
// "none"), a --pre-auth-timeout go-imap caps at 30 s, --cache-mb and
// --body-cache-mb that overflow into bytes (2^43 MiB became no cache,
// 2^44 MiB the default) and half a TLS pair are refused, from the command
// line and from the environment alike, with the flag named.
func TestCheckFlags(t *testing.T) {
	base := []string{"imapd", "--listen", "127.0.0.1:0"}
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" for accepted
	}{
		{name: "defaults"},
		{name: "auth-fail-window negative", args: []string{"--auth-fail-window", "-1m"}, wantErr: "--auth-fail-window -1m0s"},
		{name: "auth-fail-window 0", args: []string{"--auth-fail-window", "0s"}, wantErr: "--auth-fail-window 0s"},
		{name: "auth-fail-window negative from env", env: map[string]string{"TWINMX_IMAPD_AUTH_FAIL_WINDOW": "-15m"}, wantErr: "--auth-fail-window -15m0s"},
		{name: "auth-fail-window 1h", args: []string{"--auth-fail-window", "1h"}},
		{name: "max-auth-failures 0", args: []string{"--max-auth-failures", "0"}, wantErr: "--max-auth-failures 0"},
		{name: "max-auth-failures -1 is no limit", args: []string{"--max-auth-failures", "-1"}},
		{name: "db-timeout 0", args: []string{"--db-timeout", "0s"}, wantErr: "--db-timeout 0s"},
		{name: "db-timeout negative", args: []string{"--db-timeout", "-1s"}, wantErr: "--db-timeout -1s"},
		{name: "pre-auth-timeout 0", args: []string{"--pre-auth-timeout", "0s"}, wantErr: "--pre-auth-timeout 0s"},
		{name: "pre-auth-timeout negative", args: []string{"--pre-auth-timeout", "-5s"}, wantErr: "--pre-auth-timeout -5s"},
		{name: "pre-auth-timeout over go-imap's", args: []string{"--pre-auth-timeout", "1m"}, wantErr: "--pre-auth-timeout 1m0s"},
		{name: "pre-auth-timeout 10s", args: []string{"--pre-auth-timeout", "10s"}},
		{name: "login-cache negative", args: []string{"--login-cache", "-1s"}, wantErr: "--login-cache -1s"},
		{name: "login-cache 0 is every login checked", args: []string{"--login-cache", "0s"}},
		{name: "auth-fail-delay 0 is none", args: []string{"--auth-fail-delay", "0s"}},
		{name: "auth-fail-delay negative is none", args: []string{"--auth-fail-delay", "-1s"}},
		{name: "max-conns 0", args: []string{"--max-conns", "0"}, wantErr: "--max-conns 0"},
		{name: "max-conns -1 is no limit", args: []string{"--max-conns", "-1"}},
		{name: "max-conns-per-ip 0 from env", env: map[string]string{"TWINMX_IMAPD_MAX_CONNS_PER_IP": "0"}, wantErr: "--max-conns-per-ip 0"},
		{name: "append-memory 0", args: []string{"--append-memory", "0"}, wantErr: "--append-memory 0"},
		{name: "append-memory negative", args: []string{"--append-memory", "-1"}, wantErr: "--append-memory -1"},
		{name: "append-memory-per-account 0", args: []string{"--append-memory-per-account", "0"}, wantErr: "--append-memory-per-account 0"},
		{name: "append-memory-per-account -1 is no share", args: []string{"--append-memory-per-account", "-1"}},
		{name: "cache-mb 0 is none", args: []string{"--cache-mb", "0"}},
		{name: "cache-mb negative", args: []string{"--cache-mb", "-1"}, wantErr: "--cache-mb -1"},
		{name: "cache-mb overflows to negative", args: []string{"--cache-mb", "8796093022208"}, wantErr: "--cache-mb 8796093022208"},
		{name: "cache-mb overflows to 0 from env", env: map[string]string{"TWINMX_IMAPD_CACHE_MB": "17592186044416"}, wantErr: "--cache-mb 17592186044416"},
		{name: "cache-mb large", args: []string{"--cache-mb", "8796093022207"}},
		{name: "body-cache-mb 0 is none", args: []string{"--body-cache-mb", "0"}},
		{name: "body-cache-mb negative", args: []string{"--body-cache-mb", "-1"}, wantErr: "--body-cache-mb -1"},
		{name: "body-cache-mb overflows", args: []string{"--body-cache-mb", "8796093022208"}, wantErr: "--body-cache-mb 8796093022208"},
		{name: "body-cache-mb over the arena's index", args: []string{"--body-cache-mb", "2048"}, wantErr: "--body-cache-mb 2048"},
		{name: "body-cache-mb 2047", args: []string{"--body-cache-mb", "2047"}},
		{name: "compress-sessions 0 is not offered", args: []string{"--compress-sessions", "0"}},
		{name: "compress-sessions negative", args: []string{"--compress-sessions", "-1"}, wantErr: "--compress-sessions -1"},
		{name: "tls-cert alone", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-key go together"},
		{name: "tls-key alone from env", env: map[string]string{"TWINMX_IMAPD_TLS_KEY": "k.pem"}, wantErr: "--tls-key go together"},
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

// TestCacheBytes: --cache-mb 0 turns the cache off (daemon.Config reads 0
// as the default), any other value is MiB.
func TestCacheBytes(t *testing.T) {
	for _, c := range []struct{ mb, want int64 }{{0, -1}, {1, 1 << 20}, {64, 64 << 20}, {maxCacheMB, maxCacheMB << 20}} {
		if got := cacheBytes(c.mb); got != c.want {
			t.Errorf("cacheBytes(%d) = %d, want %d", c.mb, got, c.want)
		}
	}
}
