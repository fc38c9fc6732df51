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
					case req.URL.Path == "/late-extra":
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
						time.Sleep(20 * time.Millisecond)
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

// TestOversendingUpstreamNoCrossedAnswers: after an upstream sends more
// than its framing declares, the connection it came on is not used again,
// so every later client gets its own answer, over both serving paths and
// whether the extra bytes came with the answer or a moment later.
func TestOversendingUpstreamNoCrossedAnswers(t *testing.T) {
	for _, fastPath := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fastPath), func(t *testing.T) {
			up := oversendingUpstream(t)
			_, addr := startProxyPath(t, Config{Routes: []Route{{Upstreams: []string{up}}}}, nil, fastPath)
			for _, broken := range []string{"HEAD /head-body", "GET /extra", "GET /no-content", "GET /late-extra"} {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(conn)
				method, path, _ := strings.Cut(broken, " ")
				fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path)
				resp, err := http.ReadResponse(br, &http.Request{Method: method})
				if err != nil {
					t.Fatalf("%s: %v", broken, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				time.Sleep(40 * time.Millisecond) // the late extra bytes arrive
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
