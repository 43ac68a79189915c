package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestCheckDaemonFlags: negative durations and counts that the daemon
// took for "off" (--grey-delay, --digest-claim-wait) or for no backlog
// are refused with the flag named and exit code 2; 0 and the defaults
// pass.
func TestCheckDaemonFlags(t *testing.T) {
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{nil, ""},
		{[]string{"--grey-delay", "0"}, ""},
		{[]string{"--digest-claim-wait", "0", "--backlog", "0"}, ""},
		{[]string{"--grey-delay", "-1m"}, "--grey-delay -1m0s"},
		{[]string{"--digest-claim-wait", "-5s"}, "--digest-claim-wait -5s"},
		{[]string{"--digest-every", "-1h"}, "--digest-every -1h0m0s"},
		{[]string{"--backlog", "-1"}, "--backlog -1"},
		{[]string{"--digest-scan", "-3"}, "--digest-scan -3"},
	} {
		var got error
		app := &cli.App{Name: "spamd", Flags: daemonFlags(), Action: func(ctx *cli.Context) error {
			got = checkDaemonFlags(ctx)
			return nil
		}}
		if err := app.Run(append([]string{"spamd"}, c.args...)); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if c.wantErr == "" {
			if got != nil {
				t.Errorf("%v: %v, want none", c.args, got)
			}
			continue
		}
		var ec cli.ExitCoder
		if got == nil || !strings.Contains(got.Error(), c.wantErr) || !errors.As(got, &ec) || ec.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2 naming %q", c.args, got, c.wantErr)
		}
	}
}
