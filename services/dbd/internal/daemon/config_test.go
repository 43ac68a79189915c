package daemon

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Config{Data: "d", Listen: "127.0.0.1:1", KeyPath: "k", Clients: "c"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := Config{CacheMiB: -1, MemTableMiB: 4096, RowCacheMiB: -2}
	err := bad.Validate()
	if err == nil {
		t.Fatal("empty config with --cache -1 and --memtable 4096 accepted")
	}
	for _, want := range []string{"--data is required", "--listen is required", "--key is required", "--clients is required", "--cache -1", "--memtable 4096", "--row-cache -2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
