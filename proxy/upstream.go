package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// downFor is how long an upstream that refused a connection is skipped.
const downFor = 10 * time.Second

// upstream is one target of a route with its passive health.
type upstream struct {
	url *url.URL
	// downUntil is when the upstream may be tried again, in Unix
	// nanoseconds (0: healthy).
	downUntil atomic.Int64
}

// pool picks a route's upstreams round robin, skipping those that refused
// a connection recently. Safe for concurrent use.
type pool struct {
	ups  []*upstream
	next atomic.Uint64
	now  func() time.Time
}

func newPool(urls []*url.URL, now func() time.Time) *pool {
	p := &pool{now: now}
	for _, u := range urls {
		p.ups = append(p.ups, &upstream{url: u})
	}
	return p
}

// order returns the upstreams to try for one request: healthy ones first,
// starting at the round-robin position, then those marked down, soonest
// back first, so a request is tried everywhere before it fails.
func (p *pool) order() []*upstream {
	n := len(p.ups)
	if n == 1 {
		return p.ups
	}
	start := int(p.next.Add(1)-1) % n
	now := p.now().UnixNano()
	out := make([]*upstream, 0, n)
	var down []*upstream
	for i := range n {
		u := p.ups[(start+i)%n]
		if u.downUntil.Load() > now {
			down = append(down, u)
			continue
		}
		out = append(out, u)
	}
	for len(down) > 0 {
		j := 0
		for i := range down {
			if down[i].downUntil.Load() < down[j].downUntil.Load() {
				j = i
			}
		}
		out = append(out, down[j])
		down = append(down[:j], down[j+1:]...)
	}
	return out
}

func (p *pool) markDown(u *upstream) {
	u.downUntil.Store(p.now().Add(downFor).UnixNano())
}

func (p *pool) markUp(u *upstream) {
	if u.downUntil.Load() != 0 {
		u.downUntil.Store(0)
	}
}

// target is the outgoing URL for in on upstream base: base's scheme and
// host, base's path joined with in's path, in's query.
func target(base, in *url.URL) *url.URL {
	u := *in
	u.Scheme, u.Host = base.Scheme, base.Host
	if base.Path != "" {
		u.Path = base.Path + in.Path
		if in.RawPath != "" {
			u.RawPath = base.Path + in.RawPath
		}
	}
	return &u
}

// refused says whether err is a failure to connect, before any byte of
// the request was sent.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// keepBody wraps a request body so that a failed attempt does not close
// it (the server closes the incoming body when the handler returns), and
// tells whether any of it was read: then no retry is possible.
type keepBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *keepBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *keepBody) Close() error { return nil }

// roundTrip sends out to the route's upstreams in turn, moving to the next
// one when a connection is refused and nothing of the body was sent. It
// returns the upstream that answered (or failed last).
func (p *pool) roundTrip(rt http.RoundTripper, out *http.Request) (*http.Response, *upstream, error) {
	ups := p.order()
	in := out.URL
	if len(ups) > 1 && out.Body != nil && out.Body != http.NoBody {
		out.Body = &keepBody{ReadCloser: out.Body}
	}
	var last *upstream
	var lastErr error
	for _, u := range ups {
		out.URL = target(u.url, in)
		resp, err := rt.RoundTrip(out)
		if err == nil {
			p.markUp(u)
			return resp, u, nil
		}
		last, lastErr = u, err
		if !refused(err) {
			return nil, u, err
		}
		p.markDown(u)
		if b, ok := out.Body.(*keepBody); out.Body != nil && out.Body != http.NoBody && (!ok || b.read.Load()) {
			return nil, u, err
		}
	}
	return nil, last, lastErr
}
