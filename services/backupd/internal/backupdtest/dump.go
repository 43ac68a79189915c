package backupdtest

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/twinmx/twinmx/pkg/wire/client"
)

// Dump returns a site's rows as canonical lines (table, key, content digest,
// size, state encoding), sorted as dbd sends them; equal on converged sites.
// c must have the admin role.
func Dump(ctx context.Context, c *client.Client) ([]string, error) {
	st, err := c.Dump(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []string
	for {
		r, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s %s %x %d %x", r.Table, r.Key, r.Digest, r.Size, r.State.AppendBinary(nil)))
	}
}

// Diff describes the first difference of two dumps, or "" if equal.
func Diff(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d lines vs %d lines", len(a), len(b))
	}
	return ""
}
