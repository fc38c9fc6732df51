package proxy

import (
	"net"
	"net/netip"
	"sync"

	"github.com/moatproj/moat/internal/netaddr"
)

// capListener refuses a connection, by closing it at once, when its peer
// is banned or already holds max open connections (counted per client key:
// the address, IPv6 masked to a prefix). The count is by TCP peer: behind
// a trusted proxy the proxy is the peer, so the cap applies to the proxy
// and is normally disabled for it through exempt.
type capListener struct {
	net.Listener
	max    int
	v6bits int
	exempt []netip.Prefix
	banned func(netip.Addr) bool
	// refused counts connections closed at accept, for tests and metrics.
	refused func(reason string)

	mu    sync.Mutex
	count map[netip.Prefix]int
}

func newCapListener(ln net.Listener, max, v6bits int, exempt []netip.Prefix, banned func(netip.Addr) bool, refused func(string)) *capListener {
	return &capListener{Listener: ln, max: max, v6bits: v6bits, exempt: exempt, banned: banned, refused: refused, count: make(map[netip.Prefix]int)}
}

// Accept returns the next connection that is neither banned nor over the
// cap; refused ones are closed here and never reach the server.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := peerAddr(c.RemoteAddr().String())
		if a.IsValid() && l.banned != nil && l.banned(a) {
			c.Close()
			l.refuse("banned")
			continue
		}
		if l.max <= 0 || !a.IsValid() || trusted(a, l.exempt) {
			return c, nil
		}
		k := netaddr.HostPrefix(a, l.v6bits)
		l.mu.Lock()
		if l.count[k] >= l.max {
			l.mu.Unlock()
			c.Close()
			l.refuse("conns")
			continue
		}
		l.count[k]++
		l.mu.Unlock()
		return &capConn{Conn: c, l: l, k: k}, nil
	}
}

func (l *capListener) refuse(reason string) {
	if l.refused != nil {
		l.refused(reason)
	}
}

func (l *capListener) release(k netip.Prefix) {
	l.mu.Lock()
	if n := l.count[k] - 1; n > 0 {
		l.count[k] = n
	} else {
		delete(l.count, k)
	}
	l.mu.Unlock()
}

// open is the number of connections counted for a's key.
func (l *capListener) open(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[netaddr.HostPrefix(a, l.v6bits)]
}

// capConn gives its slot back once, on the first Close.
type capConn struct {
	net.Conn
	l    *capListener
	k    netip.Prefix
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.k) })
	return err
}
