package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// h1Transport sends GET and HEAD requests without a body to plain-HTTP
// upstreams on the calling goroutine, over kept-alive connections of its
// own. http.Transport hands every request to two goroutines per
// connection (a writer and a reader); for the bulk of a proxy's traffic
// that handoff cost more CPU than everything else moat does per request
// (bench/proxy.sh: about 40% of the proxy's CPU). Everything else —
// bodies, upgrades, https upstreams — goes to the fallback transport.
type h1Transport struct {
	fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle  int           // idle connections kept per upstream
	idleFor  time.Duration // an idle connection older than this is closed

	mu   sync.Mutex
	idle map[string][]*h1Conn
}

// h1Conn is one kept-alive connection to an upstream.
type h1Conn struct {
	c    net.Conn
	in   headLimit // c, bounded while an answer's head is read
	br   *bufio.Reader
	bw   *bufio.Writer
	host string
	used time.Time
}

func newH1Transport(fallback http.RoundTripper, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *h1Transport {
	return &h1Transport{fallback: fallback, dial: dial, maxIdle: 1024, idleFor: 90 * time.Second, idle: map[string][]*h1Conn{}}
}

// fast says whether req can take the synchronous path.
func fast(req *http.Request) bool {
	return req.URL.Scheme == "http" && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.Header.Get("Upgrade") == "" && len(req.Trailer) == 0
}

// RoundTrip implements http.RoundTripper. A request that fails on a
// connection taken from the idle pool before any byte of the answer came
// is sent once more on a new connection: the upstream may have closed an
// idle connection just as it was reused (GET and HEAD are idempotent).
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !fast(req) {
		return t.fallback.RoundTrip(req)
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := t.send(pc, req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		if !reused || attempt > 0 || !staleConn(err) || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// staleConn says whether err is what a connection the upstream closed
// while idle gives.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// get takes an idle connection to host, or dials one.
func (t *h1Transport) get(ctx context.Context, host string) (*h1Conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for l := t.idle[host]; len(l) > 0; l = t.idle[host] {
		pc := l[len(l)-1]
		t.idle[host] = l[:len(l)-1]
		if now.Sub(pc.used) < t.idleFor && quiet(pc.c) {
			t.mu.Unlock()
			return pc, true, nil
		}
		pc.c.Close()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	pc := &h1Conn{c: c, in: headLimit{r: c, n: -1}, bw: bufio.NewWriterSize(c, 4<<10), host: host}
	pc.br = bufio.NewReaderSize(&pc.in, 16<<10)
	return pc, false, nil
}

// put returns a connection whose answer was read whole to the idle pool.
// One with bytes left over after the answer (an upstream that sent more
// than its framing declared: a body to a HEAD or a 204, a second answer)
// is closed: the next request's answer would be read from them, and one
// client would get another's.
func (t *h1Transport) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 || !quiet(pc.c) {
		pc.c.Close()
		return
	}
	pc.used = time.Now()
	t.mu.Lock()
	if l := t.idle[pc.host]; len(l) < t.maxIdle {
		t.idle[pc.host] = append(l, pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.c.Close()
}

// quiet reports whether nothing has arrived on an idle connection: no
// unexpected data and no end (it peeks without waiting). A connection that
// cannot be checked counts as quiet.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var perr error
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	_ = n // data (n > 0) or the end (n == 0) both make it unfit
	return errors.Is(perr, syscall.EAGAIN)
}

// send writes req on pc and reads the answer's head. The request's
// context bounds both: when it ends (the client went away) the
// connection's deadline passes and the blocked read returns.
func (t *h1Transport) send(pc *h1Conn, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(req.Context(), func() { pc.c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		return nil, err
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, err
	}
	resp, err := readFinal(pc, req)
	if err != nil {
		stop()
		return nil, err
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == nil || resp.Body == http.NoBody {
		t.done(pc, stop, reuse)
		resp.Body = http.NoBody
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, pc: pc, t: t, stop: stop, reuse: reuse}
	return resp, nil
}

// readFinal reads the final answer to req from pc. Interim answers (100
// Continue, 103 Early Hints) are skipped: the final one follows on the
// same connection. A switch of protocols nobody asked for is an error, and
// the connection is closed.
func readFinal(pc *h1Conn, req *http.Request) (*http.Response, error) {
	pc.in.n = maxAnswerHead
	defer func() { pc.in.n = -1 }()
	resp, err := http.ReadResponse(pc.br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(pc.br, req)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		pc.c.Close()
		return nil, errors.New("upstream switched protocols on a request that did not ask to")
	}
	return resp, nil
}

// maxAnswerHead bounds what is read from an upstream for an answer's head
// (interim answers included), so that an upstream that sends an endless
// field cannot take the proxy's memory: the request gets a 502. It is
// the default limit on a request's head, and what http.Transport is given
// too.
const maxAnswerHead = DefaultMaxHeaderBytes

// errAnswerHead is the error past maxAnswerHead.
var errAnswerHead = errors.New("upstream's answer head is too big")

// headLimit reads from r, at most n bytes while n >= 0.
type headLimit struct {
	r io.Reader
	n int64
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errAnswerHead
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// done ends a request on pc: the connection goes back to the pool when the
// answer was read whole and both sides keep it alive, else it is closed.
func (t *h1Transport) done(pc *h1Conn, stop func() bool, reuse bool) {
	if !stop() {
		// The context ended first: the deadline is set, the connection spent.
		pc.c.Close()
		return
	}
	if reuse {
		t.put(pc)
		return
	}
	pc.c.Close()
}

// h1Body is an answer's body; reading it to its end gives the connection
// back, closing it earlier closes the connection.
type h1Body struct {
	rc    io.ReadCloser
	pc    *h1Conn
	t     *h1Transport
	stop  func() bool
	reuse bool
	once  sync.Once
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.once.Do(func() { b.t.done(b.pc, b.stop, b.reuse) })
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.once.Do(func() {
		b.stop()
		b.pc.c.Close()
	})
	return nil
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			pc.c.Close()
		}
	}
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
