package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// connCounter is an upstream that counts the connections open to it and
// the requests it got, and answers /big with 64 MiB.
type connCounter struct {
	*httptest.Server
	open, opened, closed atomic.Int64
	mu                   sync.Mutex
	bodies               []string
}

func newConnCounter(t *testing.T) *connCounter {
	u := &connCounter{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, r.Method+" "+r.URL.Path+" "+string(b))
		u.mu.Unlock()
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", fmt.Sprint(64<<20))
			chunk := make([]byte, 1<<20)
			for range 64 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		fmt.Fprintf(w, "ok %d", len(b))
	}))
	u.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.open.Add(1)
			u.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			u.open.Add(-1)
			u.closed.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *connCounter) got() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...)
}

// waitClosed reads from c until the proxy closes it, and returns what it
// read and how long that took; at most within.
func waitClosed(c net.Conn, within time.Duration) (string, time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return string(b), time.Since(start), false
	}
	return string(b), time.Since(start), true
}

// TestStalledBodyHoldsNothing: 20 clients each send 3 of the 1000 body
// bytes they declared, and go silent. None holds an upstream connection
// meanwhile, each gets 408 and is closed once body_timeout passed, and
// another client is served all along. The same with chunked bodies.
func TestStalledBodyHoldsNothing(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			up := newConnCounter(t)
			_, addr := startProxy(t, Config{BodyTimeout: time.Second, Routes: []Route{{Upstreams: []string{hostPort(up.Server)}}}}, nil)
			var conns []net.Conn
			for range 20 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				head := "POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 1000\r\n\r\nabc"
				if chunked {
					head = "POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\nabc"
				}
				if _, err := c.Write([]byte(head)); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			// Meanwhile another client is served, and no upstream
			// connection is held for the stalled ones.
			for i := range 5 {
				resp, body := fetch(t, "", addr, "app.example", "/other", nil)
				if resp.StatusCode != 200 || body != "ok 0" {
					t.Fatalf("other client, request %d: %d %q", i, resp.StatusCode, body)
				}
				if n := up.open.Load(); n > 1 {
					t.Fatalf("%d upstream connections open while 20 bodies stall, want at most the other client's", n)
				}
				time.Sleep(100 * time.Millisecond) // the 5 requests span half of body_timeout
			}
			for i, c := range conns {
				got, took, closed := waitClosed(c, 10*time.Second)
				if !closed || !strings.HasPrefix(got, "HTTP/1.1 408 ") {
					t.Errorf("stalled client %d: after %v, closed=%v, got %q; want 408 and closed", i, took, closed, got)
				}
			}
			for _, b := range up.got() {
				if strings.HasPrefix(b, "POST") {
					t.Errorf("upstream received a stalled request: %q", b)
				}
			}
		})
	}
}

// TestTricklingBodyHoldsNothing: 10 clients send a chunked body a byte at a
// time, each byte within body_timeout: no upstream connection is taken
// until a body is complete, and then the upstream gets each whole, with its
// length.
func TestTricklingBodyHoldsNothing(t *testing.T) {
	up := newConnCounter(t)
	_, addr := startProxy(t, Config{BodyTimeout: time.Second, Routes: []Route{{Upstreams: []string{hostPort(up.Server)}}}}, nil)
	const n, size = 10, 8
	var wg sync.WaitGroup
	answers := make([]string, n)
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fmt.Fprint(c, "POST /trickle HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
			for range size {
				time.Sleep(200 * time.Millisecond) // a byte at a time, within body_timeout
				fmt.Fprint(c, "1\r\nx\r\n")
			}
			fmt.Fprint(c, "0\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			answers[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
	}
	// While the bodies trickle in, no upstream connection is open.
	deadline := time.Now().Add(time.Duration(size-2) * 200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if o := up.opened.Load(); o != 0 {
			t.Fatalf("%d upstream connections opened while the bodies were still coming", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for i, a := range answers {
		if a != fmt.Sprintf("200 ok %d", size) {
			t.Errorf("client %d: %q", i, a)
		}
	}
	if got := len(up.got()); got != n {
		t.Errorf("upstream received %d requests, want %d", got, n)
	}
}

// TestNonReadingClientClosed: a client that asks for 64 MiB and reads none
// of it is closed once send_timeout passed, and the upstream connection
// with it; on both serving paths, while another client is served.
func TestNonReadingClientClosed(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			up := newConnCounter(t)
			_, addr := startProxyPath(t, Config{SendTimeout: time.Second, Routes: []Route{{Upstreams: []string{hostPort(up.Server)}}}}, nil, fast)
			c, err := net.DialTCP("tcp", nil, mustTCPAddr(t, addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadBuffer(4 << 10)
			fmt.Fprint(c, "GET /big HTTP/1.1\r\nHost: app.example\r\n\r\n")
			testkit.WaitFor(t, 10*time.Second, "the upstream to answer /big", func() bool {
				return slices.ContainsFunc(up.got(), func(b string) bool { return strings.HasPrefix(b, "GET /big ") })
			})
			resp, body := fetch(t, "", addr, "app.example", "/other", nil)
			if resp.StatusCode != 200 || body != "ok 0" {
				t.Fatalf("other client: %d %q", resp.StatusCode, body)
			}
			// The upstream connection of /big closes once the proxy gave
			// up on the client (the other client's stays kept alive).
			end := time.Now().Add(10 * time.Second)
			for up.closed.Load() == 0 && time.Now().Before(end) {
				time.Sleep(50 * time.Millisecond)
			}
			if up.closed.Load() == 0 {
				t.Fatalf("the upstream connection of a client that reads nothing is still open after 10 s (send_timeout 1 s)")
			}
			// The client reads now: it gets part of the answer, then the end.
			got, _, closed := waitClosed(c, 10*time.Second)
			if !closed || len(got) >= 64<<20 {
				t.Errorf("the non-reading client got %d bytes, closed=%v; want it closed before the whole answer", len(got), closed)
			}
		})
	}
}

func mustTCPAddr(t *testing.T, addr string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
