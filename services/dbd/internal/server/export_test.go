package server

import "net"

// SetHandshakeHook makes s call fn with the peer's address for every
// connection that passes the rate limit, just before the handshake's
// crypto. Call it before Serve.
func SetHandshakeHook(s *Server, fn func(net.Addr)) { s.handshakeHook = fn }

// MaxPending is maxPending, for TestPendingRequestsBounded.
const MaxPending = maxPending
