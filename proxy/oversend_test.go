package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// injected is a whole answer a broken upstream sends beyond what its
// framing declares: read as the next request's answer, it would reach
// another client.
const injected = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED"

// oversendingUpstream answers GET /who/NAME with "you are NAME" and, for
// the broken cases, more bytes than the answer's framing declares:
//
//	HEAD /head-body   a HEAD answered with a body (Content-Length and the bytes)
//	GET  /extra       "ok" (Content-Length: 2) and a whole second answer
//	GET  /no-content  a 204 followed by an answer
//	GET  /late-extra  "ok", then a whole second answer 20 ms later
//	GET  /not-modified a 304 followed by an answer
//
// and, for answers cut short or not HTTP at all:
//
//	GET /under        Content-Length: 10 and 5 bytes, then the close
//	GET /mid-close    a chunked answer closed after its first chunk
//	GET /garbage      bytes that are no answer, on a connection kept open
//	GET /garbage-after "ok", then bytes that are no answer
//
// POST on each path answers as GET does (the body is read first).
func oversendingUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					var out string
					switch {
					case req.Method == http.MethodHead && req.URL.Path == "/head-body":
						out = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(injected), injected)
					case req.URL.Path == "/extra":
						out = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + injected
					case req.URL.Path == "/no-content":
						out = "HTTP/1.1 204 No Content\r\n\r\n" + injected
					case req.URL.Path == "/not-modified":
						out = "HTTP/1.1 304 Not Modified\r\n\r\n" + injected
					case req.URL.Path == "/under":
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
						return
					case req.URL.Path == "/mid-close":
						c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"))
						return
					case req.URL.Path == "/garbage":
						out = "\x00\x01 not an answer\r\n\r\n" + injected
					case req.URL.Path == "/garbage-after":
						out = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\x00\x01 not an answer\r\n\r\n"
					case req.URL.Path == "/late-extra":
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
						time.Sleep(20 * time.Millisecond) // the extra answer comes a moment later: the case
						out = injected
					case strings.HasPrefix(req.URL.Path, "/who/"):
						body := "you are " + strings.TrimPrefix(req.URL.Path, "/who/")
						out = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					default:
						out = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
					}
					if _, err := c.Write([]byte(out)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestBrokenUpstreamNoCrossedAnswers: after an upstream sends more than its
// framing declares, less, or no answer at all, the connection it came on
// is not used again, so every later client gets its own answer, over both
// serving paths (GET and POST, which take different upstream transports)
// and whether the extra bytes came with the answer or a moment later.
func TestBrokenUpstreamNoCrossedAnswers(t *testing.T) {
	for _, fastPath := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fastPath), func(t *testing.T) {
			up := oversendingUpstream(t)
			_, addr := startProxyPath(t, Config{Routes: []Route{{Upstreams: []string{up}}}}, nil, fastPath)
			for _, broken := range []string{"HEAD /head-body", "GET /extra", "GET /no-content", "GET /late-extra", "GET /not-modified",
				"GET /under", "GET /mid-close", "GET /garbage", "GET /garbage-after",
				"POST /extra", "POST /no-content", "POST /late-extra", "POST /under", "POST /mid-close", "POST /garbage"} {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(conn)
				method, path, _ := strings.Cut(broken, " ")
				body := "\r\n"
				if method == "POST" {
					body = "Content-Length: 2\r\n\r\nhi"
				}
				fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: a\r\n%s", method, path, body)
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(br, &http.Request{Method: method})
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.Close {
					// An answer cut short ends the client's connection
					// too: the next requests go on a new one.
					conn.Close()
					if conn, err = net.Dial("tcp", addr); err != nil {
						t.Fatal(err)
					}
					br = bufio.NewReader(conn)
				}
				conn.SetReadDeadline(time.Time{})
				// The late extra bytes arrive, and an idle connection's
				// reader (net/http's, on the POST path) sees them: that
				// gives no event a test can wait for.
				time.Sleep(40 * time.Millisecond)
				// The same client and others, one after the other, each on
				// a kept-alive connection: each gets its own answer.
				for i, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
					c, r := conn, br
					if i%2 == 1 {
						nc, err := net.Dial("tcp", addr)
						if err != nil {
							t.Fatal(err)
						}
						defer nc.Close()
						c, r = nc, bufio.NewReader(nc)
					}
					for range 3 {
						fmt.Fprintf(c, "GET /who/%s HTTP/1.1\r\nHost: a\r\nCookie: user=%s\r\n\r\n", name, name)
						resp, err := http.ReadResponse(r, nil)
						if err != nil {
							t.Fatalf("after %s, %s: %v", broken, name, err)
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if want := "you are " + name; string(body) != want {
							t.Fatalf("after %s, %s got %q, want %q: an answer crossed to another client", broken, name, body, want)
						}
					}
				}
				conn.Close()
			}
		})
	}
}
