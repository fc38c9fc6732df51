// Command gorp is the smallest Go reverse proxy: net/http's server and an
// httputil.ReverseProxy to one upstream, with nothing of moat's (no routes,
// limits, client resolution, metrics or log). bench/proxy.sh runs it as a
// reference row, so the table shows how much of moat's cost is net/http's
// own on the same machine and how much is moat's.
//
//	go run ./bench/proxy/gorp -listen 127.0.0.1:8080 -upstream 127.0.0.1:8081 [-pool=false]
//
// -pool (default on) gives the ReverseProxy a BufferPool; without one it
// allocates a 32 KiB copy buffer for every response.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
	flag.Parse()
	if *upstream == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *upstream, *pool); err != nil {
		fmt.Fprintln(os.Stderr, "gorp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, upstream string, pool bool) error {
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
