package daemon

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/wire"
)

// TestFailedStartEndsServer: a dbd whose start fails after its wire
// server is built (its port, or its metrics port, taken by another
// process) must end the server's goroutines before Run returns. The
// expiry goroutine used to stay behind, one per failed start, in every
// process that runs dbd in-process (dbdtest, dbctl bench).
func TestFailedStartEndsServer(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"dbd", "admin"} {
		kp, err := wire.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteKeyFiles(filepath.Join(dir, n), kp); err != nil {
			t.Fatal(err)
		}
	}
	clients := filepath.Join(dir, "clients")
	if err := os.WriteFile(clients, []byte("admin admin.pub\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name, listen, metrics, want string
	}{
		{"listen", taken.Addr().String(), "", "listen on "},
		{"metrics", "127.0.0.1:0", taken.Addr().String(), "listen for metrics on "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Data: filepath.Join(dir, "data-"+tc.name), Listen: tc.listen, Metrics: tc.metrics,
				KeyPath: filepath.Join(dir, "dbd"), Clients: clients}
			err := Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error %q", err, tc.want)
			}
			buf := make([]byte, 1<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			if strings.Contains(stacks, "server.(*Server).expireLoop") {
				t.Errorf("the wire server's expiry goroutine outlived the failed start:\n%s", stacks)
			}
		})
	}
}
