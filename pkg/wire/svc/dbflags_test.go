package svc

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire"
)

// dbFlagVars are every variable DBFlags reads for the prefixes below.
var dbFlagVars = []string{"TWINMX_DB", "TWINMX_DB_PUB", "TWINMX_KEY",
	"TWINMX_SMTPD_DB", "TWINMX_SMTPD_DB_PUB", "TWINMX_SMTPD_KEY"}

// parseDBFlags runs an app with DBFlags(prefix) with only the variables
// of kv (name, value, ...) set and returns the three values it saw.
func parseDBFlags(t *testing.T, prefix string, kv ...string) (db, pub, key string) {
	t.Helper()
	for _, k := range dbFlagVars {
		// Unset, not empty: urfave/cli takes the first variable that
		// is present, even if empty. t.Setenv restores it afterwards.
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for i := 0; i < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
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
	for _, tc := range []struct {
		name         string
		prefix       string
		env          []string
		db, pub, key string
	}{
		{"own variables", "TWINMX_SMTPD", []string{"TWINMX_SMTPD_DB", "a:1", "TWINMX_SMTPD_DB_PUB", "a.pub", "TWINMX_SMTPD_KEY", "smtpd"}, "a:1", "a.pub", "smtpd"},
		{"site-wide address and public key", "TWINMX_SMTPD", []string{"TWINMX_DB", "s:1", "TWINMX_DB_PUB", "s.pub"}, "s:1", "s.pub", ""},
		{"own variables before the site-wide ones", "TWINMX_SMTPD", []string{"TWINMX_DB", "s:1", "TWINMX_SMTPD_DB", "a:1", "TWINMX_DB_PUB", "s.pub", "TWINMX_SMTPD_DB_PUB", "a.pub"}, "a:1", "a.pub", ""},
		{"the admin key of the shell is not a service's", "TWINMX_SMTPD", []string{"TWINMX_KEY", "admin"}, "", "", ""},
		{"operator tools", AdminEnv, []string{"TWINMX_DB", "s:1", "TWINMX_DB_PUB", "s.pub", "TWINMX_KEY", "admin"}, "s:1", "s.pub", "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, pub, key := parseDBFlags(t, tc.prefix, tc.env...)
			if db != tc.db || pub != tc.pub || key != tc.key {
				t.Fatalf("db %q, db-pub %q, key %q; want %q, %q, %q", db, pub, key, tc.db, tc.pub, tc.key)
			}
		})
	}
}

func TestDBKeys(t *testing.T) {
	for _, k := range []string{"TWINMX_DB", "TWINMX_DB_PUB", "TWINMX_TEST_DB", "TWINMX_TEST_DB_PUB", "TWINMX_TEST_KEY"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	client, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	server, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, dbdFile := filepath.Join(dir, "smtpd.key"), filepath.Join(dir, "dbd.key")
	if err := wire.WriteKeyFiles(keyFile, client); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteKeyFiles(dbdFile, server); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (wire.KeyPair, wire.PublicKey, error) {
		var kp wire.KeyPair
		var pub wire.PublicKey
		app := &cli.App{
			Flags: DBFlags("TWINMX_TEST", "smtpd"),
			Action: func(c *cli.Context) (err error) {
				kp, pub, err = DBKeys(c)
				return err
			},
		}
		err := app.RunContext(context.Background(), append([]string{"prog"}, args...))
		return kp, pub, err
	}
	kp, pub, err := run("--db", "127.0.0.1:1", "--db-pub", dbdFile+".pub", "--key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if kp.Public != client.Public || pub != server.Public {
		t.Fatalf("loaded keys %v, %v; want %v, %v", kp.Public, pub, client.Public, server.Public)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--db-pub", dbdFile + ".pub", "--key", keyFile}, "--db is required"},
		{[]string{"--db", "127.0.0.1:1", "--key", keyFile}, "--db-pub is required"},
		{[]string{"--db", "127.0.0.1:1", "--db-pub", dbdFile + ".pub"}, "--key is required"},
		{[]string{"--db", "127.0.0.1:1", "--db-pub", keyFile, "--key", keyFile}, "dbd public key"},
		{[]string{"--db", "127.0.0.1:1", "--db-pub", dbdFile + ".pub", "--key", dbdFile + ".pub"}, "client key"},
	} {
		if _, _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
