package svc

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/twinmx/twinmx/pkg/wire"
)

// AdminEnv is the environment prefix of the operator's tools (dbctl,
// smtpd replay): TWINMX_DB, TWINMX_DB_PUB and TWINMX_KEY, which make run
// sets in the shell it prints.
const AdminEnv = "TWINMX"

// DBFlags returns the flags with which a program reaches its dbd: --db,
// --db-pub and --key (its role's key). Each reads the program's own
// environment variables first (prefix "TWINMX_SMTPD": TWINMX_SMTPD_DB,
// TWINMX_SMTPD_DB_PUB, TWINMX_SMTPD_KEY). The address and the public key
// fall back to the site-wide TWINMX_DB and TWINMX_DB_PUB, since every
// service of a site talks to the same dbd. The secret key never does:
// TWINMX_KEY is the admin key of an operator's shell, and a service
// started from that shell must not run with more rights than its role.
func DBFlags(prefix, role string) []cli.Flag {
	dbEnv, pubEnv := []string{prefix + "_DB"}, []string{prefix + "_DB_PUB"}
	if prefix != AdminEnv {
		dbEnv = append(dbEnv, AdminEnv+"_DB")
		pubEnv = append(pubEnv, AdminEnv+"_DB_PUB")
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "db", Usage: "dbd's HOST:PORT (this site's)", EnvVars: dbEnv},
		&cli.StringFlag{Name: "db-pub", Usage: "dbd's public key file", EnvVars: pubEnv},
		&cli.StringFlag{Name: "key", Usage: "secret key file (role " + role + ")", EnvVars: []string{prefix + "_KEY"}},
	}
}

// DBKeys checks that the flags of DBFlags are all set (from the command
// line or the environment) and loads the two key files they name: the
// program's secret key and dbd's public key, which the client pins.
func DBKeys(c *cli.Context) (wire.KeyPair, wire.PublicKey, error) {
	for _, f := range []string{"db", "db-pub", "key"} {
		if c.String(f) == "" {
			return wire.KeyPair{}, wire.PublicKey{}, fmt.Errorf("--%s is required", f)
		}
	}
	return wire.LoadClientKeys(c.String("key"), c.String("db-pub"))
}
