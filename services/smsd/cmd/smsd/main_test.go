package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestSliceFlagsKeepCommas: a window's day list and an HTTP header hold
// commas, and urfave/cli split repeatable flags at them: `rule set
// --window "mon,tue 08:00-18:00"` (the form rule show prints) failed as
// the window "mon", and a header "Accept: text/plain, application/json"
// became two.
func TestSliceFlagsKeepCommas(t *testing.T) {
	app := newApp()
	var got []string
	app.Action = func(c *cli.Context) error {
		got = c.StringSlice("gateway-header")
		return nil
	}
	set := findCommand(t, app.Commands, "rule", "set")
	set.Action = func(c *cli.Context) error {
		got = c.StringSlice("window")
		return nil
	}
	header := "Accept: text/plain, application/json"
	if err := app.Run([]string{"smsd", "--gateway-header", header, "--gateway-header", "X-A: 1"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{header, "X-A: 1"}; !slices.Equal(got, want) {
		t.Errorf("--gateway-header: %q, want %q", got, want)
	}
	window := "mon,tue,wed 08:00-18:00"
	if err := app.Run([]string{"smsd", "rule", "set", "--mailbox", "a@b.example", "--name", "r", "--phone", "+491",
		"--window", window, "--window", "sat 10:00-12:00"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{window, "sat 10:00-12:00"}; !slices.Equal(got, want) {
		t.Errorf("--window: %q, want %q", got, want)
	}
}

func findCommand(t *testing.T, cmds []*cli.Command, path ...string) *cli.Command {
	t.Helper()
	for _, c := range cmds {
		if c.Name != path[0] {
			continue
		}
		if len(path) == 1 {
			return c
		}
		return findCommand(t, c.Subcommands, path[1:]...)
	}
	t.Fatalf("no command %q", path[0])
	return nil
}

// TestDaemonRefusesNegativeFlags: the daemon took negative durations and
// limits as they came. A negative --claim-timeout made every claim of the
// other site expired at once and --peer-delay let site B claim at once (an
// SMS sent by both sites); a negative --retry-min burnt --max-tries at once.
func TestDaemonRefusesNegativeFlags(t *testing.T) {
	for _, f := range []string{"peer-delay", "claim-timeout", "gateway-timeout", "rate-window", "retry-min", "retry-max",
		"rate-limit", "max-tries", "backlog"} {
		t.Run(f, func(t *testing.T) {
			app := newApp()
			// A cli.Exit error would otherwise end the test binary.
			app.ExitErrHandler = func(*cli.Context, error) {}
			v := "-1m"
			if f == "rate-limit" || f == "max-tries" || f == "backlog" {
				v = "-1"
			}
			// No --db: the daemon stops before it dials, whatever it checks.
			err := app.Run([]string{"smsd", "--site", "A", "--gateway-cmd", "true", "--" + f, v})
			if err == nil || !strings.Contains(err.Error(), "--"+f+" ") {
				t.Errorf("smsd --%s %s: %v, want an error naming --%s", f, v, err, f)
			}
			var ec cli.ExitCoder
			if errors.As(err, &ec) && ec.ExitCode() != 2 {
				t.Errorf("smsd --%s %s: exit code %d, want 2", f, v, ec.ExitCode())
			}
		})
	}
	app := newApp()
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run([]string{"smsd", "--site", "A", "--gateway-cmd", "true", "--claim-timeout", "0", "--peer-delay", "0", "--rate-limit", "0"})
	if err == nil || strings.Contains(err.Error(), "negative") {
		t.Errorf("smsd with zero flags: %v, want only the missing --db", err)
	}
}

// TestRetryMinWithinClaimTimeout: a --retry-min over a third of
// --claim-timeout is refused. notify raises --retry-max to it, so an owner
// retrying a failing gateway looked (and refreshed its claim) less often
// than the claim lives: the other site took the claim over and sent too.
func TestRetryMinWithinClaimTimeout(t *testing.T) {
	for _, c := range []struct {
		args []string
		bad  bool
	}{
		{[]string{"--retry-min", "2m"}, true}, // default --claim-timeout 5m
		{[]string{"--retry-min", "10s", "--claim-timeout", "20s"}, true},
		{[]string{"--retry-min", "100s"}, false},
		{[]string{"--retry-min", "5s", "--claim-timeout", "15s"}, false},
	} {
		app := newApp()
		app.ExitErrHandler = func(*cli.Context, error) {}
		err := app.Run(append([]string{"smsd", "--site", "A", "--gateway-cmd", "true"}, c.args...))
		if got := err != nil && strings.Contains(err.Error(), "--retry-min"); got != c.bad {
			t.Errorf("smsd %v: %v; want refused: %v", c.args, err, c.bad)
		}
	}
}
