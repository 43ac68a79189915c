package main

import (
	"slices"
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
