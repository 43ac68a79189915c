package svc

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The hand-written units of deploy/systemd must carry the same sandbox as
// the generated ones, and pass systemd-analyze verify.
func TestDeployUnits(t *testing.T) {
	files, err := filepath.Glob("../../../deploy/systemd/twinmx-*.service")
	if err != nil {
		t.Fatal(err)
	}
	var programs []string
	for _, f := range files {
		programs = append(programs, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "twinmx-"), ".service"))
	}
	slices.Sort(programs)
	want := []string{"backupd", "dbd", "imapd", "pop3d", "smsd", "smtpd", "spamd"}
	if !slices.Equal(programs, want) {
		t.Fatalf("units for %q, want %q", programs, want)
	}
	lowPorts := map[string]bool{"smtpd": true, "pop3d": true, "imapd": true}
	for _, f := range files {
		p := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "twinmx-"), ".service")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := string(b)
		must := append(slices.Clone(Hardening), "Type=notify", "Restart=on-failure", "User=twinmx",
			"ExecStart=/usr/local/bin/"+p, "EnvironmentFile=/etc/twinmx/"+p+".env")
		if lowPorts[p] {
			must = append(must, "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE")
		} else {
			must = append(must, "CapabilityBoundingSet=")
		}
		for _, l := range must {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(l) + `$`).MatchString(u) {
				t.Errorf("%s lacks the line %q", filepath.Base(f), l)
			}
		}
		if rw := regexp.MustCompile(`(?m)^ReadWritePaths=.*$`).FindAllString(u, -1); p == "dbd" && !slices.Equal(rw, []string{"ReadWritePaths=/var/lib/twinmx/dbd"}) ||
			p != "dbd" && len(rw) > 0 {
			t.Errorf("%s: writable paths %q (only dbd writes, to its store)", filepath.Base(f), rw)
		}
		if !lowPorts[p] && strings.Contains(u, "AmbientCapabilities") {
			t.Errorf("%s: %s binds no low port", filepath.Base(f), p)
		}
	}
	if testing.Short() {
		return
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	for _, f := range files {
		b, _ := os.ReadFile(f)
		// The programs are not installed here: run /bin/true instead.
		u := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAllString(string(b), "ExecStart=/bin/true")
		verifyUnit(t, filepath.Join(dir, filepath.Base(f)), u)
	}
}
