package proctest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/twinmx/twinmx/pkg/model"
)

// CorpusMail is one message of the shared corpus, exactly as stored in the
// archive (an mbox "From " line first, LF line ends).
type CorpusMail struct {
	Name string // the archive member, e.g. "ham/easy-ham-1-00001.eml"
	Raw  []byte
}

// Corpus reads every .eml of ../shared/corpus/spamassassin-train.tar.gz
// (the folder can be moved with $TWINMX_CORPUS; a relative default is
// taken from a test package four levels below the shared folder's parent,
// as services/X/test is), sorted by name. It skips the test when the
// corpus is absent, unless TWINMX_REQUIRE_CORPUS is set (CI): then it
// fails.
func Corpus(t testing.TB) []CorpusMail {
	t.Helper()
	dir := os.Getenv("TWINMX_CORPUS")
	if dir == "" {
		dir = "../../../../shared/corpus"
	}
	path := filepath.Join(dir, "spamassassin-train.tar.gz")
	f, err := os.Open(path)
	if err != nil {
		if os.Getenv("TWINMX_REQUIRE_CORPUS") != "" {
			t.Fatalf("corpus: %v (TWINMX_REQUIRE_CORPUS is set)", err)
		}
		t.Skipf("corpus not found: %v (set TWINMX_CORPUS)", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("corpus %s: %v", path, err)
	}
	tr := tar.NewReader(gz)
	var out []CorpusMail
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("corpus %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".eml") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("corpus %s: %s: %v", path, h.Name, err)
		}
		out = append(out, CorpusMail{Name: h.Name, Raw: b})
	}
	if len(out) == 0 {
		t.Fatalf("corpus %s holds no .eml file", path)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WireForm returns raw as an SMTP client sends a mail file: without a
// leading mbox "From " line (never part of a mail on the wire) and with
// every LF not preceded by CR turned into CRLF.
func WireForm(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	return ToCRLF(raw)
}

// ToCRLF turns every LF not preceded by CR into CRLF (in a copy).
func ToCRLF(b []byte) []byte { return bytes.Clone(model.CRLF(b)) }
