package mimetree

import (
	"errors"
	"mime"
	"strings"
)

// parseMediaType parses a Content-Type or Content-Disposition value like
// mime.ParseMediaType, but keeps the good parameters when one is bad.
// Go's parser returns no parameters at all then, which lost a
// multipart's boundary (so the mail showed as one text part) or an
// attachment's file name for one unquoted value with a space in it
// (`file=Yinxiang Motorcycles.doc`). A bad parameter is dropped, or cut
// at its first space when that makes it good (as Dovecot reads it);
// the others are parsed together again, so RFC 2231 continuations still
// join.
func parseMediaType(v string) (string, map[string]string, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil || !errors.Is(err, mime.ErrInvalidMediaParameter) && err.Error() != errDuplicateParam {
		return mt, params, err
	}
	segs := splitParams(v)
	kept := []string{segs[0]}
	seen := map[string]bool{}
	keep := func(seg string) bool {
		_, p, err := mime.ParseMediaType("x/x;" + seg)
		if err != nil {
			return false
		}
		name, _, _ := strings.Cut(seg, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if seen[name] {
			return true // a name given twice: the first counts
		}
		seen[name] = true
		if len(p) > 0 || strings.Contains(name, "*") {
			kept = append(kept, seg)
		}
		return true
	}
	for _, seg := range segs[1:] {
		if keep(seg) {
			continue
		}
		name, val, ok := strings.Cut(seg, "=")
		val = strings.TrimSpace(val)
		if i := strings.IndexAny(val, " \t"); ok && i > 0 && !strings.HasPrefix(val, `"`) {
			keep(name + "=" + val[:i])
		}
	}
	mt, params, err = mime.ParseMediaType(strings.Join(kept, ";"))
	if err != nil && mt != "" {
		return mt, nil, nil // what was kept still clashes: no parameters
	}
	return mt, params, err
}

// errDuplicateParam is the text of mime.ParseMediaType's error for a
// parameter name given twice, which it exports no value for.
const errDuplicateParam = "mime: duplicate parameter name"

// splitParams splits a header value at the semicolons outside quoted
// strings.
func splitParams(v string) []string {
	var segs []string
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			segs = append(segs, v[start:i])
			start = i + 1
		}
	}
	return append(segs, v[start:])
}
