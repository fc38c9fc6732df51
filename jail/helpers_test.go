package jail

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/none"
	"github.com/moatproj/moat/sources"

	"github.com/moatproj/moat/internal/testkit"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is the fake clock the engine reads.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recFW is the real none backend (which remembers what it is told, as
// the kernel's sets would hold it), counting syncs and able to simulate
// someone flushing the ruleset, which none itself cannot lose.
type recFW struct {
	*none.Backend
	mu     sync.Mutex
	jails  []firewall.Jail
	syncs  int
	broken bool // Intact reports false until the next Sync
}

func newRecFW(now func() time.Time) *recFW {
	return &recFW{Backend: none.NewWithClock(nil, now)}
}

func fwKey(b firewall.Ban) string { return b.Jail + "|" + b.Prefix.String() }

func (f *recFW) Sync(ctx context.Context, jails []firewall.Jail, bans []firewall.Ban, now time.Time) error {
	f.mu.Lock()
	f.syncs++
	f.broken = false
	f.jails = slices.Clone(jails)
	f.mu.Unlock()
	return f.Backend.Sync(ctx, jails, bans, now)
}

// Check reports a backend that lost its bans (flush) as not synced, as the
// nftables backend does before its first Sync.
func (f *recFW) Check(ctx context.Context, now time.Time) (firewall.CheckReport, error) {
	f.mu.Lock()
	broken := f.broken
	f.mu.Unlock()
	if broken {
		return firewall.CheckReport{}, fmt.Errorf("fake: %w", firewall.ErrNotSynced)
	}
	return f.Backend.Check(ctx, now)
}

// flush simulates someone flushing the ruleset.
func (f *recFW) flush() {
	f.mu.Lock()
	f.broken = true
	f.mu.Unlock()
	f.Backend.Sync(context.Background(), nil, nil, time.Time{})
}

// keys lists the bans held, as "jail|prefix", sorted.
func (f *recFW) keys() []string {
	bans, _ := f.Backend.List(context.Background())
	var ks []string
	for _, b := range bans {
		ks = append(ks, fwKey(b))
	}
	slices.Sort(ks)
	return ks
}

// expires returns the expiry held for jail|prefix.
func (f *recFW) expires(k string) time.Time {
	bans, _ := f.Backend.List(context.Background())
	for _, b := range bans {
		if fwKey(b) == k {
			return b.Expires
		}
	}
	return time.Time{}
}

// logBuf is a goroutine-safe buffer of JSON log lines.
type logBuf struct{ testkit.Buffer }

// lines returns the decoded log records whose msg is msg.
func (l *logBuf) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(strings.NewReader(l.String()))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode log: %v", err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// rig is an engine under test with its parts.
type rig struct {
	t      *testing.T
	dir    string
	clk    *clock
	fw     *recFW
	logs   *logBuf
	events []Event
	evMu   sync.Mutex
	opts   Options
	e      *Engine
	jails  []Config
}

func jailCfg(name string) Config {
	return Config{
		Name: name, MaxRetry: 3, FindTime: 10 * time.Minute, BanTime: time.Hour,
		IgnoreSelf: true, IPv6Prefix: 64,
	}
}

var selfAddr = netip.MustParseAddr("192.0.2.10")

func newRig(t *testing.T, jails ...Config) *rig {
	t.Helper()
	clk := &clock{t: t0}
	r := &rig{t: t, dir: t.TempDir(), clk: clk, fw: newRecFW(clk.Now), logs: &logBuf{}, jails: jails}
	r.opts = Options{
		StateDir:  r.dir,
		Firewall:  r.fw,
		Logger:    slog.New(slog.NewJSONHandler(r.logs, nil)),
		Now:       r.clk.Now,
		SelfAddrs: func() []netip.Addr { return []netip.Addr{selfAddr} },
		Rand:      func() float64 { return 0.5 },
		Notify: func(ev Event) {
			r.evMu.Lock()
			r.events = append(r.events, ev)
			r.evMu.Unlock()
		},
	}
	r.open()
	return r
}

// open opens (or reopens) the engine on the rig's state dir and configures it.
func (r *rig) open() {
	r.t.Helper()
	e, err := Open(r.opts)
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	r.e = e
	r.t.Cleanup(func() { e.Close() })
	if err := e.Configure(context.Background(), r.jails); err != nil {
		r.t.Fatalf("Configure: %v", err)
	}
}

func (r *rig) eventKinds() []string {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	var ks []string
	for _, ev := range r.events {
		ks = append(ks, ev.Kind+" "+ev.Ban.Jail+" "+ev.Ban.Prefix.String())
	}
	return ks
}

// fail reports a failure of addr in jail at log time at, read up to pos.
func (r *rig) fail(jail, addr string, at time.Time, pos sources.Position) *Ban {
	r.t.Helper()
	b, err := r.e.Failure(context.Background(), Failure{Jail: jail, Addr: netip.MustParseAddr(addr), Time: at}, pos)
	if err != nil {
		r.t.Fatalf("Failure(%s, %s): %v", jail, addr, err)
	}
	return b
}

// checkReopen checks Positions against want, then again after a
// checkpoint, Close and Open.
func checkReopen(t *testing.T, r *rig, want []sources.Position) {
	t.Helper()
	if got := r.e.Positions(); !slices.Equal(got, want) {
		t.Fatalf("Positions = %+v, want %+v", got, want)
	}
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	r.open()
	if got := r.e.Positions(); !slices.Equal(got, want) {
		t.Fatalf("after reopen Positions = %+v, want %+v", got, want)
	}
}

// crashed is a rig on a copy of r's state db taken now, opened as after
// kill -9, with a fresh firewall and the same clock and jails.
func (r *rig) crashed() *rig {
	r.t.Helper()
	dir := r.t.TempDir()
	copyDB(r.t, r.dir, dir)
	r2 := &rig{t: r.t, dir: dir, clk: r.clk, fw: newRecFW(r.clk.Now), logs: &logBuf{}, jails: r.jails, opts: r.opts}
	r2.opts.StateDir = dir
	r2.opts.Firewall = r2.fw
	r2.open()
	return r2
}

// copyDB copies the state db while the engine holds it open, as a crash
// would leave it: bbolt's file is consistent at every commit boundary, and
// the test makes no commit while copying.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "moat.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
