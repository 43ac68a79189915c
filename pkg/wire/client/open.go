package client

import (
	"log/slog"

	"github.com/twinmx/twinmx/pkg/wire"
)

// Open makes a client of the dbd at addr from key files, as every program
// configures one: serverPub is dbd's public key file (pinned) and key this
// client's secret key file. Other settings are the defaults of Config.
func Open(addr, serverPub, key string, log *slog.Logger) (*Client, error) {
	kp, sp, err := wire.LoadClientKeys(key, serverPub)
	if err != nil {
		return nil, err
	}
	return New(Config{Addr: addr, Static: kp, Server: sp, Logger: log})
}
