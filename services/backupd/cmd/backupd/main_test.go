package main

import (
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire"
)

// writeKey writes a fresh key pair to dir/name and dir/name.pub.
func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	kp, err := wire.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := wire.WriteKeyFiles(path, kp); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfig: TWINMX_BACKUPD_SITES with two spaces between sites or one
// at the end (docs/backupd.md: "separate several sites with spaces") was
// refused as a malformed site `site ""`; an empty --key passed the
// required-flag check and failed as "open : no such file". Both, and the
// other problems of --site and --key, are reported with the flag named.
func TestConfig(t *testing.T) {
	dir := t.TempDir()
	a, b, key := writeKey(t, dir, "a")+".pub", writeKey(t, dir, "b")+".pub", writeKey(t, dir, "backupd")
	siteA, siteB := "A=127.0.0.1:7301,"+a, "B=127.0.0.1:7302,"+b
	for _, c := range []struct {
		name      string
		args      []string
		env       map[string]string
		wantErr   string // "" for accepted
		wantSites int
	}{
		{name: "two sites", args: []string{"--site", siteA, "--site", siteB, "--key", key}, wantSites: 2},
		{name: "sites from env", args: []string{"--key", key}, env: map[string]string{"TWINMX_BACKUPD_SITES": siteA + " " + siteB}, wantSites: 2},
		{name: "two spaces in env", args: []string{"--key", key}, env: map[string]string{"TWINMX_BACKUPD_SITES": siteA + "  " + siteB}, wantSites: 2},
		{name: "trailing space in env", args: []string{"--key", key}, env: map[string]string{"TWINMX_BACKUPD_SITES": " " + siteA + " " + siteB + " "}, wantSites: 2},
		{name: "one site", args: []string{"--site", siteA, "--key", key}, wantErr: "--site: 1 given, need at least 2"},
		{name: "only spaces in env", args: []string{"--key", key}, env: map[string]string{"TWINMX_BACKUPD_SITES": "   "}, wantErr: "--site: 0 given"},
		{name: "malformed site", args: []string{"--site", siteA, "--site", "B=127.0.0.1," + b, "--key", key}, wantErr: "--site: site B"},
		{name: "empty key", args: []string{"--site", siteA, "--site", siteB, "--key", ""}, wantErr: "--key is required"},
		{name: "key file missing", args: []string{"--site", siteA, "--site", siteB, "--key", filepath.Join(dir, "none")}, wantErr: "--key: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			app := newApp()
			var sites int
			app.Action = func(ctx *cli.Context) error {
				cfg, err := config(ctx)
				sites = len(cfg.Sites)
				return err
			}
			err := app.Run(append([]string{"backupd"}, c.args...))
			switch {
			case c.wantErr == "" && (err != nil || sites != c.wantSites):
				t.Errorf("config(%q) = %d sites, %v; want %d sites, nil", c.args, sites, err, c.wantSites)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("config(%q) = %v, want an error naming %q", c.args, err, c.wantErr)
			}
		})
	}
}
