package control

import (
	"context"
	"net"
)

// peer is who is at the other end of a control connection.
type peer struct {
	uid, pid uint32
	// checked is false where the platform cannot tell (no SO_PEERCRED):
	// the socket's mode is then the only guard.
	checked bool
	err     error
}

type peerKey struct{}

// withPeer is http.Server.ConnContext: it reads the peer's credentials once
// per connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

func peerFrom(ctx context.Context) (peer, bool) {
	p, ok := ctx.Value(peerKey{}).(peer)
	return p, ok
}
