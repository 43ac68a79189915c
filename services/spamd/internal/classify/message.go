package classify

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// Bounds on what one mail may cost the tokenizer. Mail is attacker input
// and spamd judges it inside the SMTP decision window, so every loop over
// it is bounded. The limits are far above what real mail needs for a
// verdict: spam states its business early.
const (
	maxHeaderBytes = 128 << 10 // header bytes parsed per entity
	maxFields      = 512       // header fields per entity
	maxTextBytes   = 192 << 10 // decoded text tokenized per mail
	maxParts       = 64        // MIME parts visited per mail
	maxDepth       = 8         // MIME nesting depth
)

// field is one header field, name lower-cased, value unfolded.
type field struct {
	name  string
	value []byte
}

type fields []field

// get returns the value of the first field called name (lower case), or nil.
func (fs fields) get(name string) []byte {
	for _, f := range fs {
		if f.name == name {
			return f.value
		}
	}
	return nil
}

// splitMessage splits raw into its header block and body. It skips an mbox
// "From " envelope line (the corpus has one; SMTP never does) and accepts LF
// or CRLF. A mail with no blank line is all header; a first line that does
// not look like a header field makes the whole mail body, so text pasted
// without any header is still judged by its words.
func splitMessage(raw []byte) (hdr, body []byte) {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		} else {
			return nil, nil
		}
	}
	first := raw
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	if c := bytes.IndexByte(first, ':'); c <= 0 || bytes.ContainsAny(first[:c], " \t") {
		// Either a blank first line (an empty header) or not a header.
		if len(bytes.TrimRight(first, "\r")) == 0 && len(raw) > len(first) {
			return nil, raw[len(first)+1:]
		}
		return nil, raw
	}
	for off := 0; off < len(raw); {
		nl := bytes.IndexByte(raw[off:], '\n')
		if nl < 0 {
			return raw, nil
		}
		line := raw[off : off+nl]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return raw[:off], raw[off+nl+1:]
		}
		off += nl + 1
	}
	return raw, nil
}

// parseFields parses a header block leniently: continuation lines are
// joined, lines without a colon are skipped. It never fails; a broken
// header yields fewer fields.
func parseFields(hdr []byte) fields {
	if len(hdr) > maxHeaderBytes {
		hdr = hdr[:maxHeaderBytes]
	}
	var fs fields
	for len(hdr) > 0 && len(fs) < maxFields {
		var line []byte
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			line, hdr = hdr, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if n := len(fs); n > 0 {
				v := append(fs[n-1].value, ' ')
				fs[n-1].value = append(v, bytes.TrimSpace(line)...)
			}
			continue
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := strings.ToLower(string(bytes.TrimSpace(line[:c])))
		// Copy the value: continuation lines append to it, and the caller's
		// buffer must not be written.
		v := bytes.TrimSpace(line[c+1:])
		fs = append(fs, field{name: name, value: append([]byte(nil), v...)})
	}
	return fs
}

// mediaType parses a Content-Type value leniently. A missing value means
// text/plain (RFC 2045 §5.2); a broken one still yields its type when the
// type part is readable.
func mediaType(v []byte) (typ string, params map[string]string, bad bool) {
	if len(bytes.TrimSpace(v)) == 0 {
		return "text/plain", nil, false
	}
	typ, params, err := mime.ParseMediaType(string(v))
	if err == nil {
		return typ, params, false
	}
	if typ != "" { // mime.ErrInvalidMediaParameter: type fine, params not
		return typ, params, true
	}
	s := string(v)
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.Contains(s, "/") || len(s) > 64 {
		return "text/plain", nil, true
	}
	// Recover a boundary by hand: spam often writes it unquoted with
	// characters ParseMediaType refuses.
	params = map[string]string{}
	// ASCII-only lower-casing keeps byte offsets (bytes.ToLower may not).
	lower := make([]byte, len(v))
	for i, c := range v {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if i := bytes.Index(lower, []byte("boundary=")); i >= 0 {
		b := string(v[i+len("boundary="):])
		if j := strings.IndexAny(b, "; \t"); j >= 0 {
			b = b[:j]
		}
		params["boundary"] = strings.Trim(b, `"'`)
	}
	return s, params, true
}

// decodeBody undoes a Content-Transfer-Encoding. Broken encodings decode
// as far as they go: a spammer's bad base64 must not hide its words, and a
// malformed mail is not an error. A text part passes limit maxTextBytes:
// no more of it is ever tokenized, so base64 decodes only that much (it
// decoded the whole part, up to twice its size in memory for a part of
// megabytes); limit 0 decodes base64 whole (an attached message).
func decodeBody(cte string, body []byte, limit int) (out []byte, bad bool) {
	switch cte {
	case "base64":
		// Keep only alphabet bytes and decode without padding, so stray
		// characters, line noise and a missing or early "=" lose nothing.
		// Four symbols make three bytes, so limit bytes need at most
		// this many symbols, a multiple of four.
		maxClean := len(body)
		if limit > 0 {
			maxClean = min(maxClean, (limit+2)/3*4)
		}
		clean := make([]byte, 0, maxClean)
		for _, c := range body {
			if len(clean) == maxClean {
				break
			}
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
				clean = append(clean, c)
			}
		}
		if len(clean)%4 == 1 { // one dangling symbol carries no whole byte
			clean = clean[:len(clean)-1]
		}
		out = make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, err := base64.RawStdEncoding.Decode(out, clean)
		return out[:n], err != nil || len(clean) == 0 && len(bytes.TrimSpace(body)) > 0
	case "quoted-printable":
		out, err := io.ReadAll(io.LimitReader(quotedprintable.NewReader(bytes.NewReader(body)), maxTextBytes))
		return out, err != nil
	default:
		return body, false
	}
}

// multipartBodies splits a multipart body at its boundary lines (RFC 2046
// §5.1.1). It is more tolerant than mime/multipart: a missing close
// delimiter or junk after it loses nothing.
func multipartBodies(body []byte, boundary string) [][]byte {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	for off := 0; off < len(body) && len(parts) < maxParts; {
		end := bytes.IndexByte(body[off:], '\n')
		next := len(body)
		if end >= 0 {
			next = off + end + 1
			end += off
		} else {
			end = len(body)
		}
		line := bytes.TrimRight(body[off:end], " \t\r")
		if bytes.HasPrefix(line, delim) {
			rest := line[len(delim):]
			if len(rest) == 0 || bytes.Equal(rest, []byte("--")) {
				if start >= 0 {
					parts = append(parts, body[start:off])
				}
				if len(rest) == 2 {
					return parts
				}
				start = next
			}
		}
		off = next
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}
