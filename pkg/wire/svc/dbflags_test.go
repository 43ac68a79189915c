package svc

import (
	"context"
	"os"
	"testing"

	"github.com/urfave/cli/v2"
)

// parseDBFlags runs an app with DBFlags(prefix) under env and returns the
// three values it saw.
func parseDBFlags(t *testing.T, prefix string, env map[string]string) (db, pub, key string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
		if v == "" {
			// Unset, not empty: urfave/cli takes the first variable
			// that is present, even if empty.
			os.Unsetenv(k)
		}
	}
	app := &cli.App{
		Flags: DBFlags(prefix, "smtpd"),
		Action: func(c *cli.Context) error {
			db, pub, key = c.String("db"), c.String("db-pub"), c.String("key")
			return nil
		},
	}
	if err := app.RunContext(context.Background(), []string{"prog"}); err != nil {
		t.Fatal(err)
	}
	return db, pub, key
}

func TestDBFlagsEnvironment(t *testing.T) {
	// Every variable DBFlags reads is set here, so none leaks in from
	// the test's own environment.
	unset := map[string]string{"TWINMX_DB": "", "TWINMX_DB_PUB": "", "TWINMX_KEY": "",
		"TWINMX_SMTPD_DB": "", "TWINMX_SMTPD_DB_PUB": "", "TWINMX_SMTPD_KEY": ""}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range unset {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name         string
		prefix       string
		env          map[string]string
		db, pub, key string
	}{
		{"own variables", "TWINMX_SMTPD", with("TWINMX_SMTPD_DB", "a:1", "TWINMX_SMTPD_DB_PUB", "a.pub", "TWINMX_SMTPD_KEY", "smtpd"), "a:1", "a.pub", "smtpd"},
		{"site-wide address and public key", "TWINMX_SMTPD", with("TWINMX_DB", "s:1", "TWINMX_DB_PUB", "s.pub"), "s:1", "s.pub", ""},
		{"own variables before the site-wide ones", "TWINMX_SMTPD", with("TWINMX_DB", "s:1", "TWINMX_SMTPD_DB", "a:1", "TWINMX_DB_PUB", "s.pub", "TWINMX_SMTPD_DB_PUB", "a.pub"), "a:1", "a.pub", ""},
		{"the admin key of the shell is not a service's", "TWINMX_SMTPD", with("TWINMX_KEY", "admin"), "", "", ""},
		{"operator tools", AdminEnv, with("TWINMX_DB", "s:1", "TWINMX_DB_PUB", "s.pub", "TWINMX_KEY", "admin"), "s:1", "s.pub", "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, pub, key := parseDBFlags(t, tc.prefix, tc.env)
			if db != tc.db || pub != tc.pub || key != tc.key {
				t.Fatalf("db %q, db-pub %q, key %q; want %q, %q, %q", db, pub, key, tc.db, tc.pub, tc.key)
			}
		})
	}
}
