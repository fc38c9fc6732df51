package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an upstream that counts the connections it accepted.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

// oneShotUpstream is a raw upstream that reads one request per
// connection, lets answer write to it, and closes it.
func oneShotUpstream(t *testing.T, answer func(c net.Conn, req *http.Request)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				answer(c, req)
			}()
		}
	}()
	return ln
}

// TestH1KeepAlive: GETs through the proxy reuse one upstream connection,
// chunked and sized answers alike, and HEAD and 304 answers (no body)
// give the connection back too.
func TestH1KeepAlive(t *testing.T) {
	up, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one,"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("hello"))
		}
	}))
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 5 * time.Second}
	for i := range 30 {
		path := []string{"/sized", "/chunked", "/304"}[i%3]
		method := "GET"
		if i%5 == 4 {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "http://"+addr+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]string{"/sized": "hello", "/chunked": "part one,part two", "/304": ""}[path]
		if method == "HEAD" {
			want = ""
		}
		if string(body) != want {
			t.Fatalf("%s %s = %q, want %q", method, path, body, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections = %d, want 1 (kept alive)", n)
	}
}

// TestH1StaleConnection: an upstream that closes each connection after
// one answer, without saying so, makes the next request meet a dead
// idle connection; it is sent again on a new one and succeeds.
func TestH1StaleConnection(t *testing.T) {
	var served atomic.Int64
	closed := make(chan struct{}, 16)
	ln := oneShotUpstream(t, func(c net.Conn, req *http.Request) {
		n := served.Add(1)
		body := fmt.Sprintf("answer %d to %s", n, req.URL.Path)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		// Closed without "Connection: close": the proxy keeps it idle and
		// finds it dead on reuse.
		c.Close()
		select {
		case closed <- struct{}{}:
		default:
		}
	})
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{ln.Addr().String()}}}}, nil)
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 1; i <= 5; i++ {
		resp, err := c.Get(fmt.Sprintf("http://%s/r%d", addr, i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(body), fmt.Sprintf("to /r%d", i)) {
			t.Fatalf("request %d = %d %q", i, resp.StatusCode, body)
		}
		select { // the upstream has closed the connection it answered on
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d: the upstream did not close its connection", i)
		}
	}
	if n := served.Load(); n != 5 {
		t.Errorf("upstream answered %d requests, want 5 (no request sent twice)", n)
	}
}

// TestH1ClientGone: a client that gives up while the upstream is slow
// releases the upstream connection at once, and the proxy goes on
// serving others.
func TestH1ClientGone(t *testing.T) {
	closed := make(chan struct{}, 1)
	up, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				closed <- struct{}{}
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.Write([]byte("quick"))
	}))
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{hostPort(up)}}}}, nil)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.Get("http://" + addr + "/slow"); err == nil {
		t.Fatal("slow request did not time out")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection was not closed after the client left")
	}
	resp, body := fetch(t, "", addr, "x.example.com", "/", nil)
	if resp.StatusCode != 200 || body != "quick" {
		t.Errorf("next request = %d %q", resp.StatusCode, body)
	}
}

// TestH1Fallback: what the synchronous path does not take goes to the
// standard transport: requests with bodies, upgrades, https upstreams.
func TestH1Fallback(t *testing.T) {
	for _, tc := range []struct {
		name, method, url string
		body              io.Reader
		hdr               http.Header
		want              bool
	}{
		{"get", "GET", "http://u/", nil, nil, true},
		{"head", "HEAD", "http://u/", nil, nil, true},
		{"post", "POST", "http://u/", strings.NewReader("x"), nil, false},
		{"put without body", "PUT", "http://u/", nil, nil, false},
		{"get with body", "GET", "http://u/", strings.NewReader("x"), nil, false},
		{"upgrade", "GET", "http://u/", nil, http.Header{"Upgrade": {"websocket"}}, false},
		{"https upstream", "GET", "https://u/", nil, nil, false},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, tc.body)
		for k, v := range tc.hdr {
			req.Header[k] = v
		}
		if got := fast(req); got != tc.want {
			t.Errorf("%s: fast = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAnswerHeadBounded: an upstream that sends an endless header field
// gets the request a 502, on the fast path (GET) and through
// http.Transport (POST). The fast path stops reading at maxAnswerHead:
// without the bound it reads all 64 MiB. (http.Transport is given the same
// bound; its default, 10 MiB, would pass this test too.)
func TestAnswerHeadBounded(t *testing.T) {
	var sent atomic.Int64
	ln := oneShotUpstream(t, func(c net.Conn, _ *http.Request) {
		c.Write([]byte("HTTP/1.1 200 OK\r\nX-Endless: "))
		chunk := []byte(strings.Repeat("a", 64<<10))
		for i := 0; i < 1024; i++ { // 64 MiB at most
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	_, addr := startProxy(t, Config{Routes: []Route{{Upstreams: []string{ln.Addr().String()}}}}, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+addr+"/", strings.NewReader(""))
		if method == "POST" {
			req.Body = io.NopCloser(strings.NewReader("x"))
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: status %d, want 502", method, resp.StatusCode)
		}
	}
	if n := sent.Load(); n >= 64<<20 {
		t.Errorf("the proxy read all %d bytes the upstream sent", n)
	}
}
