package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/proxy"
	"github.com/moatproj/moat/sources/follow"
)

// proxyFailureQueue bounds the rate-limit failures waiting for the engine;
// past it they are dropped (and counted): a flood must not grow memory,
// and the addresses flooding are banned from the first ones anyway.
const proxyFailureQueue = 8192

// proxyBans is the jail engine as the proxy sees it. Failures go through a
// queue to one goroutine, so a request never waits for a ban to be made
// durable.
type proxyBans struct {
	engine  *jail.Engine
	log     *slog.Logger
	q       chan jail.Failure
	dropped atomic.Int64
}

func newProxyBans(e *jail.Engine, log *slog.Logger) *proxyBans {
	return &proxyBans{engine: e, log: log, q: make(chan jail.Failure, proxyFailureQueue)}
}

func (b *proxyBans) Blocks(a netip.Addr, port uint16) bool { return b.engine.Blocks(a, port) }

func (b *proxyBans) Failure(jailName string, a netip.Addr, t time.Time) {
	select {
	case b.q <- jail.Failure{Jail: jailName, Addr: a, Time: t}:
	default:
		if b.dropped.Add(1)%1000 == 1 {
			b.log.Warn("proxy failures dropped: the jail engine is behind", "dropped", b.dropped.Load())
		}
	}
}

// run hands the queued failures to the engine until ctx ends.
func (b *proxyBans) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-b.q:
			_, err := b.engine.Failure(ctx, f, follow.Position{})
			switch {
			case err == nil, ctx.Err() != nil:
			case errors.Is(err, jail.ErrUnknownJail):
				b.log.Debug("proxy failure for a jail not configured", keyError, err)
			default:
				b.log.Error("record proxy failure", keyError, err)
			}
		}
	}
}

// startProxy prepares the proxy of cfg and binds its listeners, so that a
// port in use stops the start with a clear error.
func (d *daemon) startProxy(ctx context.Context, cfg *configs.Config) (*proxy.Proxy, *proxyBans, error) {
	log := d.logger.With(keyComponent, "proxy")
	bans := newProxyBans(d.engine, log)
	p, err := proxy.New(ctx, *cfg.Proxy, proxy.Options{
		Logger:  log,
		Bans:    bans,
		Metrics: proxy.NewMetrics(d.metrics.reg),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := p.Listen(); err != nil {
		return nil, nil, err
	}
	var addrs []string
	for _, a := range p.Addrs() {
		addrs = append(addrs, a.String())
	}
	log.Info("proxy listening", "addrs", addrs, "tls", cfg.Proxy.TLS.Mode, "routes", len(cfg.Proxy.Routes), "jail", proxy.DefaultJail)
	if root := p.RootPath(); root != "" {
		log.Info("proxy certificates come from moat's own CA: make clients trust its root", "root", root)
	}
	return p, bans, nil
}

// reloadProxy applies a reloaded configuration's proxy section: routes,
// limits and client-address settings change in place; listeners, TLS, the
// access log and connection limits only at the next start (said at each
// reload that still differs).
func (d *daemon) reloadProxy(cfg *configs.Config) {
	switch {
	case d.proxy == nil && cfg.Proxy == nil:
		return
	case d.proxy == nil || cfg.Proxy == nil:
		d.logger.Warn("adding or removing proxy: takes effect at the next start; the running proxy stays as it is")
		return
	}
	if reflect.DeepEqual(d.proxyCfg, cfg.Proxy) {
		return
	}
	pending, err := d.proxy.Update(*cfg.Proxy)
	if err != nil {
		d.logger.Error("proxy not reloaded; its running configuration stays", keyError, err)
		return
	}
	d.proxyCfg = cfg.Proxy
	d.logger.Info("proxy routes and limits reloaded", "routes", len(cfg.Proxy.Routes))
	if len(pending) > 0 {
		d.logger.Warn("proxy changes that take effect at the next start; the running values stay", "changed", pending)
	}
}
