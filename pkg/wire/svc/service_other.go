//go:build !windows

package svc

import "github.com/urfave/cli/v2"

// isWindowsService is false outside Windows: systemd runs the program as
// it is and stops it with SIGTERM.
func isWindowsService() bool { return false }

func runWindowsService(string, cli.ActionFunc, *cli.Context) error { return ErrUnsupported }
