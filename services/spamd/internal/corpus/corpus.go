package corpus

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/twinmx/twinmx/services/spamd/internal/classify"
)

// maxMailBytes bounds one mail read from a corpus. The largest corpus mail
// is under 1 MB; a bigger file is skipped as not a mail rather than read
// into memory.
const maxMailBytes = 32 << 20

// Mail is one corpus mail.
type Mail struct {
	// Name is the mail's path: the file path, or archive.tar.gz/member.
	Name string
	// Group is the corpus folder it came from ("easy-ham-1", "spam-2"), from
	// the file name's "<group>-<id>.eml" form, else the parent directory's
	// name.
	Group   string
	Class   classify.Class
	Labeled bool // Class is known (a "ham" or "spam" path component)
	Raw     []byte
}

// Load reads mails from paths: .eml files, directories of them (searched
// recursively; every regular file whose name ends in .eml), and .tar.gz
// archives (every member ending in .eml). The result is sorted by Name, so
// everything built on it is deterministic.
func Load(paths ...string) ([]Mail, error) {
	var out []Mail
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load corpus: %w", err)
		}
		switch {
		case st.IsDir():
			err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.Type().IsRegular() && strings.HasSuffix(strings.ToLower(path), ".eml") {
					m, err := loadFile(path)
					if err != nil {
						return err
					}
					out = append(out, m)
				}
				return nil
			})
		case strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz"):
			var ms []Mail
			ms, err = loadTarGz(p)
			out = append(out, ms...)
		default:
			var m Mail
			m, err = loadFile(p)
			out = append(out, m)
		}
		if err != nil {
			return nil, fmt.Errorf("load corpus %s: %w", p, err)
		}
	}
	slices.SortFunc(out, func(a, b Mail) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func loadFile(path string) (Mail, error) {
	f, err := os.Open(path)
	if err != nil {
		return Mail{}, err
	}
	defer f.Close()
	raw, err := readBounded(f)
	if err != nil {
		return Mail{}, fmt.Errorf("read %s: %w", path, err)
	}
	return newMail(path, raw), nil
}

func loadTarGz(path string) ([]Mail, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(zr)
	var out []Mail
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(strings.ToLower(h.Name), ".eml") {
			continue
		}
		raw, err := readBounded(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", h.Name, err)
		}
		out = append(out, newMail(path+"/"+h.Name, raw))
	}
}

var errTooBig = errors.New("corpus: mail too large")

func readBounded(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxMailBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxMailBytes {
		return nil, errTooBig
	}
	return raw, nil
}

// newMail labels a mail by its path: a "ham" or "spam" directory (or an
// archive member under one) names its class.
func newMail(name string, raw []byte) Mail {
	m := Mail{Name: name, Raw: raw}
	parts := strings.Split(filepath.ToSlash(name), "/")
	for _, p := range parts[:len(parts)-1] {
		switch strings.ToLower(p) {
		case "ham":
			m.Class, m.Labeled = classify.Ham, true
		case "spam":
			m.Class, m.Labeled = classify.Spam, true
		}
	}
	m.Group = groupOf(parts)
	return m
}

// groupOf returns "easy-ham-1" for ".../easy-ham-1-00001.eml", else the
// parent directory's name.
func groupOf(parts []string) string {
	base := strings.TrimSuffix(parts[len(parts)-1], ".eml")
	if i := strings.LastIndexByte(base, '-'); i > 0 && isDigits(base[i+1:]) {
		return base[:i]
	}
	if len(parts) >= 2 {
		return parts[len(parts)-2]
	}
	return "."
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Folds assigns each mail a fold in [0, k): within each group, in Name
// order, mails are dealt round-robin. The split is deterministic, every
// fold gets its share of every group (hard-ham too), and it does not
// depend on the mails' contents.
func Folds(mails []Mail, k int) []int {
	folds := make([]int, len(mails))
	next := map[string]int{}
	idx := make([]int, len(mails))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(mails[a].Name, mails[b].Name) })
	for _, i := range idx {
		g := mails[i].Group
		folds[i] = next[g] % k
		next[g]++
	}
	return folds
}
