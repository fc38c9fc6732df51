package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// errClientGone ends an upstream exchange whose client went away.
var errClientGone = errors.New("client went away")

// The requests ReadResponse is given for a fast-path answer: it reads
// only the method (a HEAD answer has no body).
var (
	getRequest  = &http.Request{Method: http.MethodGet}
	headRequest = &http.Request{Method: http.MethodHead}
)

// serveFast serves the request whose head is in fc.head, as ServeHTTP
// would: ban check, route, rate limits, the upstream exchange, the access
// log and metrics. A request ServeHTTP must answer (banned, no route, an
// https upstream) is handed over before anything is counted.
func (p *Proxy) serveFast(fc *fastConn) int {
	h := &fc.head
	start := p.now()
	t := p.table.Load()
	fc.send = t.cfg.SendTimeout
	st := reqState{peer: fc.peer, client: fc.peer}
	if len(t.cfg.TrustedProxies) > 0 && trusted(fc.peer, t.cfg.TrustedProxies) {
		st.trusted = true
		vals := h.xff
		if t.cfg.ClientHeader == HeaderForwarded {
			vals = h.forwarded
		}
		st.client = clientAddr(fc.peer, http.Header{t.cfg.ClientHeader: vals}, t.cfg.ClientHeader, t.cfg.TrustedProxies)
	}
	if p.bans.Blocks(st.client, fc.port) {
		return fastHandoff
	}
	host := string(h.host)
	st.route = t.match(host, h.path)
	if st.route == nil || !st.route.plain {
		return fastHandoff
	}
	fc.br.Discard(h.size)
	p.fastServed.Add(1)
	after := fastNext
	if h.close {
		after = fastClose
	}
	method := http.MethodGet
	if h.head {
		method = http.MethodHead
	}
	var ds [2]Decision
	nd := 0
	// fail answers with code, the limiters' fields and a short text, as
	// ServeHTTP's http.Error does.
	fail := func(code int, limited bool) int {
		hdr := http.Header{}
		for _, d := range ds[:nd] {
			d.SetHeaders(hdr)
		}
		n, err := fc.writeError(hdr, code, h, t)
		if err != nil {
			after = fastClose
		}
		p.record(&st, start, code, n, limited, host, method, h.path)
		return after
	}
	for _, l := range [2]*Limiter{t.global, st.route.limit} {
		if l == nil {
			continue
		}
		ds[nd] = l.Allow(st.client)
		nd++
		if !ds[nd-1].Allowed {
			p.bans.Failure(t.cfg.Jail, st.client, start)
			return fail(http.StatusTooManyRequests, true)
		}
	}

	t0 := time.Now()
	resp, pc, u, err := p.fastUpstream(fc, &st, h)
	st.upDur = time.Since(t0)
	if u != nil {
		st.upstream = u.url.Host
	}
	if err != nil {
		if errors.Is(err, errClientGone) {
			p.record(&st, start, statusClientGone, 0, false, host, method, h.path)
			return fastClose
		}
		p.log.Debug("upstream", "host", host, "error", err)
		code := http.StatusBadGateway
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusGatewayTimeout
		}
		return fail(code, false)
	}
	n, ok := fc.writeAnswer(resp, pc, p.h1, h, t, ds[:nd])
	if !ok {
		after = fastClose
	}
	p.record(&st, start, resp.StatusCode, n, false, host, method, h.path)
	return after
}

// write writes b to the client, waiting at most the send timeout: a
// client that stops reading an answer is closed (nginx's send_timeout).
func (fc *fastConn) write(b []byte) (int, error) {
	fc.c.SetWriteDeadline(time.Now().Add(fc.send))
	n, err := fc.c.Write(b)
	if isTimeout(err) {
		abort(fc.raw)
	}
	return n, err
}

// isTimeout says whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusClientGone is logged for a request whose client went away before
// the answer (nginx's 499).
const statusClientGone = 499

// fastUpstream sends the request to the route's upstreams in turn, moving
// on when one refuses the connection, as pool.roundTrip does.
func (p *Proxy) fastUpstream(fc *fastConn, st *reqState, h *h1Head) (*http.Response, *h1Conn, *upstream, error) {
	var last *upstream
	var lastErr error
	pool := st.route.pool
	for _, u := range pool.order() {
		req := fc.request(st, h, u.url.Path)
		resp, pc, err := p.h1.exchange(u.url.Host, req, h.head, fc)
		if err == nil {
			pool.markUp(u)
			return resp, pc, u, nil
		}
		last, lastErr = u, err
		if !refused(err) {
			return nil, nil, u, err
		}
		pool.markDown(u)
	}
	return nil, nil, last, lastErr
}

// request writes the upstream request into fc.out, as rewrite builds it
// for ServeHTTP: the target under the upstream's base path, the client's
// Host and fields less the hop-by-hop ones, and the forwarding fields.
func (fc *fastConn) request(st *reqState, h *h1Head, base string) []byte {
	b := fc.out[:0]
	if h.head {
		b = append(b, "HEAD "...)
	} else {
		b = append(b, "GET "...)
	}
	b = append(append(append(b, base...), h.target...), " HTTP/1.1\r\nHost: "...)
	b = append(append(b, h.host...), crlf...)
	b = append(b, h.fields...)
	b = append(b, "X-Forwarded-For: "...)
	if st.trusted && len(h.xff) > 0 {
		b = append(append(b, strings.Join(h.xff, ", ")...), ", "...)
	}
	b = append(st.peer.AppendTo(b), "\r\nX-Forwarded-Proto: "...)
	switch {
	case st.trusted && len(h.xfProto) > 0:
		b = append(b, h.xfProto...)
	case fc.tls:
		b = append(b, "https"...)
	default:
		b = append(b, "http"...)
	}
	b = append(b, "\r\nX-Forwarded-Host: "...)
	if st.trusted && len(h.xfHost) > 0 {
		b = append(b, h.xfHost...)
	} else {
		b = append(b, h.host...)
	}
	b = append(st.client.AppendTo(append(b, "\r\nX-Real-IP: "...)), "\r\n\r\n"...)
	fc.out = b
	return b
}

// exchange sends a request written out as bytes (GET or HEAD, no body) to
// host over a kept-alive connection and reads the answer's head; the
// caller reads the body and gives pc back (finishBody). As in RoundTrip,
// a reused connection that fails before any answer is tried once more on a
// new one. w watches the client meanwhile.
func (t *h1Transport) exchange(host string, req []byte, head bool, w *fastConn) (*http.Response, *h1Conn, error) {
	method := getRequest
	if head {
		method = headRequest
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(context.Background(), host)
		if err != nil {
			return nil, nil, err
		}
		w.watch(pc.c)
		_, err = pc.c.Write(req)
		var resp *http.Response
		if err == nil {
			resp, err = readFinal(pc, method)
		}
		gone := w.unwatch()
		if err == nil && !gone {
			return resp, pc, nil
		}
		pc.c.Close()
		if gone {
			return nil, nil, errClientGone
		}
		if !reused || attempt > 0 || !staleConn(err) {
			return nil, nil, err
		}
	}
}

// finishBody gives pc back after an answer's body: to the pool when it was
// read whole and the upstream keeps the connection alive.
func (t *h1Transport) finishBody(pc *h1Conn, resp *http.Response, whole bool) {
	if whole && !resp.Close {
		t.put(pc)
		return
	}
	pc.c.Close()
}

// smallBody is the largest body sent in one write with its head.
const smallBody = 16 << 10

// writeAnswer writes the upstream's answer to the client, as ServeHTTP's
// ReverseProxy does: the fields less the hop-by-hop ones and the banner,
// the rate-limit fields, HSTS; a sized body as it is, any other chunked
// and passed on as it comes (server-sent events). It returns the body
// bytes written and whether the connection can go on.
func (fc *fastConn) writeAnswer(resp *http.Response, pc *h1Conn, t1 *h1Transport, h *h1Head, t *table, ds []Decision) (int64, bool) {
	code := resp.StatusCode
	b := statusLine(fc.out[:0], code)
	conn := resp.Header["Connection"]
	for k, vs := range resp.Header {
		if dropAnswerField(k, conn) {
			continue
		}
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	if _, ok := resp.Header["Date"]; !ok {
		b = appendField(b, "Date", httpDate())
	}
	b = fc.ourFields(b, t, ds, h.close)
	bodiless := h.head || code == http.StatusNoContent || code == http.StatusNotModified
	var trailers []string
	switch {
	case bodiless:
		if cl := resp.Header.Get("Content-Length"); cl != "" && code != http.StatusNoContent && allDigits(cl) {
			b = appendField(b, "Content-Length", cl)
		}
	case resp.ContentLength >= 0:
		b = append(strconv.AppendInt(append(b, "Content-Length: "...), resp.ContentLength, 10), crlf...)
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		for k := range resp.Trailer {
			trailers = append(trailers, k)
		}
		if len(trailers) > 0 {
			b = appendField(b, "Trailer", strings.Join(trailers, ", "))
		}
	}
	b = append(b, crlf...)
	fc.out = b[:0]

	if bodiless || resp.ContentLength == 0 {
		resp.Body.Close()
		t1.finishBody(pc, resp, true)
		_, err := fc.write(b)
		return 0, err == nil
	}
	if n := int(resp.ContentLength); n > 0 && n <= smallBody && len(b)+n <= copyBufSize {
		// Head and body in one write, from a pooled buffer: fc.out stays
		// small on an idle connection.
		bp := copyBufferPool.Get().(*[]byte)
		defer copyBufferPool.Put(bp)
		buf := append((*bp)[:0], b...)[:len(b)+n]
		if _, err := io.ReadFull(resp.Body, buf[len(b):]); err != nil {
			t1.finishBody(pc, resp, false)
			return 0, false
		}
		resp.Body.Close()
		t1.finishBody(pc, resp, true)
		_, err := fc.write(buf)
		return int64(n), err == nil
	}
	if _, err := fc.write(b); err != nil {
		t1.finishBody(pc, resp, false)
		return 0, false
	}
	n, whole, ok := fc.copyBody(resp, resp.ContentLength < 0)
	t1.finishBody(pc, resp, whole)
	return n, ok
}

// copyBody passes the answer's body on as it comes, each read in one
// write (chunked: one chunk). whole: the body was read to its end; ok:
// and written whole.
func (fc *fastConn) copyBody(resp *http.Response, chunked bool) (n int64, whole, ok bool) {
	bp := copyBufferPool.Get().(*[]byte)
	defer copyBufferPool.Put(bp)
	buf := *bp
	// A chunk is written as size, data and CRLF from one buffer: pre
	// bytes are kept in front for the size line, 2 behind.
	pre, post := 0, 0
	if chunked {
		pre, post = 10, 2
	}
	for {
		m, err := resp.Body.Read(buf[pre : len(buf)-post])
		if m > 0 {
			out := buf[pre : pre+m]
			if chunked {
				size := strconv.AppendInt(fc.out[:0], int64(m), 16)
				start := pre - len(size) - 2
				copy(buf[start:], size)
				buf[pre-2], buf[pre-1] = '\r', '\n'
				out = append(buf[start:pre+m], crlf...)
			}
			if _, werr := fc.write(out); werr != nil {
				return n, false, false
			}
			n += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, false, false
		}
	}
	resp.Body.Close()
	if chunked {
		end := append(fc.out[:0], "0\r\n"...)
		for k, vs := range resp.Trailer {
			for _, v := range vs {
				end = appendField(end, k, v)
			}
		}
		end = append(end, crlf...)
		if _, err := fc.write(end); err != nil {
			return n, true, false
		}
	}
	return n, true, true
}

// writeError answers with code and a short text body, as http.Error does,
// with hdr's fields and the proxy's own.
func (fc *fastConn) writeError(hdr http.Header, code int, h *h1Head, t *table) (int64, error) {
	body := http.StatusText(code) + "\n"
	b := statusLine(fc.out[:0], code)
	for k, vs := range hdr {
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	b = appendField(b, "Date", httpDate())
	b = fc.ourFields(b, t, nil, h.close)
	b = append(strconv.AppendInt(append(b, "Content-Length: "...), int64(len(body)), 10), "\r\n\r\n"...)
	n := 0
	if !h.head {
		b = append(b, body...)
		n = len(body)
	}
	fc.out = b[:0]
	_, err := fc.write(b)
	return int64(n), err
}

// ourFields appends what moat adds to every answer: the rate-limit fields
// of an allowed request, HSTS over TLS, and Connection: close when the
// client asked for it.
func (fc *fastConn) ourFields(b []byte, t *table, ds []Decision, close bool) []byte {
	for _, d := range ds {
		b = d.appendFields(b)
	}
	if fc.tls && t.cfg.TLS.HSTS > 0 {
		b = append(strconv.AppendInt(append(b, "Strict-Transport-Security: max-age="...), int64(t.cfg.TLS.HSTS/time.Second), 10), crlf...)
	}
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	return b
}

// statusLine appends an HTTP/1.1 status line as net/http writes it.
func statusLine(b []byte, code int) []byte {
	b = strconv.AppendInt(append(b, "HTTP/1.1 "...), int64(code), 10)
	if text := http.StatusText(code); text != "" {
		b = append(append(b, ' '), text...)
	} else {
		b = strconv.AppendInt(append(b, " status code "...), int64(code), 10)
	}
	return append(b, crlf...)
}

// appendField appends "k: v" and CRLF; CR and LF in v become spaces, as
// net/http writes them.
func appendField(b []byte, k, v string) []byte {
	b = append(append(append(b, k...), ": "...), v...)
	if strings.ContainsAny(v, "\r\n") {
		for i := len(b) - len(v); i < len(b); i++ {
			if b[i] == '\r' || b[i] == '\n' {
				b[i] = ' '
			}
		}
	}
	return append(b, crlf...)
}

// dropAnswerField says whether an upstream answer's field (canonical
// name) is not passed on: hop-by-hop fields and those the connection
// field names, the length (written anew), the software banner.
func dropAnswerField(k string, conn []string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length", "Server", "X-Powered-By":
		return true
	}
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if asciiFold(strings.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

// httpDate is the current time as a Date field, formatted once a second.
func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &dateStamp{sec: sec, text: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type dateStamp struct {
	sec  int64
	text string
}

var dateCache atomic.Pointer[dateStamp]
