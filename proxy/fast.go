package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path: moat reads HTTP/1.1 connections itself and serves the
// bulk of a proxy's traffic — GET and HEAD without a body, to plain-HTTP
// upstreams, allowed by the rate limits — on the connection's goroutine,
// from bytes to bytes. net/http spends a goroutine handoff, a background
// read and a dozen allocations on every request; over loopback that was
// two thirds of moat's CPU per request (bench/proxy.sh).
//
// A connection stays on the fast path until a request comes that it does
// not take (see parseHead), or that is refused or needs an answer from
// ServeHTTP (a ban, no route, an https upstream). The connection is then
// handed to net/http with the bytes read so far, and net/http serves it
// from that request on, as it would have from the start: whatever the
// fast path does not read without doubt is read by net/http.

// fastBuf is the fast path's read buffer per connection: a head that does
// not fit goes to net/http (whose limit is MaxHeaderBytes).
const fastBuf = 8 << 10

// watchAfter is how long an upstream may take to answer before the fast
// path starts watching the client for going away (a long poll).
const watchAfter = 250 * time.Millisecond

// fastServer runs the fast path for one listener.
type fastServer struct {
	p      *Proxy
	l      *listener
	tls    *tls.Config // nil on a plain-HTTP listener
	handed *handoffListener
	// on: the fast path serves what it can; off, every connection goes to
	// net/http at once (behind the framing guard all the same).
	on bool

	closing atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
}

func newFastServer(p *Proxy, l *listener, tc *tls.Config) *fastServer {
	return &fastServer{p: p, l: l, tls: tc, handed: newHandoffListener(l.ln.Addr()), conns: map[*fastConn]struct{}{}}
}

// serve accepts connections until the listener is closed.
func (f *fastServer) serve() error {
	for {
		c, err := f.l.ln.Accept()
		if err != nil {
			if f.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		fc := &fastConn{f: f, c: c, raw: c, peer: peerAddr(c.RemoteAddr().String()), port: f.l.port}
		f.mu.Lock()
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

// shutdown stops the fast path: connections between requests are closed
// at once, those in a request when it ends, and all by ctx's end.
func (f *fastServer) shutdown(ctx context.Context) {
	f.closing.Store(true)
	f.mu.Lock()
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.raw.SetReadDeadline(time.Unix(1, 0))
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.raw.Close()
		}
		f.mu.Unlock()
		<-done
	}
}

// fastConn is one client connection on the fast path.
type fastConn struct {
	f    *fastServer
	c    net.Conn // the client: raw, or TLS over raw
	raw  net.Conn // for shutdown, which must not read c
	br   *bufio.Reader
	peer netip.Addr
	port uint16
	tls  bool
	idle atomic.Bool // waiting for a request
	head h1Head
	out  []byte        // the request or answer being written
	send time.Duration // the send timeout of the request being served

	// The client watch during a slow upstream (see watch).
	watchTimer *time.Timer
	watchMu    sync.Mutex
	watchUp    net.Conn
	armed      bool      // the timer may start the watch
	watching   bool      // the watch runs
	stopping   bool      // unwatch is ending it
	watchDone  chan bool // true: the client went away
}

func (fc *fastConn) forget() {
	fc.f.mu.Lock()
	delete(fc.f.conns, fc)
	fc.f.mu.Unlock()
	fc.f.wg.Done()
}

// serve runs the connection's requests until it closes or is handed over.
func (fc *fastConn) serve() {
	defer fc.forget()
	cfg := fc.f.p.cfg
	if fc.f.tls != nil {
		tc := tls.Server(fc.c, fc.f.tls)
		fc.c.SetDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
		if err := tc.Handshake(); err != nil {
			fc.f.p.log.Debug("tls handshake", "client", fc.peer, "error", err)
			tc.Close()
			return
		}
		fc.c.SetDeadline(time.Time{})
		fc.c, fc.tls = tc, true
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			fc.f.handed.give(fc.c, false, nil, 0)
			return
		}
	}
	if !fc.f.on {
		// The fast path is off: net/http serves every request.
		fc.f.handed.give(fc.c, true, nil, cfg.MaxHeaderBytes)
		return
	}
	fc.br = bufio.NewReaderSize(fc.c, fastBuf)
	fc.out = make([]byte, 0, 4<<10)
	wait := cfg.ReadHeaderTimeout
	for {
		// Deadlines are set only when the fast path waits for the client:
		// for the next request (a pipelined one is there already), then
		// for the rest of a head that did not come in one read. The
		// client watch clears them for itself.
		if fc.br.Buffered() == 0 {
			fc.c.SetReadDeadline(time.Now().Add(wait))
			fc.idle.Store(true)
			if fc.f.closing.Load() {
				fc.c.Close()
				return
			}
			if _, err := fc.br.Peek(1); err != nil {
				fc.c.Close()
				return
			}
			fc.idle.Store(false)
		} else if fc.f.closing.Load() {
			fc.c.Close()
			return
		}
		wait = cfg.IdleTimeout
		v, n := scanHead(peekN(fc.br, fc.br.Buffered()))
		if v == headMore {
			fc.c.SetReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
			v, n = fc.scan()
		}
		if v == headTake && !parseHead(peekN(fc.br, n), &fc.head, fc.f.p.table.Load().cfg.UnderscoresInHeaders) {
			v = headHandoff
		}
		if v != headTake {
			if v == headHandoff {
				fc.handoff()
			} else {
				fc.c.Close()
			}
			return
		}
		next := fc.f.p.serveFast(fc)
		if cap(fc.out) > 16<<10 {
			// An upstream's big head: not kept for the connection's life.
			fc.out = make([]byte, 0, 4<<10)
		}
		switch next {
		case fastNext:
		case fastHandoff:
			fc.handoff()
			return
		case fastClose:
			fc.c.Close()
			return
		}
	}
}

// peekN is the next n buffered bytes (n is at most what is buffered).
func peekN(br *bufio.Reader, n int) []byte {
	b, _ := br.Peek(n)
	return b
}

// scan reads until the buffered bytes are a complete head the fast path
// may take, or are not one. headMore on return means the client stopped
// sending (timeout or error): the connection is closed.
func (fc *fastConn) scan() (headVerdict, int) {
	max := min(fastBuf, fc.f.p.cfg.MaxHeaderBytes)
	for {
		b := peekN(fc.br, fc.br.Buffered())
		v, n := scanHead(b)
		if v != headMore {
			return v, n
		}
		if len(b) >= max {
			return headHandoff, 0
		}
		if _, err := fc.br.Peek(len(b) + 1); err != nil {
			if len(b) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return headHandoff, 0
			}
			return headMore, 0
		}
	}
}

// handoff gives the connection, with what is buffered, to net/http. The
// fast path's last write deadline is lifted: net/http sets its own.
func (fc *fastConn) handoff() {
	pre := append([]byte(nil), peekN(fc.br, fc.br.Buffered())...)
	fc.c.SetWriteDeadline(time.Time{})
	fc.f.handed.give(fc.c, true, pre, fc.f.p.cfg.MaxHeaderBytes)
}

// What serveFast leaves the connection to.
const (
	fastNext    = iota // read the next request
	fastHandoff        // net/http serves this request and the rest
	fastClose          // close the connection
)

// A connection handed to net/http for HTTP/1 is a guardConn (guard.go):
// the bytes the fast path read come first, and the framing guard reads in
// front of net/http. A TLS connection's state goes along through the
// context (see connContext), as net/http sees only a net.Conn.

type tlsStateKey struct{}

// connContext carries a handed-over TLS connection's state to its
// requests (http.Server.ConnContext), as net/http sees only a net.Conn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(*guardConn); ok && g.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, g.tls)
	}
	return ctx
}

// abort makes the close of c a reset: the bytes still queued for a client
// that stopped reading are dropped with it, instead of the kernel holding
// them (megabytes) until the client reads or its timers give up. nginx
// does the same with reset_timedout_connection.
func abort(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*capConn); ok {
		c = cc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// handoffListener is the net.Listener net/http serves handed-over
// connections from.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// give hands c to net/http; after Close, c is closed instead. An HTTP/1
// connection goes behind the framing guard (pre: bytes already read from
// it, maxHead: the server's MaxHeaderBytes); an HTTP/2 one (h1 false) goes
// as it is, so that net/http serves HTTP/2 on it.
func (l *handoffListener) give(c net.Conn, h1 bool, pre []byte, maxHead int) {
	if h1 {
		g := newGuardConn(c, pre, maxHead)
		if tc, ok := c.(*tls.Conn); ok {
			st := tc.ConnectionState()
			g.tls = &st
		}
		c = g
	}
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// watch arms the client watch for one upstream exchange on up: when the
// upstream has not answered within watchAfter, a goroutine reads from the
// client, and if the client went away, up's deadline passes so that the
// exchange ends. Anything the client sends meanwhile (a pipelined
// request) stays buffered. unwatch disarms it and says whether the client
// went away.
func (fc *fastConn) watch(up net.Conn) {
	fc.watchMu.Lock()
	fc.watchUp, fc.armed = up, true
	fc.watchMu.Unlock()
	if fc.watchTimer == nil {
		fc.watchDone = make(chan bool, 1)
		fc.watchTimer = time.AfterFunc(watchAfter, fc.startWatch)
		return
	}
	fc.watchTimer.Reset(watchAfter)
}

// startWatch is the watch's goroutine. A timer that fired late finds the
// watch disarmed, or armed for the next exchange; at most one runs.
func (fc *fastConn) startWatch() {
	fc.watchMu.Lock()
	if !fc.armed {
		fc.watchMu.Unlock()
		return
	}
	up := fc.watchUp
	fc.armed, fc.watching = false, true
	// Cleared under the lock: unwatch's deadline comes after.
	fc.c.SetReadDeadline(time.Time{})
	fc.watchMu.Unlock()
	_, err := fc.br.Peek(1)
	fc.watchMu.Lock()
	gone := err != nil && !fc.stopping
	fc.watchMu.Unlock()
	if gone {
		up.SetDeadline(time.Unix(1, 0))
	}
	fc.watchDone <- gone
}

func (fc *fastConn) unwatch() (gone bool) {
	fc.watchTimer.Stop()
	fc.watchMu.Lock()
	watching := fc.watching
	fc.armed, fc.watching, fc.stopping = false, false, watching
	fc.watchMu.Unlock()
	if !watching {
		return false
	}
	fc.c.SetReadDeadline(time.Unix(1, 0))
	gone = <-fc.watchDone
	fc.watchMu.Lock()
	fc.stopping = false
	fc.watchMu.Unlock()
	fc.c.SetReadDeadline(time.Time{})
	return gone
}
