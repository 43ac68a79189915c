// Command dbctl is the operator's command line for twinmx's dbd. See
// `dbctl help` and docs/dbd.md.
package main

import (
	"fmt"
	"os"

	"github.com/twinmx/twinmx/services/dbd/internal/ctl"
)

func main() {
	if err := ctl.App().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "dbctl:", err)
		os.Exit(1)
	}
}
