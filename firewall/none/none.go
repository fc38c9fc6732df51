// Package none is the firewall backend that enforces nothing: it logs what
// it would do and keeps the bans it is told in memory, so List and the CLI
// still show them. Used with `firewall.backend: none`, where moat's proxy
// still refuses banned addresses. It must not touch the kernel.
package none

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moatproj/moat/firewall"
)

// Backend logs bans instead of enforcing them. Its methods are safe for
// concurrent use and never fail.
type Backend struct {
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	bans  map[key]time.Time // zero: no end
	jails int
}

type key struct {
	jail   string
	prefix netip.Prefix
}

var _ firewall.Backend = (*Backend)(nil)

// New returns a Backend logging to logger (nil discards).
func New(logger *slog.Logger) *Backend {
	return NewWithClock(logger, time.Now)
}

// NewWithClock is New with the clock List uses to drop expired bans.
func NewWithClock(logger *slog.Logger, now func() time.Time) *Backend {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{log: logger, now: now, bans: map[key]time.Time{}}
}

// Name returns "none".
func (b *Backend) Name() string { return "none" }

func expiresAttr(t time.Time) slog.Attr {
	if t.IsZero() {
		return slog.String("expires", "never")
	}
	return slog.Time("expires", t)
}

// Sync replaces the remembered bans with bans (those expired at now left
// out) and logs a one-line summary.
func (b *Backend) Sync(_ context.Context, jails []firewall.Jail, bans []firewall.Ban, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bans = map[key]time.Time{}
	for _, bn := range bans {
		if !bn.Expires.IsZero() && !bn.Expires.After(now) {
			continue
		}
		b.bans[key{bn.Jail, bn.Prefix.Masked()}] = bn.Expires
	}
	b.jails = len(jails)
	b.log.Info("firewall none: would sync", "jails", len(jails), "bans", len(b.bans))
	return nil
}

// Add remembers bans and logs one line per ban.
func (b *Backend) Add(_ context.Context, bans []firewall.Ban, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bn := range bans {
		if !bn.Expires.IsZero() && !bn.Expires.After(now) {
			continue
		}
		b.bans[key{bn.Jail, bn.Prefix.Masked()}] = bn.Expires
		b.log.Info("firewall none: would ban", "jail", bn.Jail, "prefix", bn.Prefix.Masked().String(), expiresAttr(bn.Expires))
	}
	return nil
}

// Delete forgets bans and logs one line per ban.
func (b *Backend) Delete(_ context.Context, bans []firewall.Ban) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bn := range bans {
		delete(b.bans, key{bn.Jail, bn.Prefix.Masked()})
		b.log.Info("firewall none: would unban", "jail", bn.Jail, "prefix", bn.Prefix.Masked().String())
	}
	return nil
}

// Check finds nothing to repair: there is nothing in the kernel to lose.
func (b *Backend) Check(context.Context, time.Time) (firewall.CheckReport, error) {
	return firewall.CheckReport{}, nil
}

// List returns the remembered bans not yet expired, sorted by jail and
// prefix.
func (b *Backend) List(context.Context) ([]firewall.Ban, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []firewall.Ban
	for k, exp := range b.bans {
		if !exp.IsZero() && !exp.After(now) {
			delete(b.bans, k)
			continue
		}
		out = append(out, firewall.Ban{Jail: k.jail, Prefix: k.prefix, Expires: exp})
	}
	slices.SortFunc(out, func(x, y firewall.Ban) int {
		if c := strings.Compare(x.Jail, y.Jail); c != 0 {
			return c
		}
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return x.Prefix.Bits() - y.Prefix.Bits()
	})
	return out, nil
}

// Close does nothing.
func (b *Backend) Close() error { return nil }
