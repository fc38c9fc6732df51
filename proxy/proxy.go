package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Bans is what the proxy needs from the jail engine: whether an address is
// banned for a host port, and a place to report rate-limit rejections.
// Failure must not block: it is called on the request path.
type Bans interface {
	Blocks(a netip.Addr, port uint16) bool
	Failure(jail string, a netip.Addr, t time.Time)
}

// Options are the proxy's collaborators.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of the rate limiters and the access log.
	Now func() time.Time
	// Bans is asked and told about clients; nil bans nobody.
	Bans    Bans
	Metrics *Metrics
	// Transport reaches the upstreams (a tuned http.Transport when nil).
	Transport http.RoundTripper
}

// Proxy is the reverse proxy: New validates and prepares, Listen binds,
// Run serves until its context ends.
type Proxy struct {
	log     *slog.Logger
	now     func() time.Time
	bans    Bans
	metrics *Metrics
	rt      http.RoundTripper
	// h1 is the upstream transport when it is moat's own: the fast path
	// (fast.go) runs only then.
	h1  *h1Transport
	cfg Config

	table  atomic.Pointer[table]
	rp     *httputil.ReverseProxy
	access *AccessLog
	certs  *Certs

	// refusedBanned and refusedConns count connections closed at accept:
	// banned peers, and peers over the connection cap.
	refusedBanned, refusedConns atomic.Int64
	// httpsPort is the bound HTTPS port, for redirects.
	httpsPort atomic.Uint32

	mu      sync.Mutex
	servers []*listener
	// noFast turns the fast path off (tests compare the two paths).
	noFast bool
	// fastServed counts the requests the fast path answered.
	fastServed atomic.Int64
}

// listener is one bound address with the server that will serve it.
type listener struct {
	ln   *capListener
	srv  *http.Server
	tls  bool
	port uint16
	// fast serves the listener's connections when its handler is the
	// proxy; net/http then serves only those fast hands over.
	fast *fastServer
}

// table is the routing state of one configuration, swapped whole by Update.
type table struct {
	cfg    Config
	routes []*route // most specific first
	global *Limiter
}

// route is a configured route, ready to serve.
type route struct {
	Route
	name  string
	pool  *pool
	limit *Limiter
	// plain: every upstream is plain HTTP (the fast path takes the route).
	plain bool
}

// New checks cfg and prepares the proxy: routes, limiters, the access log
// and the certificates (without network access). The errors name the
// route and the value.
func New(ctx context.Context, cfg Config, o Options) (*Proxy, error) {
	p := &Proxy{log: o.Logger, now: o.Now, bans: o.Bans, metrics: o.Metrics, rt: o.Transport}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.bans == nil {
		p.bans = noBans{}
	}
	if p.rt == nil {
		std := newTransport()
		p.h1 = newH1Transport(std, std.DialContext)
		p.rt = p.h1
	}
	cfg = withDefaults(cfg)
	t, err := p.newTable(cfg)
	if err != nil {
		return nil, err
	}
	p.cfg = cfg
	p.table.Store(t)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transportFunc(p.roundTrip),
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BufferPool:     copyBuffers{},
	}
	if cfg.TLS.Mode != TLSOff && cfg.HTTPS != "" {
		certs, err := NewCerts(ctx, cfg.TLS, Hosts(cfg.Routes), cfg.StateDir, CertOptions{Logger: p.log.With("component", "certs"), HTTPAddr: cfg.HTTP, HTTPSAddr: cfg.HTTPS})
		if err != nil {
			return nil, fmt.Errorf("proxy tls: %w", err)
		}
		p.certs = certs
	}
	if cfg.AccessLog != "" {
		a, err := OpenAccessLog(cfg.AccessLog, p.log.With("component", "accesslog"))
		if err != nil {
			if p.certs != nil {
				p.certs.Close()
			}
			return nil, fmt.Errorf("proxy access log: %w", err)
		}
		p.access = a
	}
	return p, nil
}

// withDefaults fills the limits Config leaves zero.
func withDefaults(cfg Config) Config {
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxConnsPerClient == 0 {
		cfg.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = DefaultIPv6Prefix
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Jail == "" {
		cfg.Jail = DefaultJail
	}
	if cfg.ClientHeader == "" {
		cfg.ClientHeader = HeaderXFF
	}
	if cfg.TLS.Mode == "" {
		cfg.TLS.Mode = TLSOff
	}
	return cfg
}

func (p *Proxy) newTable(cfg Config) (*table, error) {
	if len(cfg.Routes) == 0 {
		return nil, errors.New("proxy: no routes")
	}
	lo := LimiterOptions{IPv6Prefix: cfg.IPv6Prefix, Exempt: cfg.Exempt, MaxKeys: cfg.MaxKeys, Now: p.now}
	t := &table{cfg: cfg}
	if cfg.Global != nil {
		t.global = NewLimiter("global", *cfg.Global, lo)
	}
	for i, rc := range cfg.Routes {
		r := &route{Route: rc, name: routeName(rc, i)}
		if r.Path == "" {
			r.Path = "/"
		}
		for j, h := range r.Hosts {
			r.Hosts[j] = strings.ToLower(h)
		}
		if len(rc.Upstreams) == 0 {
			return nil, fmt.Errorf("proxy route %s: no upstream", r.name)
		}
		var urls []*url.URL
		r.plain = true
		for _, s := range rc.Upstreams {
			u, err := ParseUpstream(s)
			if err != nil {
				return nil, fmt.Errorf("proxy route %s: %w", r.name, err)
			}
			urls = append(urls, u)
			r.plain = r.plain && u.Scheme == "http"
		}
		r.pool = newPool(urls, p.now)
		if rc.Limit != nil {
			r.limit = NewLimiter(r.name, *rc.Limit, lo)
		}
		if r.MaxBodyBytes == 0 {
			r.MaxBodyBytes = DefaultMaxBodyBytes
		}
		t.routes = append(t.routes, r)
	}
	// Host routes before catch-all ones, then longer paths first: the
	// first match is the most specific.
	slices.SortStableFunc(t.routes, func(a, b *route) int {
		if (len(a.Hosts) == 0) != (len(b.Hosts) == 0) {
			if len(a.Hosts) == 0 {
				return 1
			}
			return -1
		}
		return len(b.Path) - len(a.Path)
	})
	return t, nil
}

// routeName labels a route in metrics and logs: its first host and path.
func routeName(r Route, i int) string {
	host := "*"
	if len(r.Hosts) > 0 {
		host = strings.ToLower(r.Hosts[0])
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	if host == "*" && path == "/" && i > 0 {
		return fmt.Sprintf("route%d", i+1)
	}
	return host + path
}

// match is the route for host and path, or nil.
func (t *table) match(host, path string) *route {
	host = hostOnly(host)
	for _, r := range t.routes {
		if len(r.Hosts) > 0 && !hostMatches(r.Hosts, host) {
			continue
		}
		if pathMatches(r.Path, path) {
			return r
		}
	}
	return nil
}

// hostOnly is a Host header without its port, lower case, without a
// trailing dot.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["), ".")
	return strings.ToLower(h)
}

func hostMatches(hosts []string, h string) bool {
	for _, x := range hosts {
		if x == h {
			return true
		}
		if rest, ok := strings.CutPrefix(x, "*."); ok {
			if strings.HasSuffix(h, "."+rest) && !strings.Contains(h[:len(h)-len(rest)-1], ".") {
				return true
			}
		}
	}
	return false
}

// pathMatches says whether prefix covers path whole segments: /api covers
// /api and /api/x, not /apix.
func pathMatches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// Update swaps in a new configuration's routes, limits and client-address
// settings. Listen addresses, TLS, the certificates' host names and the
// access log are fixed when the proxy starts: Update returns what of those
// differs from the running proxy, to be applied at the next start. On an
// error nothing changes.
func (p *Proxy) Update(cfg Config) (pending []string, err error) {
	cfg = withDefaults(cfg)
	t, err := p.newTable(cfg)
	if err != nil {
		return nil, err
	}
	old := p.cfg
	if cfg.HTTP != old.HTTP || cfg.HTTPS != old.HTTPS {
		pending = append(pending, "listeners")
	}
	if cfg.TLS != old.TLS {
		pending = append(pending, "tls")
	}
	if old.TLS.Mode != TLSOff && !slices.Equal(Hosts(cfg.Routes), Hosts(old.Routes)) {
		pending = append(pending, "certificate host names")
	}
	if cfg.AccessLog != old.AccessLog {
		pending = append(pending, "access_log")
	}
	if cfg.ReadHeaderTimeout != old.ReadHeaderTimeout || cfg.IdleTimeout != old.IdleTimeout ||
		cfg.MaxHeaderBytes != old.MaxHeaderBytes || cfg.MaxConnsPerClient != old.MaxConnsPerClient {
		pending = append(pending, "connection limits")
	}
	p.table.Store(t)
	return pending, nil
}

// RootPath is the PEM file of the internal CA's root ("" unless tls mode
// is internal).
func (p *Proxy) RootPath() string {
	if p.certs == nil {
		return ""
	}
	return p.certs.RootPath()
}

// Listen binds the configured addresses. It is separate from Run so that a
// port already in use is an error before anything else starts.
func (p *Proxy) Listen() error {
	cfg := p.cfg
	tlsOn := cfg.TLS.Mode != TLSOff && cfg.HTTPS != ""
	if cfg.HTTP != "" {
		h := http.Handler(p)
		if tlsOn {
			h = p.certs.HTTPChallenge(http.HandlerFunc(p.redirect))
		}
		if err := p.bind(cfg.HTTP, h, false); err != nil {
			return err
		}
	}
	if tlsOn {
		if err := p.bind(cfg.HTTPS, p, true); err != nil {
			p.closeListeners()
			return err
		}
	}
	return nil
}

func (p *Proxy) bind(addr string, h http.Handler, isTLS bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy listen %s: %w", addr, err)
	}
	var port uint16
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		port = uint16(ta.Port)
	}
	cfg := p.cfg
	max := cfg.MaxConnsPerClient
	blocked := func(a netip.Addr) bool { return p.bans.Blocks(a, port) }
	refused := func(reason string) {
		if reason == "banned" {
			p.refusedBanned.Add(1)
		} else {
			p.refusedConns.Add(1)
		}
	}
	cl := newCapListener(ln, max, cfg.IPv6Prefix, append(slices.Clone(cfg.TrustedProxies), cfg.Exempt...), blocked, refused)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	l := &listener{ln: cl, srv: srv, tls: isTLS, port: port}
	if isTLS {
		srv.TLSConfig = p.certs.TLSConfig()
		p.httpsPort.Store(uint32(port))
	}
	if h == http.Handler(p) {
		// net/http serves the connections fast hands over, already
		// through TLS: its TLSConfig (with "h2") only turns HTTP/2 on.
		// With the fast path off it hands each over at once.
		l.fast = newFastServer(p, l, srv.TLSConfig)
		l.fast.on = p.h1 != nil && !p.noFast
		srv.ConnContext = connContext
	}
	p.mu.Lock()
	p.servers = append(p.servers, l)
	p.mu.Unlock()
	return nil
}

// Addrs is the bound addresses, HTTP first (for tests and the start log).
func (p *Proxy) Addrs() []net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []net.Addr
	for _, l := range p.servers {
		out = append(out, l.ln.Addr())
	}
	return out
}

func (p *Proxy) closeListeners() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.servers {
		l.ln.Close()
	}
	p.servers = nil
}

// shutdownGrace bounds how long Run waits for requests in flight.
const shutdownGrace = 5 * time.Second

// Run serves on the bound listeners (Listen is called first if it was
// not) and obtains certificates, until ctx ends; then it stops accepting,
// lets requests in flight finish for a few seconds, and closes the access
// log.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	bound := len(p.servers) > 0
	p.mu.Unlock()
	if !bound {
		if err := p.Listen(); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if p.certs != nil {
		g.Go(func() error {
			if err := p.certs.Manage(gctx); err != nil && gctx.Err() == nil {
				p.log.Error("certificates", "error", err)
			}
			return nil
		})
		g.Go(func() error { p.reportExpiry(gctx); return nil })
	}
	p.mu.Lock()
	servers := slices.Clone(p.servers)
	p.mu.Unlock()
	for _, l := range servers {
		g.Go(func() error {
			var err error
			switch {
			case l.fast != nil:
				err = l.srv.Serve(l.fast.handed)
			case l.tls:
				err = l.srv.ServeTLS(l.ln, "", "")
			default:
				err = l.srv.Serve(l.ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("proxy serve %s: %w", l.ln.Addr(), err)
		})
		if l.fast != nil {
			g.Go(func() error {
				if err := l.fast.serve(); err != nil {
					return fmt.Errorf("proxy serve %s: %w", l.ln.Addr(), err)
				}
				return nil
			})
		}
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownGrace)
		defer cancel()
		var wg sync.WaitGroup
		for _, l := range servers {
			if l.fast != nil {
				l.fast.closing.Store(true)
				l.ln.Close()
				wg.Go(func() { l.fast.shutdown(sctx) })
			}
			if err := l.srv.Shutdown(sctx); err != nil {
				l.srv.Close()
			}
		}
		wg.Wait()
		return nil
	})
	err := g.Wait()
	if p.access != nil {
		if cerr := p.access.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if p.certs != nil {
		p.certs.Close()
	}
	return err
}

// expiryEvery is how often certificate expiry is copied to the metrics.
const expiryEvery = time.Minute

// reportExpiry copies the served certificates' expiry to the metrics until
// ctx ends: soon after start (when the first ones are in), then each minute.
func (p *Proxy) reportExpiry(ctx context.Context) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for h, na := range p.certs.Expiries() {
			p.metrics.CertExpiry(h, na)
		}
		t.Reset(expiryEvery)
	}
}

// ReopenLog reopens the access log (after a rotation; SIGUSR1).
func (p *Proxy) ReopenLog() error {
	if p.access == nil {
		return nil
	}
	return p.access.Reopen()
}

// redirect sends plain-HTTP requests for a known host to HTTPS (308 keeps
// the method and body); unknown hosts get 404, so the redirect cannot be
// used to point anywhere.
func (p *Proxy) redirect(w http.ResponseWriter, r *http.Request) {
	t := p.table.Load()
	host := hostOnly(r.Host)
	if host == "" || t.match(host, r.URL.Path) == nil {
		http.NotFound(w, r)
		return
	}
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if strings.Contains(host, ":") {
		u.Host = "[" + host + "]"
	}
	if port := p.httpsPort.Load(); port != 443 && port != 0 {
		u.Host = net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	w.Header().Set("Location", u.String())
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusPermanentRedirect)
}

// reqState follows one request through the proxy.
type reqState struct {
	client   netip.Addr
	peer     netip.Addr
	trusted  bool
	route    *route
	path     string      // the path routes matched (normpath.go)
	answer   http.Header // the answer's fields
	upstream string
	upDur    time.Duration
}

type stateKey struct{}

// ServeHTTP serves one request: a banned client is refused, the route is
// found, the rate limits are applied (a rejection is a failure in the
// proxy's jail), the body is capped and the request goes upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	t := p.table.Load()
	if r.TLS == nil {
		// A TLS connection the fast path handed over (connContext).
		r.TLS, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}
	st := &reqState{peer: peerAddr(r.RemoteAddr)}
	st.trusted = len(t.cfg.TrustedProxies) > 0 && trusted(st.peer, t.cfg.TrustedProxies)
	st.client = clientAddr(st.peer, r.Header, t.cfg.ClientHeader, t.cfg.TrustedProxies)
	rec := &recorder{ResponseWriter: w, rc: http.NewResponseController(w), send: t.cfg.SendTimeout}
	rec.extend()
	limited := false
	defer func() {
		p.finish(r, rec, st, start, limited)
	}()
	if r.TLS != nil && t.cfg.TLS.HSTS > 0 {
		w.Header().Set("Strict-Transport-Security", "max-age="+strconv.FormatInt(int64(t.cfg.TLS.HSTS/time.Second), 10))
	}
	// refuse answers code and closes the connection.
	refuse := func(code int) {
		w.Header().Set("Connection", "close")
		http.Error(rec, http.StatusText(code), code)
	}
	match, why := screen(r, &t.cfg)
	if why != "" {
		p.log.Debug("request refused", "client", st.client, "reason", string(why))
		refuse(http.StatusBadRequest)
		return
	}
	st.path, st.answer = match, w.Header()
	if p.bans.Blocks(st.client, localPort(r)) {
		refuse(http.StatusForbidden)
		return
	}
	st.route = t.match(r.Host, match)
	if st.route == nil {
		http.Error(rec, "404 page not found", http.StatusNotFound)
		return
	}
	for _, l := range [2]*Limiter{t.global, st.route.limit} {
		if l == nil {
			continue
		}
		d := l.Allow(st.client)
		d.SetHeaders(w.Header())
		if !d.Allowed {
			limited = true
			p.bans.Failure(t.cfg.Jail, st.client, start)
			http.Error(rec, "Too Many Requests", http.StatusTooManyRequests)
			return
		}
	}
	max := st.route.MaxBodyBytes
	if max > 0 && r.ContentLength > max {
		refuse(http.StatusRequestEntityTooLarge)
		return
	}
	if r.Body != nil && r.Body != http.NoBody && r.Header.Get("Upgrade") == "" {
		if code := p.spool(w, r, max, t.cfg.BodyTimeout); code != 0 {
			refuse(code)
			return
		}
		defer r.Body.Close()
		rec.extend()
	}
	p.rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// localPort is the host port a request came in on (0 if unknown).
func localPort(r *http.Request) uint16 {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := a.(*net.TCPAddr); ok {
			return uint16(ta.Port)
		}
	}
	return 0
}

// finish writes the access log entry and the metrics of a request.
func (p *Proxy) finish(r *http.Request, rec *recorder, st *reqState, start time.Time, limited bool) {
	status := rec.status
	if status == 0 {
		switch {
		case rec.hijacked:
			status = http.StatusSwitchingProtocols
		case r.Context().Err() != nil:
			status = statusClientGone
		default:
			status = http.StatusOK
		}
	}
	bytes := rec.bytes
	if r.Method == http.MethodHead {
		bytes = 0 // net/http sends no body, whatever the handler wrote
	}
	path := st.path
	if path == "" {
		path = r.URL.Path
	}
	p.record(st, start, status, bytes, limited, r.Host, r.Method, path)
}

// record writes one request's access log entry and metrics.
func (p *Proxy) record(st *reqState, start time.Time, status int, bytes int64, limited bool, host, method, path string) {
	name := ""
	if st.route != nil {
		name = st.route.name
	}
	p.metrics.Request(name, status, st.upDur, limited)
	if p.access != nil {
		p.access.Write(Entry{
			Time: start, Client: st.client, Host: host, Method: method, Path: path,
			Status: status, Bytes: bytes, Duration: p.now().Sub(start), Upstream: st.upstream, RateLimited: limited,
		})
	}
}

// rewrite builds the upstream request: the forwarding headers (trusted
// proxies' values are kept and extended, anyone else's replaced) and
// X-Real-IP. ReverseProxy has already removed hop-by-hop headers and the
// client's X-Forwarded-* and Forwarded.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return
	}
	in, out := pr.In.Header, pr.Out.Header
	peer := st.peer.String()
	xff := peer
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	host := pr.In.Host
	if st.trusted {
		if prior := strings.Join(in.Values(HeaderXFF), ", "); prior != "" {
			xff = prior + ", " + peer
		}
		if v := in.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
		if v := in.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
	}
	out.Set(HeaderXFF, xff)
	out.Set("X-Forwarded-Proto", proto)
	out.Set("X-Forwarded-Host", host)
	out.Set("X-Real-IP", st.client.String())
	pr.Out.Host = pr.In.Host
}

// roundTrip is the ReverseProxy's transport: the route's pool picks the
// upstream.
func (p *Proxy) roundTrip(out *http.Request) (*http.Response, error) {
	st, _ := out.Context().Value(stateKey{}).(*reqState)
	if st == nil || st.route == nil {
		return nil, errors.New("request without a route")
	}
	t0 := time.Now()
	resp, u, err := st.route.pool.roundTrip(p.rt, out)
	st.upDur = time.Since(t0)
	if u != nil {
		st.upstream = u.url.Host
	}
	return resp, err
}

type transportFunc func(*http.Request) (*http.Response, error)

func (f transportFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// modifyResponse drops the upstream's software banner. An upgrade the
// upstream turned down closes the connection afterwards: the framing guard
// stopped reading the client's stream at the upgrade request (guard.go).
func modifyResponse(resp *http.Response) error {
	resp.Header.Del("Server")
	resp.Header.Del("X-Powered-By")
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Request != nil && resp.Request.Header.Get("Upgrade") != "" {
		if st, _ := resp.Request.Context().Value(stateKey{}).(*reqState); st != nil && st.answer != nil {
			st.answer.Set("Connection", "close")
		}
	}
	return nil
}

// upstreamError answers a request no upstream took: 502, or 504 on a
// timeout; nothing when the client went away.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	code := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code = http.StatusGatewayTimeout
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		code = http.StatusRequestEntityTooLarge
	}
	p.log.Debug("upstream", "host", r.Host, "error", err)
	http.Error(w, http.StatusText(code), code)
}

// newTransport is the upstream transport: enough idle connections per
// upstream for a busy host, bounded connect time, no proxy from the
// environment.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:            (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: maxAnswerHead,
		ExpectContinueTimeout:  time.Second,
		// Bodies pass through as the upstream sends them: no gzip asked
		// for on the client's behalf, none undone.
		DisableCompression: true,
	}
}

// copyBuffers lends ReverseProxy its 32 KiB copy buffers: without a pool
// each response allocates one, and the garbage collector took a quarter of
// the proxy's CPU in bench/proxy.sh.
type copyBuffers struct{}

// copyBufSize is the size of the pooled buffers.
const copyBufSize = 32 << 10

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == copyBufSize {
		b = b[:cap(b)]
		copyBufferPool.Put(&b)
	}
}

// recorder notes the status and size of a response. It keeps the writer's
// flushing and hijacking reachable (Unwrap) for streams and WebSockets.
// Each write may wait send at most (Config.SendTimeout).
type recorder struct {
	http.ResponseWriter
	rc       *http.ResponseController // of ResponseWriter
	send     time.Duration
	status   int
	bytes    int64
	hijacked bool
}

// extend gives the next write its time.
func (r *recorder) extend() {
	if r.send > 0 {
		_ = r.rc.SetWriteDeadline(time.Now().Add(r.send))
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.extend()
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() {
	r.extend()
	_ = r.rc.Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := r.rc.Hijack()
	if err == nil {
		r.hijacked = true
		// A switched protocol has no write timeout of the proxy's.
		c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// noBans bans nobody.
type noBans struct{}

func (noBans) Blocks(netip.Addr, uint16) bool        { return false }
func (noBans) Failure(string, netip.Addr, time.Time) {}
