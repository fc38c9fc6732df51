package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatproj/moat/internal/testkit"
)

// recBans is the jail engine's side as the proxy sees it: a set of banned
// addresses and the failures reported, recorded for the test to read.
type recBans struct {
	mu       sync.Mutex
	banned   map[netip.Addr]bool
	failures []netip.Addr
	jails    []string
}

func newRecBans() *recBans { return &recBans{banned: map[netip.Addr]bool{}} }

func (b *recBans) Blocks(a netip.Addr, port uint16) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.banned[a]
}

func (b *recBans) Failure(jail string, a netip.Addr, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = append(b.failures, a)
	b.jails = append(b.jails, jail)
}

func (b *recBans) ban(a string) {
	b.mu.Lock()
	b.banned[netip.MustParseAddr(a)] = true
	b.mu.Unlock()
}

func (b *recBans) failed() []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]netip.Addr(nil), b.failures...)
}

// echo is an upstream that answers with what it received.
func echo(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "upstream/1.2.3")
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "%s %s %s host=%s xff=%s proto=%s xhost=%s real=%s conn=%s keepalive=%s ae=%s foo=%s",
			name, r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Real-IP"), r.Header.Get("Connection"), r.Header.Get("Keep-Alive"),
			r.Header.Get("Accept-Encoding"), r.Header.Get("X-Foo"))
	}))
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// startProxy runs a proxy for cfg on loopback (TLS off unless cfg says)
// and returns its first address.
func startProxy(t *testing.T, cfg Config, bans Bans) (*Proxy, string) {
	t.Helper()
	return startProxyPath(t, cfg, bans, true)
}

// startProxyPath is startProxy with the fast path on or off.
func startProxyPath(t testing.TB, cfg Config, bans Bans, fast bool) (*Proxy, string) {
	t.Helper()
	if cfg.HTTP == "" && cfg.TLS.Mode == "" {
		cfg.HTTP = "127.0.0.1:0"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, cfg, Options{Bans: bans})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p.noFast = !fast
	if err := p.Listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p, p.Addrs()[0].String()
}

// fetch sends one request from a chosen loopback source address.
func fetch(t *testing.T, from, addr, host, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	c := clientFrom(from)
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s from %s: %v", host, path, from, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func clientFrom(from string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, DisableCompression: true}, Timeout: 10 * time.Second}
}

func TestRouting(t *testing.T) {
	a, b, c := echo("a"), echo("b"), echo("c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	_, addr := startProxy(t, Config{Routes: []Route{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{hostPort(a)}},
		{Hosts: []string{"app.example.com"}, Path: "/api", Upstreams: []string{"http://" + hostPort(b) + "/v1"}},
		{Hosts: []string{"*.example.org"}, Upstreams: []string{hostPort(c)}},
	}}, nil)
	for _, tc := range []struct {
		host, path string
		status     int
		want       string
	}{
		{"app.example.com", "/", 200, "a GET / "},
		{"APP.example.com:80", "/x?q=1", 200, "a GET /x?q=1 "},
		{"app.example.com", "/api", 200, "b GET /v1/api "},
		{"app.example.com", "/api/users?id=2", 200, "b GET /v1/api/users?id=2 "},
		{"app.example.com", "/apix", 200, "a GET /apix "},
		{"www.example.org", "/", 200, "c GET / "},
		{"a.b.example.org", "/", 404, ""},
		{"example.org", "/", 404, ""},
		{"other.example.net", "/", 404, ""},
	} {
		resp, body := fetch(t, "", addr, tc.host, tc.path, nil)
		if resp.StatusCode != tc.status || !strings.HasPrefix(body, tc.want) {
			t.Errorf("%s%s = %d %q, want %d %q…", tc.host, tc.path, resp.StatusCode, body, tc.status, tc.want)
		}
		if s := resp.Header.Get("Server"); s != "" {
			t.Errorf("%s%s: Server header %q reached the client", tc.host, tc.path, s)
		}
	}
}

func TestForwardingHeaders(t *testing.T) {
	up := echo("up")
	defer up.Close()
	trust := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	bans := newRecBans()
	_, addr := startProxy(t, Config{TrustedProxies: trust, Routes: []Route{
		{Upstreams: []string{hostPort(up)}, Limit: &Limit{Rate: 0.001, Burst: 1, Window: time.Second}},
	}}, bans)
	spoof := http.Header{
		"X-Forwarded-For":   {"198.51.100.77"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"evil.example.net"},
		"X-Real-Ip":         {"198.51.100.78"},
		"Connection":        {"X-Foo, keep-alive"},
		"X-Foo":             {"hop"},
		"Keep-Alive":        {"timeout=5"},
	}
	// An untrusted peer: its forwarding headers are replaced, hop-by-hop
	// headers are dropped, and it is the one limited.
	_, body := fetch(t, "127.0.0.3", addr, "app.example.com", "/", spoof)
	// No Accept-Encoding is added on the client's behalf either.
	for _, want := range []string{"xff=127.0.0.3 ", "proto=http ", "xhost=app.example.com ", "real=127.0.0.3 ", "conn= ", "keepalive= ", "ae= ", "foo="} {
		if !strings.Contains(body, want) {
			t.Errorf("untrusted peer: upstream saw %q, want %q", body, want)
		}
	}
	resp, _ := fetch(t, "127.0.0.3", addr, "app.example.com", "/", spoof)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second request = %d, want 429", resp.StatusCode)
	}
	if got := bans.failed(); len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("failures = %v, want the peer 127.0.0.3, not the spoofed address", got)
	}
	// A trusted proxy: the chain is kept and extended, the client is its
	// rightmost untrusted entry, and that client is the one limited.
	_, body = fetch(t, "127.0.0.2", addr, "app.example.com", "/", spoof)
	for _, want := range []string{"xff=198.51.100.77, 127.0.0.2 ", "proto=https ", "xhost=evil.example.net ", "real=198.51.100.77 "} {
		if !strings.Contains(body, want) {
			t.Errorf("trusted peer: upstream saw %q, want %q", body, want)
		}
	}
	resp, _ = fetch(t, "127.0.0.2", addr, "app.example.com", "/", spoof)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("trusted: second request = %d, want 429", resp.StatusCode)
	}
	if got := bans.failed(); len(got) != 2 || got[1] != netip.MustParseAddr("198.51.100.77") {
		t.Errorf("failures = %v, want 198.51.100.77 second", got)
	}
	// Another client behind the same proxy is not limited by the first.
	other := http.Header{"X-Forwarded-For": {"198.51.100.99"}}
	if resp, _ := fetch(t, "127.0.0.2", addr, "app.example.com", "/", other); resp.StatusCode != 200 {
		t.Errorf("other client behind the proxy = %d, want 200", resp.StatusCode)
	}
}

func TestRateLimitHeaders(t *testing.T) {
	up := echo("up")
	defer up.Close()
	bans := newRecBans()
	_, addr := startProxy(t, Config{Jail: "web", Routes: []Route{
		{Upstreams: []string{hostPort(up)}, Limit: &Limit{Rate: 1.0 / 60, Burst: 3, Window: time.Minute}},
	}}, bans)
	for i := range 3 {
		resp, _ := fetch(t, "127.0.0.4", addr, "a.example.com", "/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d = %d, want 200", i, resp.StatusCode)
		}
		if resp.Header.Get("RateLimit-Policy") == "" || resp.Header.Get("RateLimit") == "" {
			t.Errorf("request %d: no RateLimit headers: %v", i, resp.Header)
		}
	}
	resp, _ := fetch(t, "127.0.0.4", addr, "a.example.com", "/", nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th request = %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want seconds until a token is back", ra)
	}
	if !strings.Contains(resp.Header.Get("RateLimit"), "r=0") {
		t.Errorf("RateLimit = %q, want r=0", resp.Header.Get("RateLimit"))
	}
	bans.mu.Lock()
	jails := append([]string(nil), bans.jails...)
	bans.mu.Unlock()
	if len(jails) != 1 || jails[0] != "web" {
		t.Errorf("failure jails = %v, want [web]", jails)
	}
	// Another client is served.
	if resp, _ := fetch(t, "127.0.0.5", addr, "a.example.com", "/", nil); resp.StatusCode != 200 {
		t.Errorf("other client = %d, want 200", resp.StatusCode)
	}
}

func TestBannedClientRefused(t *testing.T) {
	up := echo("up")
	defer up.Close()
	bans := newRecBans()
	p, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, bans)
	// Banned while connected: the next request on the connection gets 403.
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}).DialContext}
	c := &http.Client{Transport: tr}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("before ban: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body) // read to the end, so the connection is reused
	resp.Body.Close()
	bans.ban("127.0.0.6")
	resp, err = c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("banned on an open connection = %d, want 403", resp.StatusCode)
	}
	// A new connection is closed at accept.
	if _, err := clientFrom("127.0.0.6").Get("http://" + addr + "/"); err == nil {
		t.Error("a banned client's new connection was served")
	}
	if p.refusedBanned.Load() == 0 {
		t.Error("no connection counted as refused for a ban")
	}
	if resp, _ := fetch(t, "127.0.0.7", addr, "a.example.com", "/", nil); resp.StatusCode != 200 {
		t.Errorf("unbanned client = %d, want 200", resp.StatusCode)
	}
}

func TestUpstreamFailover(t *testing.T) {
	a, b := echo("a"), echo("b")
	defer a.Close()
	dead := hostPort(b)
	b.Close() // refuses connections from now on
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(a), dead}}}}, nil)
	for i := range 6 {
		resp, body := fetch(t, "", addr, "x.example.com", "/", nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "a ") {
			t.Fatalf("request %d = %d %q, want a's answer", i, resp.StatusCode, body)
		}
	}
	// POST with a body moves on too, since nothing of it was sent.
	resp, err := clientFrom("").Post("http://"+addr+"/", "text/plain", strings.NewReader("payload"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST = %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestRoundRobin(t *testing.T) {
	a, b := echo("a"), echo("b")
	defer a.Close()
	defer b.Close()
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(a), hostPort(b)}}}}, nil)
	seen := map[string]int{}
	for range 10 {
		_, body := fetch(t, "", addr, "x.example.com", "/", nil)
		seen[body[:1]]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("answers = %v, want 5 each", seen)
	}
}

func TestBodyLimit(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d", n)
	}))
	defer up.Close()
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}, MaxBodyBytes: 1000}}}, nil)
	c := clientFrom("")
	resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "1000" {
		t.Errorf("body at the limit = %d %q", resp.StatusCode, b)
	}
	resp, err = c.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("declared body over the limit = %d, want 413", resp.StatusCode)
	}
	// A chunked body (no length declared) is cut off at the limit.
	pr, pw := io.Pipe()
	go func() {
		for range 20 {
			pw.Write([]byte(strings.Repeat("y", 100)))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", pr)
	resp, err = c.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("chunked body over the limit = 200, want refusal")
		}
	}
}

func TestStreamingAndUpgrade(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: second\n\n")
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", 400)
				return
			}
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			line, _ := rw.ReadString('\n')
			rw.WriteString("echo:" + line)
			rw.Flush()
		}
	}))
	defer up.Close()
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)

	// Server-sent events: the first event arrives while the upstream still
	// holds the response open.
	resp, err := clientFrom("").Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v", line, err)
	}
	close(release)
	resp.Body.Close()

	// A WebSocket-style upgrade is passed through both ways.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: x.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 101") {
		t.Fatalf("upgrade status = %q", status)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	fmt.Fprint(c, "hello\n")
	got, err := br.ReadString('\n')
	if err != nil || got != "echo:hello\n" {
		t.Errorf("through the upgrade: %q, %v", got, err)
	}
}

// internalRoots is a pool with the root of p's internal CA.
func internalRoots(t *testing.T, p *Proxy) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(p.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", p.RootPath())
	}
	return roots
}

// doWhileIssuing sends req until it gets an answer, for five seconds: the
// internal CA's certificate is issued by Manage, just after start.
func doWhileIssuing(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	for i := 0; ; i++ {
		resp, err := c.Do(req)
		if err == nil {
			return resp
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHTTP2AndHSTSWithInternalCA(t *testing.T) {
	up := echo("up")
	defer up.Close()
	cfg := Config{
		HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0",
		TLS:    TLS{Mode: TLSInternal, HSTS: 24 * time.Hour},
		Routes: []Route{{Hosts: []string{"app.example.test"}, Upstreams: []string{hostPort(up)}}},
	}
	p, httpAddr := startProxy(t, cfg, nil)
	httpsAddr := p.Addrs()[1].String()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: internalRoots(t, p), ServerName: "app.example.test"}, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+httpsAddr+"/", nil)
	req.Host = "app.example.test"
	resp := doWhileIssuing(t, c, req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol = %s, want HTTP/2", resp.Proto)
	}
	if !strings.Contains(string(body), "proto=https") {
		t.Errorf("upstream saw %q, want proto=https", body)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=86400" {
		t.Errorf("HSTS = %q", got)
	}
	// Plain HTTP for a known host is redirected with 308; an unknown host
	// is not redirected anywhere.
	noFollow := clientFrom("")
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ = http.NewRequest("POST", "http://"+httpAddr+"/login?next=%2F", nil)
	req.Host = "app.example.test"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(httpsAddr)
	if want := "https://app.example.test:" + port + "/login?next=%2F"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("redirect = %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	req.Host = "evil.example.net"
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown host over http = %d, want 404", resp.StatusCode)
	}
}

// TestSlowClients opens 500 connections that send their headers one byte
// per second, from ten addresses, while another client is served: the
// header timeout closes them all. Then 150 more from one address: the
// connection cap refuses those past it at once.
func TestSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("slow clients take a few seconds")
	}
	up := echo("up")
	defer up.Close()
	p, addr := startProxy(t, Config{ReadHeaderTimeout: 2 * time.Second, MaxConnsPerClient: 100,
		Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)
	slow := func(from string, n int) <-chan time.Duration {
		held := make(chan time.Duration, n)
		for range n {
			go func() {
				start := time.Now()
				c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial("tcp", addr)
				if err != nil {
					held <- 0
					return
				}
				defer c.Close()
				msg := "GET / HTTP/1.1\r\nHost: x.example.com\r\nX-Slow: " + strings.Repeat("a", 40)
				for i := range len(msg) {
					if _, err := c.Write([]byte{msg[i]}); err != nil {
						break
					}
					c.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
						break // closed by the server
					}
				}
				held <- time.Since(start)
			}()
		}
		return held
	}
	var chans []<-chan time.Duration
	for i := range 10 {
		chans = append(chans, slow(fmt.Sprintf("127.0.1.%d", i+1), 50))
	}
	// Meanwhile another client is served, every time.
	for i := range 20 {
		resp, _ := fetch(t, "127.0.0.9", addr, "x.example.com", "/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d of the other client = %d", i, resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond) // the 20 requests span 2 s of the slow clients' stay
	}
	late := 0
	for _, ch := range chans {
		for range 50 {
			if d := <-ch; d > 10*time.Second {
				late++
			}
		}
	}
	if late > 0 {
		t.Errorf("%d of 500 slow connections were held for more than 10 s (header timeout 2 s; the headers take 60 s)", late)
	}
	if got := p.refusedConns.Load(); got != 0 {
		t.Errorf("%d connections refused under the cap", got)
	}
	// Over the cap from one address: refused at accept.
	ch := slow("127.0.0.8", 150)
	for range 150 {
		<-ch
	}
	if got := p.refusedConns.Load(); got < 50 {
		t.Errorf("refused over the cap = %d, want at least 50", got)
	}
}

// freePort is a loopback port free a moment ago, for servers that must
// listen on a port known in advance (Pebble validates on fixed ports).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestProxyACME runs the whole proxy in acme mode against Pebble: it
// obtains a certificate for its route's host through its own listeners
// and serves the upstream's answer to a client that trusts only Pebble's
// root; plain HTTP for the host is redirected.
func TestProxyACME(t *testing.T) {
	up := echo("up")
	defer up.Close()
	// Pebble validates on fixed ports: take two free ones for the proxy.
	httpPort, httpsPort := freePort(t), freePort(t)
	peb := startPebble(t, httpPort, httpsPort)
	const host = "app.example.test"
	cfg := Config{
		HTTP:   fmt.Sprintf("127.0.0.1:%d", httpPort),
		HTTPS:  fmt.Sprintf("127.0.0.1:%d", httpsPort),
		TLS:    TLS{Mode: TLSAcme, Email: "ops@example.com", CA: peb.dirURL, CARoot: peb.caRoot},
		Routes: []Route{{Hosts: []string{host}, Upstreams: []string{hostPort(up)}}},
	}
	_, _ = startProxy(t, cfg, nil)
	var body string
	testkit.WaitFor(t, 25*time.Second, "the certificate from Pebble", func() bool {
		var err error
		body, _, err = get(t, cfg.HTTPS, host, peb.roots)
		return err == nil
	})
	if !strings.HasPrefix(body, "up GET / host="+host) || !strings.Contains(body, "proto=https") {
		t.Errorf("through the proxy over HTTPS: %q, want the upstream's answer", body)
	}
}

// TestCertExpiryMetric: the proxy copies the served certificate's expiry
// to its metrics soon after start.
func TestCertExpiryMetric(t *testing.T) {
	up := echo("up")
	defer up.Close()
	reg := prometheus.NewRegistry()
	cfg := withDefaults(Config{
		HTTPS: "127.0.0.1:0", TLS: TLS{Mode: TLSInternal}, StateDir: t.TempDir(),
		Routes: []Route{{Hosts: []string{"app.example.test"}, Upstreams: []string{hostPort(up)}}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, cfg, Options{Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var got float64
	testkit.WaitFor(t, 25*time.Second, "the certificate expiry metric", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "moat_proxy_cert_expiry_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "host" && l.GetValue() == "app.example.test" {
						got = m.GetGauge().GetValue()
						return true
					}
				}
			}
		}
		return false
	})
	if left := time.Until(time.Unix(int64(got), 0)); left < time.Hour || left > 30*24*time.Hour {
		t.Errorf("expiry metric = %v (in %s), want the internal leaf's NotAfter", got, left)
	}
}

// TestProxyACMEAccountKey: an ACME account made by one moat is used by
// another through tls.account_key (a Docker secret file, say): the second
// obtains its certificate as that account, and keeps the same key.
func TestProxyACMEAccountKey(t *testing.T) {
	up := echo("up")
	defer up.Close()
	httpPort, httpsPort := freePort(t), freePort(t)
	peb := startPebble(t, httpPort, httpsPort)
	run := func(host, stateDir, accountKey string) {
		t.Helper()
		cfg := Config{
			HTTP: fmt.Sprintf("127.0.0.1:%d", httpPort), HTTPS: fmt.Sprintf("127.0.0.1:%d", httpsPort), StateDir: stateDir,
			TLS:    TLS{Mode: TLSAcme, Email: "ops@example.com", CA: peb.dirURL, CARoot: peb.caRoot, AccountKey: accountKey},
			Routes: []Route{{Hosts: []string{host}, Upstreams: []string{hostPort(up)}}},
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p, err := New(ctx, cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		defer func() { cancel(); <-done }()
		testkit.WaitFor(t, 25*time.Second, "the certificate for "+host, func() bool {
			body, _, err := get(t, cfg.HTTPS, host, peb.roots)
			return err == nil && strings.HasPrefix(body, "up GET / host="+host)
		})
	}
	accountKey := func(stateDir string) []byte {
		t.Helper()
		keys, _ := filepath.Glob(filepath.Join(stateDir, certsDir, "acme", "*", "users", "ops@example.com", "*.key"))
		if len(keys) != 1 {
			t.Fatalf("account keys in %s: %v, want one", stateDir, keys)
		}
		b, err := os.ReadFile(keys[0])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := t.TempDir()
	run("one.example.test", first, "")
	secret := filepath.Join(t.TempDir(), "acme_account_key")
	if err := os.WriteFile(secret, accountKey(first), 0o400); err != nil {
		t.Fatal(err)
	}
	second := t.TempDir()
	run("two.example.test", second, secret)
	if got, want := strings.TrimSpace(string(accountKey(second))), strings.TrimSpace(string(accountKey(first))); got != want {
		t.Error("the second moat made its own account instead of using account_key")
	}

	// A file that holds no key is refused by New and by Check.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o400)
	cfg := Config{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", StateDir: t.TempDir(),
		TLS:    TLS{Mode: TLSAcme, CA: peb.dirURL, AccountKey: bad},
		Routes: []Route{{Hosts: []string{"three.example.test"}, Upstreams: []string{hostPort(up)}}}}
	if err := Check(cfg); err == nil || !strings.Contains(err.Error(), "account_key "+bad+": not a PEM private key") {
		t.Errorf("Check = %v, want the account_key named", err)
	}
	if strings.Contains(fmt.Sprint(Check(cfg)), "AAAA") {
		t.Error("the error repeats the file's content")
	}
}
