//go:build !linux

package control

import (
	"errors"
	"net"
)

// peerOf cannot read credentials on this platform: the socket's 0600 mode is
// the guard. A connection that is not on a unix socket is still refused.
func peerOf(c net.Conn) peer {
	if _, ok := c.(*net.UnixConn); !ok {
		return peer{err: errors.New("peer credentials: not a unix socket connection")}
	}
	return peer{}
}
