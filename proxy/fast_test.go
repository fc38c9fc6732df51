package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenUpstream is an upstream that notes every request as it arrived
// (method, target, Host, all fields, body) and answers by path with the
// kinds of answers a proxy must pass on: sized, large, chunked with
// trailers, delimited by closing, bodiless, with hop-by-hop fields.
type seenUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newSeenUpstream(t testing.TB) *seenUpstream {
	u := &seenUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *seenUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var keys []string
	for k, vs := range r.Header {
		keys = append(keys, k+": "+strings.Join(vs, " | "))
	}
	slices.Sort(keys)
	u.mu.Lock()
	u.seen = append(u.seen, fmt.Sprintf("%s %s host=%s\n%s\nbody=%q", r.Method, r.RequestURI, r.Host, strings.Join(keys, "\n"), body))
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	switch r.URL.Path {
	case "/big":
		w.Header().Set("Content-Length", "100000")
		w.Write(bytes.Repeat([]byte("0123456789"), 10000))
	case "/chunked":
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("part one,"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part two"))
		w.Header().Set("X-Sum", "17")
	case "/close":
		c, bw, _ := http.NewResponseController(w).Hijack()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nthe body ends when the connection does")
		bw.Flush()
		c.Close()
	case "/204":
		w.Header().Set("X-A", "b")
		w.WriteHeader(http.StatusNoContent)
	case "/304":
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	case "/hop":
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Powered-By", "PHP/5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Write([]byte("hop"))
	case "/599":
		w.WriteHeader(599)
	default:
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}
}

func (u *seenUpstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// fastCases are raw requests, each sent on a connection of its own, some
// several pipelined in one write.
var fastCases = []string{
	"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"HEAD /big HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /big HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /chunked HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /close HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /204 HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /304 HTTP/1.1\r\nHost: app.example\r\nIf-None-Match: \"v1\"\r\n\r\n",
	"GET /hop HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /599 HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /a%20b/%2F?q=%41&r HTTP/1.1\r\nhOsT: App.Example.\r\nX-Sp:   v  \r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\nX-Case: MiXeD\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 192.0.2.1, 198.51.100.2\r\nX-Forwarded-For: 203.0.113.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: b.example\r\nForwarded: for=192.0.2.9\r\nX-Real-IP: 192.0.2.4\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: not an address\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nUser-Agent: t/1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nTE: trailers\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: app.example\r\n\r\n",
	"GET http://app.example/abs HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: nowhere.example\r\n\r\n",
	"GET /api/x HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: app.example\nX: y\n\n",
	"POST /form HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhello",
	"POST /chunked-in HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"GET /limited HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"GET /limited HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"HEAD /limited HTTP/1.1\r\nHost: app.example\r\n\r\n",
	// Pipelined: fast, handed over, then what follows on net/http.
	"GET /1 HTTP/1.1\r\nHost: app.example\r\n\r\nHEAD /big HTTP/1.1\r\nHost: app.example\r\n\r\nGET /chunked HTTP/1.1\r\nHost: app.example\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
}

// exchangeRaw sends raw on a new connection and reads every answer until
// the proxy closes the connection or goes quiet; it returns them written
// out, with "(a date)" for the Date fields.
func exchangeRaw(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	// The methods of the requests, for reading the answers' bodies.
	var methods []string
	for _, line := range strings.Split(raw, "\n") {
		for _, m := range []string{"GET ", "HEAD ", "POST "} {
			if strings.HasPrefix(line, m) {
				methods = append(methods, strings.TrimSpace(m))
			}
		}
	}
	br := bufio.NewReader(c)
	var out strings.Builder
	for i := 0; ; i++ {
		// Past the answers expected, a short wait tells whether the
		// connection stays open.
		wait := 2 * time.Second
		if i >= len(methods) {
			wait = 100 * time.Millisecond
		}
		c.SetReadDeadline(time.Now().Add(wait))
		m := "GET"
		if i < len(methods) {
			m = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			fmt.Fprintf(&out, "end: %s\n", endOf(err))
			return out.String()
		}
		body, err := io.ReadAll(resp.Body)
		if resp.Header.Get("Date") != "" {
			resp.Header.Set("Date", "(a date)")
		}
		var keys []string
		for k, vs := range resp.Header {
			keys = append(keys, k+": "+strings.Join(vs, " | "))
		}
		slices.Sort(keys)
		fmt.Fprintf(&out, "%s %s close=%v chunked=%v length=%d\n%s\nbody=%q err=%v trailer=%v\n", resp.Proto, resp.Status, resp.Close,
			slices.Equal(resp.TransferEncoding, []string{"chunked"}), resp.ContentLength, strings.Join(keys, "\n"), body, err, resp.Trailer)
	}
}

// endOf names how a connection's answers ended.
func endOf(err error) string {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "open"
	}
	if err == io.EOF {
		return "closed"
	}
	return "error"
}

// TestFastMatchesNetHTTP: every request in fastCases, taken by the fast
// path or handed over, gets the same answer and reaches the upstream as
// the same request as through net/http alone, and is logged the same;
// with a trusted proxy in front and without one. The fast path must have
// served some of them.
func TestFastMatchesNetHTTP(t *testing.T) {
	up := newSeenUpstream(t)
	for _, trust := range []bool{false, true} {
		cfg := Config{Routes: []Route{
			{Hosts: []string{"app.example"}, Upstreams: []string{hostPort(up.Server)}},
			{Hosts: []string{"app.example"}, Path: "/api", Upstreams: []string{up.URL + "/base"}},
			{Hosts: []string{"app.example"}, Path: "/limited", Upstreams: []string{hostPort(up.Server)}, Limit: &Limit{Rate: 0.001, Burst: 1, Window: time.Hour}},
		}}
		if trust {
			cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		}
		var answers, seen, logged [2][]string
		var served int64
		for i, fast := range []bool{true, false} {
			cfg.AccessLog = filepath.Join(t.TempDir(), "access.log")
			p, addr := startProxyPath(t, cfg, nil, fast)
			for _, raw := range fastCases {
				answers[i] = append(answers[i], exchangeRaw(t, addr, raw))
				seen[i] = append(seen[i], strings.Join(up.take(), "\n--\n"))
			}
			logged[i] = accessEntries(t, p, cfg.AccessLog)
			if fast {
				served = p.fastServed.Load()
			} else if n := p.fastServed.Load(); n != 0 {
				t.Errorf("fast path off, yet it served %d requests", n)
			}
		}
		for j, raw := range fastCases {
			if answers[0][j] != answers[1][j] {
				t.Errorf("trusted=%v %q:\nfast path answered\n%s\nnet/http answered\n%s", trust, raw, answers[0][j], answers[1][j])
			}
			if seen[0][j] != seen[1][j] {
				t.Errorf("trusted=%v %q:\nupstream got from the fast path\n%s\nfrom net/http\n%s", trust, raw, seen[0][j], seen[1][j])
			}
		}
		if !slices.Equal(logged[0], logged[1]) || len(logged[0]) < len(fastCases) {
			t.Errorf("trusted=%v: access log of the fast path\n%s\nof net/http\n%s", trust, strings.Join(logged[0], "\n"), strings.Join(logged[1], "\n"))
		}
		if served < 15 {
			t.Errorf("trusted=%v: the fast path served %d requests, want at least 15", trust, served)
		}
	}
}

// accessEntries is p's access log so far, without the times and durations.
func accessEntries(t *testing.T, p *Proxy, path string) []string {
	t.Helper()
	if err := p.access.flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	times := regexp.MustCompile(`"(time|duration)":("[^"]*"|[0-9.e-]+)`)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		out = append(out, times.ReplaceAllString(line, `"$1":_`))
	}
	return out
}

// TestFastHandsOverTLS: over HTTPS with HTTP/1.1, a GET the fast path
// serves, then a POST it hands over and a GET net/http serves on the same
// connection, all say https to the upstream and carry HSTS.
func TestFastHandsOverTLS(t *testing.T) {
	up := echo("u")
	defer up.Close()
	cfg := Config{HTTPS: "127.0.0.1:0", TLS: TLS{Mode: TLSInternal, HSTS: time.Hour},
		Routes: []Route{{Hosts: []string{"app.example.test"}, Upstreams: []string{hostPort(up)}}}}
	p, _ := startProxy(t, cfg, nil)
	addr := p.Addrs()[0].String()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: internalRoots(t, p), ServerName: "app.example.test"},
		// HTTP/1.1 only, over one connection.
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxConnsPerHost: 1,
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var conns sync.Map
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { conns.Store(i.Conn, true) },
	})
	for _, method := range []string{"GET", "POST", "GET"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("form")
		}
		req, _ := http.NewRequestWithContext(ctx, method, "https://"+addr+"/x", body)
		req.Host = "app.example.test"
		resp := doWhileIssuing(t, c, req)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 1 || !strings.Contains(string(b), "proto=https") || resp.Header.Get("Strict-Transport-Security") != "max-age=3600" {
			t.Errorf("%s: %s %q HSTS %q", method, resp.Proto, b, resp.Header.Get("Strict-Transport-Security"))
		}
	}
	// The connection stays with net/http once handed over.
	if n := p.fastServed.Load(); n != 1 {
		t.Errorf("fast path served %d requests, want the first GET", n)
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d connections, want the 3 requests on 1", n)
	}
}

// TestFastShutdown: when Run ends, a kept-alive connection between
// requests is closed at once and a request in flight is answered first.
func TestFastShutdown(t *testing.T) {
	release := make(chan struct{})
	slowArrived := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(slowArrived)
			<-release
		}
		w.Write([]byte("done"))
	}))
	defer up.Close()
	cfg := withDefaults(Config{HTTP: "127.0.0.1:0", StateDir: t.TempDir(), Routes: []Route{{Upstreams: []string{hostPort(up)}}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	addr := p.Addrs()[0].String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle connection's request: %v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	select { // the request is in flight: the upstream has it
	case <-slowArrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream never got /slow")
	}
	cancel()

	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: %v, want EOF", err)
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in flight at shutdown: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "done" {
		t.Errorf("request in flight: %d %q", resp.StatusCode, b)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(shutdownGrace + 2*time.Second):
		t.Fatal("Run did not return")
	}
}

// TestFastClientGoneLogged: a long poll whose client leaves is ended
// upstream and logged with status 499.
func TestFastClientGoneLogged(t *testing.T) {
	ended := make(chan struct{}, 1)
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
			ended <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}))
	defer up.Close()
	log := filepath.Join(t.TempDir(), "access.log")
	p, addr := startProxy(t, Config{AccessLog: log, Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /poll HTTP/1.1\r\nHost: a\r\n\r\n")
	select { // the long poll is under way upstream
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream never got /poll")
	}
	c.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request went on after the client left")
	}
	if p.fastServed.Load() != 1 {
		t.Fatalf("fast path served %d requests, want 1", p.fastServed.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), `"path":"/poll","status":499`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has no 499 for /poll: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFastNoCrossTalk: many clients at once, kept alive, some pipelining
// several requests per write, over shared upstream connections whose
// answers come sized, chunked or late: every client gets the answers to
// its own requests, in order.
func TestFastNoCrossTalk(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(r.URL.Query().Get("n"), "%d", &n)
		if n%7 == 0 { // some answers come late: what the test is about
			time.Sleep(time.Duration(n%3) * time.Millisecond)
		}
		if n%5 == 0 {
			w.Write([]byte(r.URL.Path))
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat(".", n*7919%300000)))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(r.URL.Path)))
		w.Write([]byte(r.URL.Path))
	}))
	defer up.Close()
	p, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)
	const clients, requests = 24, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			batch := 1 + c%4 // requests per write
			for j := 0; j < requests; j += batch {
				var raw strings.Builder
				for k := j; k < j+batch && k < requests; k++ {
					fmt.Fprintf(&raw, "GET /c%d/r%d?n=%d HTTP/1.1\r\nHost: a\r\n\r\n", c, k, c*requests+k)
				}
				if _, err := conn.Write([]byte(raw.String())); err != nil {
					errs <- err
					return
				}
				for k := j; k < j+batch && k < requests; k++ {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("client %d request %d: %v", c, k, err)
						return
					}
					body, err := io.ReadAll(resp.Body)
					want := fmt.Sprintf("/c%d/r%d", c, k)
					if err != nil || !strings.HasPrefix(string(body), want) || strings.Trim(string(body[len(want):]), ".") != "" {
						errs <- fmt.Errorf("client %d request %d: got %.40q, %v; want %s", c, k, body, err, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.fastServed.Load(); n != clients*requests {
		t.Errorf("fast path served %d requests, want all %d", n, clients*requests)
	}
}
