// Command profile serves the proxy section of a moat configuration the way
// `moat run` does (proxy.New, Listen, Run, with metrics and no bans), plus
// Go's pprof handlers on a separate loopback address, so that the proxy's
// CPU and allocation costs can be read with go tool pprof while a load
// generator runs:
//
//	go run ./bench/proxy/profile -config moat.yaml -pprof 127.0.0.1:6060 &
//	wrk -t2 -c64 -d20s http://127.0.0.1:PORT/ &
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=10
//
// It is a benchmark tool, not part of moat: moat has no pprof endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/proxy"
)

func main() {
	cfgPath := flag.String("config", "", "moat configuration with a proxy: section (required)")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "loopback address for /debug/pprof/")
	flag.Parse()
	if *cfgPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, pprofAddr string) error {
	cfg, err := configs.Load(cfgPath, configs.Options{Env: configs.EnvFromOS()})
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	if cfg.Proxy == nil {
		return fmt.Errorf("load config: %s has no proxy section", cfgPath)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := proxy.New(ctx, *cfg.Proxy, proxy.Options{
		Logger:  log.With("component", "proxy"),
		Metrics: proxy.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if err := p.Listen(); err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	for _, a := range p.Addrs() {
		log.Info("proxy listening", "addr", a.String())
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return fmt.Errorf("pprof listen: %w", err)
	}
	ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := ps.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof serve", "error", err)
		}
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	defer ps.Close()
	return p.Run(ctx)
}
