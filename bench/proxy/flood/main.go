// Command flood sends many HTTP/1.1 GET requests, each with a distinct
// client address in X-Forwarded-For, over a few keep-alive connections
// (pipelined in small batches), so that a proxy which trusts the sender
// sees that many distinct clients. bench/proxy.sh runs it against moat to
// measure moat's memory after a million clients.
//
// Addresses: the first 131072 are the IPv4 benchmark range 198.18.0.0/15,
// the rest distinct /64s of the IPv6 documentation range 2001:db8::/32
// (2001:db8:H:L::1), so that a limiter keying IPv6 by /64 holds one key
// per request. -family 4 or 6 restricts to one of them.
//
//	go run ./bench/proxy/flood -addr 127.0.0.1:8080 -n 1000000
//
// It prints one line (requests, statuses, seconds, requests per second)
// and exits 1 when a response was not 200 or a connection failed.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// v4Space is the size of 198.18.0.0/15.
const v4Space = 1 << 17

func main() {
	addr := flag.String("addr", "", "host:port of the server (required)")
	n := flag.Int("n", 1_000_000, "requests to send, one distinct client address each")
	conns := flag.Int("conns", 64, "keep-alive connections")
	depth := flag.Int("depth", 16, "requests written before reading their responses")
	host := flag.String("host", "bench.example", "Host header")
	path := flag.String("path", "/", "request path")
	family := flag.String("family", "mix", "client addresses: mix, 4 (at most 131072) or 6")
	flag.Parse()
	if *addr == "" || *n < 1 || *conns < 1 || *depth < 1 {
		flag.Usage()
		os.Exit(2)
	}
	gen, err := addrGen(*family, *n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	r, err := run(*addr, *host, *path, *n, *conns, *depth, gen)
	fmt.Println(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

// result is what a run did.
type result struct {
	sent, ok, other int64
	elapsed         time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("requests %d, 200 %d, other %d, %.1f s, %.0f req/s",
		r.sent, r.ok, r.other, r.elapsed.Seconds(), float64(r.ok+r.other)/r.elapsed.Seconds())
}

// addrGen returns the i-th client address for a family.
func addrGen(family string, n int) (func(i int) netip.Addr, error) {
	v4 := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
	}
	v6 := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
	}
	switch family {
	case "4":
		if n > v4Space {
			return nil, fmt.Errorf("-family 4 has %d addresses, fewer than -n %d", v4Space, n)
		}
		return v4, nil
	case "6":
		return v6, nil
	case "mix":
		return func(i int) netip.Addr {
			if i < v4Space {
				return v4(i)
			}
			return v6(i - v4Space)
		}, nil
	}
	return nil, fmt.Errorf("-family %q: want mix, 4 or 6", family)
}

// run sends n requests over conns connections; each connection claims
// batches of depth request numbers until n are claimed.
func run(addr, host, path string, n, conns, depth int, gen func(int) netip.Addr) (result, error) {
	var next, ok, other atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, conns)
	start := time.Now()
	for c := range conns {
		wg.Go(func() {
			errs[c] = worker(addr, host, path, int64(n), int64(depth), &next, &ok, &other, gen)
		})
	}
	wg.Wait()
	r := result{sent: next.Load(), ok: ok.Load(), other: other.Load(), elapsed: time.Since(start)}
	if r.sent > int64(n) {
		r.sent = int64(n)
	}
	err := errors.Join(errs...)
	if err == nil && r.other > 0 {
		err = fmt.Errorf("%d responses were not 200", r.other)
	}
	return r, err
}

func worker(addr, host, path string, n, depth int64, next, ok, other *atomic.Int64, gen func(int) netip.Addr) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	prefix := []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: moat-bench-flood\r\nX-Forwarded-For: ")
	var buf []byte
	for {
		first := next.Add(depth) - depth
		if first >= n {
			return nil
		}
		last := min(first+depth, n)
		buf = buf[:0]
		for i := first; i < last; i++ {
			buf = append(buf, prefix...)
			buf = gen(int(i)).AppendTo(buf)
			buf = append(buf, "\r\n\r\n"...)
		}
		if _, err := conn.Write(buf); err != nil {
			return fmt.Errorf("write request %d: %w", first, err)
		}
		for i := first; i < last; i++ {
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				return fmt.Errorf("read response %d: %w", i, err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return fmt.Errorf("read body %d: %w", i, err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			} else {
				if other.Add(1) == 1 {
					fmt.Fprintf(os.Stderr, "flood: request %d (%s): status %d\n", i, gen(int(i)), resp.StatusCode)
				}
			}
			if resp.Close {
				return fmt.Errorf("server closed the connection after request %d", i)
			}
		}
	}
}
