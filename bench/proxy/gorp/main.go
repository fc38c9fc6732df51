// Command gorp is the smallest Go reverse proxy: net/http's server and an
// httputil.ReverseProxy to one upstream, with nothing of moat's (no routes,
// limits, client resolution, metrics or log). bench/proxy.sh runs it as a
// reference row, so the table shows how much of moat's cost is net/http's
// own on the same machine and how much is moat's.
//
//	go run ./bench/proxy/gorp -listen 127.0.0.1:8080 -upstream 127.0.0.1:8081 [-pool=false] [-transport sync]
//
// -pool (default on) gives the ReverseProxy a BufferPool; without one it
// allocates a 32 KiB copy buffer for every response. -transport sync
// replaces http.Transport with a measuring prototype (syncTransport).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := flag.String("upstream", "", "host:port of the upstream (required)")
	pool := flag.Bool("pool", true, "reuse the response copy buffers")
	transport := flag.String("transport", "std", "upstream transport: std (http.Transport) or sync (a prototype doing the round trip in the request's goroutine)")
	flag.Parse()
	if *upstream == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *upstream, *pool, *transport); err != nil {
		fmt.Fprintln(os.Stderr, "gorp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, upstream string, pool bool, transport string) error {
	target := &url.URL{Scheme: "http", Host: upstream}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	if pool {
		rp.BufferPool = &buffers{}
	}
	switch transport {
	case "std":
	case "sync":
		rp.Transport = newSyncTransport(upstream)
	default:
		return fmt.Errorf("-transport %q: want std or sync", transport)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Println("listening on", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// buffers is an httputil.BufferPool of 32 KiB buffers.
type buffers struct{ p sync.Pool }

func (b *buffers) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *buffers) Put(buf []byte) { b.p.Put(&buf) }

// syncTransport is a measuring prototype, not a production transport: an
// HTTP/1.1 round trip done entirely in the calling goroutine, on a pooled
// keep-alive connection, where http.Transport hands each request to a
// per-connection writer goroutine and each response back from a reader
// goroutine. The difference between the two rows is the cost of those
// hand-offs on this machine. It speaks plain HTTP/1.1 only and drops a
// connection whose response body was not read to the end.
type syncTransport struct {
	addr string
	idle chan *upConn
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newSyncTransport(addr string) *syncTransport {
	return &syncTransport{addr: addr, idle: make(chan *upConn, 1024)}
}

func (t *syncTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var uc *upConn
	select {
	case uc = <-t.idle:
	default:
		c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("dial upstream: %w", err)
		}
		uc = &upConn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}
	}
	if err := req.Write(uc.bw); err != nil {
		uc.c.Close()
		return nil, fmt.Errorf("write upstream request: %w", err)
	}
	if err := uc.bw.Flush(); err != nil {
		uc.c.Close()
		return nil, fmt.Errorf("write upstream request: %w", err)
	}
	resp, err := http.ReadResponse(uc.br, req)
	if err != nil {
		uc.c.Close()
		return nil, fmt.Errorf("read upstream response: %w", err)
	}
	resp.Body = &syncBody{ReadCloser: resp.Body, t: t, uc: uc, keep: !resp.Close}
	return resp, nil
}

// syncBody returns its connection to the pool once read to the end.
type syncBody struct {
	io.ReadCloser
	t    *syncTransport
	uc   *upConn
	keep bool
	eof  bool
}

func (b *syncBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *syncBody) Close() error {
	if b.uc == nil {
		return nil
	}
	err := b.ReadCloser.Close()
	uc := b.uc
	b.uc = nil
	if b.eof && b.keep && err == nil {
		select {
		case b.t.idle <- uc:
			return nil
		default:
		}
	}
	return uc.c.Close()
}
