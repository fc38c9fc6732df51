package jail

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/sources"
	bolt "go.etcd.io/bbolt"
)

var ctx = context.Background()

func TestFailureThreshold(t *testing.T) {
	m := time.Minute
	tests := []struct {
		name    string
		now     time.Duration // clock offset from t0
		live    bool          // the clock follows the newest failure, as when reading live
		times   []time.Duration
		wantBan int // index of the failure that bans, -1 none
		counted int // failures counted (TotalFailed)
	}{
		{"third within findtime bans", 5 * m, false, []time.Duration{0, m, 2 * m}, 2, 3},
		{"two do not ban", 5 * m, false, []time.Duration{0, m}, -1, 2},
		{"spread wider than findtime", 0, true, []time.Duration{0, 6 * m, 12 * m}, -1, 3},
		{"slides: fourth bans once the first left", 0, true, []time.Duration{0, 6 * m, 12 * m, 13 * m}, 3, 4},
		{"out of order within findtime of newest", 6 * m, false, []time.Duration{5 * m, 0, 3 * m}, 2, 3},
		{"out of order older than newest minus findtime", 0, false, []time.Duration{20 * m, 5 * m, 21 * m, 22 * m}, 3, 4},
		{"older than now minus findtime ignored", 30 * m, false, []time.Duration{0, m, 2 * m}, -1, 0},
		{"old one ignored among fresh", 30 * m, false, []time.Duration{25 * m, 5 * m, 26 * m, 27 * m}, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, jailCfg("sshd"))
			r.clk.Add(tc.now)
			got := -1
			for i, d := range tc.times {
				if tc.live && t0.Add(d).After(r.clk.Now()) {
					r.clk.Add(t0.Add(d).Sub(r.clk.Now()))
				}
				b := r.fail("sshd", "203.0.113.5", t0.Add(d), sources.Position{Path: "/var/log/auth.log", Inode: 1, Offset: int64(i+1) * 10})
				if b != nil {
					if got != -1 {
						t.Fatalf("banned twice (failures %d and %d)", got, i)
					}
					got = i
					if b.Prefix != pfx("203.0.113.5/32") || b.Failures != 3 || b.Count != 1 {
						t.Errorf("ban = %+v, want 203.0.113.5/32 with 3 failures, count 1", b)
					}
					if want := r.clk.Now().Add(time.Hour); !b.Expires.Equal(want) {
						t.Errorf("Expires = %v, want %v", b.Expires, want)
					}
				}
			}
			if got != tc.wantBan {
				t.Errorf("banned at failure %d, want %d", got, tc.wantBan)
			}
			st, err := r.e.Status("sshd")
			if err != nil {
				t.Fatal(err)
			}
			if st[0].TotalFailed != tc.counted {
				t.Errorf("TotalFailed = %d, want %d", st[0].TotalFailed, tc.counted)
			}
			wantFW := []string(nil)
			if tc.wantBan >= 0 {
				wantFW = []string{"sshd|203.0.113.5/32"}
			}
			if got := r.fw.keys(); !slices.Equal(got, wantFW) {
				t.Errorf("firewall = %v, want %v", got, wantFW)
			}
		})
	}
}

func TestFailureAfterBanIgnored(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	for i := range 3 {
		r.fail("sshd", "203.0.113.5", t0, sources.Position{})
		_ = i
	}
	for range 10 {
		if b := r.fail("sshd", "203.0.113.5", t0, sources.Position{}); b != nil {
			t.Fatalf("banned again while banned: %+v", b)
		}
	}
	st, _ := r.e.Status("sshd")
	if st[0].TotalFailed != 3 || st[0].CurrentlyFailed != 0 || st[0].CurrentlyBanned != 1 || st[0].TotalBanned != 1 {
		t.Errorf("status = %+v, want 3 failed, 0 current, 1 banned", st[0])
	}
	if n := len(r.logs.lines(t, "ban")); n != 1 {
		t.Errorf("%d ban log lines, want 1", n)
	}
	if got := r.eventKinds(); !slices.Equal(got, []string{"ban sshd 203.0.113.5/32"}) {
		t.Errorf("events = %v", got)
	}
}

func TestBanLogLine(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("198.51.100.7/32"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Unban(ctx, pfx("198.51.100.7/32"), ""); err != nil {
		t.Fatal(err)
	}
	bans, unbans := r.logs.lines(t, "ban"), r.logs.lines(t, "unban")
	if len(bans) != 1 || len(unbans) != 1 {
		t.Fatalf("%d ban and %d unban lines, want 1 each", len(bans), len(unbans))
	}
	for _, l := range []map[string]any{bans[0], unbans[0]} {
		for _, k := range []string{keyJail, keyIP, keyFailures, keyCount, keyUntil} {
			if _, ok := l[k]; !ok {
				t.Errorf("log line %v lacks key %q", l, k)
			}
		}
		if l[keyUntil] != "never" || l[keyIP] != "198.51.100.7" {
			t.Errorf("log line %v: want ip 198.51.100.7 until never", l)
		}
	}
}

func TestBanDuration(t *testing.T) {
	h := time.Hour
	base := Config{BanTime: h}
	inc := func(i Increment) Config { c := base; i.Enabled = true; c.Increment = i; return c }
	tests := []struct {
		name string
		cfg  Config
		prev int
		want time.Duration
	}{
		{"no increment first", base, 0, h},
		{"no increment repeat", base, 5, h},
		{"doubling first ban is base", inc(Increment{}), 0, h},
		{"doubling second ban", inc(Increment{}), 1, 2 * h},
		{"doubling fourth ban", inc(Increment{}), 3, 8 * h},
		{"doubling capped at 2^20", func() Config { c := inc(Increment{}); c.BanTime = time.Minute; return c }(), 40, 1 << 20 * time.Minute},
		{"factor", inc(Increment{Factor: 3}), 2, 12 * h},
		{"multipliers", inc(Increment{Multipliers: []float64{1, 5, 30}}), 1, 5 * h},
		{"multipliers past the end use the last", inc(Increment{Multipliers: []float64{1, 5, 30}}), 9, 30 * h},
		{"maxtime caps", inc(Increment{MaxTime: 5 * h}), 3, 5 * h},
		{"rndtime adds rnd*rndtime", inc(Increment{RndTime: 10 * time.Minute}), 1, 2*h + 5*time.Minute},
		{"rndtime then maxtime", inc(Increment{RndTime: 10 * time.Minute, MaxTime: 2 * h}), 1, 2 * h},
		{"bantime -1 never ends", Config{BanTime: -1, Increment: Increment{Enabled: true}}, 3, -1},
		{"overflow bounded", inc(Increment{Factor: 1e12}), 20, maxBan},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := banDuration(tc.cfg, tc.prev, func() float64 { return 0.5 }); got != tc.want {
				t.Errorf("banDuration(prev %d) = %v, want %v", tc.prev, got, tc.want)
			}
		})
	}
}

func TestEscalationAcrossRestart(t *testing.T) {
	c := jailCfg("sshd")
	c.Increment = Increment{Enabled: true}
	r := newRig(t, c)
	var counts []int
	var lengths []time.Duration
	banOnce := func() {
		var b *Ban
		for range 3 {
			b = r.fail("sshd", "203.0.113.5", r.clk.Now(), sources.Position{})
		}
		if b == nil {
			t.Fatal("no ban after 3 failures")
		}
		counts = append(counts, b.Count)
		lengths = append(lengths, b.Expires.Sub(b.BannedAt))
	}
	banOnce()
	if _, err := r.e.Unban(ctx, pfx("203.0.113.5/32"), "sshd"); err != nil {
		t.Fatal(err)
	}
	banOnce()
	r.clk.Add(3 * time.Hour)
	if err := r.e.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	r.open()
	banOnce()
	if want := []int{1, 2, 3}; !slices.Equal(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	if want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour}; !slices.Equal(lengths, want) {
		t.Errorf("lengths = %v, want %v", lengths, want)
	}
}

func TestRefusals(t *testing.T) {
	c := jailCfg("sshd")
	c.IgnoreIP = []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:ffff::/48")}
	r := newRig(t, c)
	tests := []struct {
		prefix string
		reason string // substring; "" allowed
	}{
		{"127.0.0.1/32", "loopback"},
		{"127.0.0.0/16", "loopback"},
		{"::1/128", "loopback"},
		{"192.0.2.10/32", "own addresses"},
		{"192.0.2.0/24", "own addresses"},
		{"198.51.100.7/32", "ignoreip"},
		{"198.51.0.0/16", "ignoreip"},
		{"2001:db8:ffff:1::/64", "ignoreip"},
		{"10.0.0.0/8", "wider than /16"},
		{"2001:db8::/16", "wider than /32"},
		{"224.0.0.1/32", "multicast"},
		{"ff02::1/128", "multicast"},
		{"0.0.0.0/32", "unspecified"},
		{"::/128", "unspecified"},
		{"203.0.113.0/24", ""},
		{"2001:db8:1::/48", ""},
		{"::ffff:203.0.113.9/128", ""},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.prefix, "/", "_"), func(t *testing.T) {
			_, err := r.e.Ban(ctx, "sshd", pfx(tc.prefix), time.Minute)
			var re *RefusedError
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Ban(%s) = %v, want success", tc.prefix, err)
				}
				return
			}
			if !errors.As(err, &re) || !strings.Contains(re.Reason, tc.reason) {
				t.Fatalf("Ban(%s) = %v, want refusal %q", tc.prefix, err, tc.reason)
			}
		})
	}
	t.Run("unknown jail", func(t *testing.T) {
		_, err := r.e.Ban(ctx, "nope", pfx("203.0.113.1/32"), 0)
		if !errors.Is(err, ErrUnknownJail) {
			t.Errorf("Ban in unknown jail = %v, want ErrUnknownJail", err)
		}
		_, err = r.e.Failure(ctx, Failure{Jail: "nope", Addr: netip.MustParseAddr("203.0.113.1"), Time: t0}, sources.Position{})
		if !errors.Is(err, ErrUnknownJail) {
			t.Errorf("Failure in unknown jail = %v, want ErrUnknownJail", err)
		}
	})
	t.Run("failures of refused addresses not counted", func(t *testing.T) {
		before, _ := r.e.Status("sshd")
		for _, a := range []string{"127.0.0.1", "::1", "192.0.2.10", "198.51.100.7", "2001:db8:ffff::5", "::ffff:127.0.0.1"} {
			for range 5 {
				if b := r.fail("sshd", a, t0, sources.Position{}); b != nil {
					t.Errorf("%s banned: %+v", a, b)
				}
			}
		}
		after, _ := r.e.Status("sshd")
		if after[0].TotalFailed != before[0].TotalFailed {
			t.Errorf("TotalFailed went from %d to %d", before[0].TotalFailed, after[0].TotalFailed)
		}
	})
	t.Run("ignoreself off allows own address", func(t *testing.T) {
		c := jailCfg("web")
		c.IgnoreSelf = false
		r := newRig(t, c)
		if _, err := r.e.Ban(ctx, "web", pfx("192.0.2.10/32"), time.Minute); err != nil {
			t.Errorf("Ban own address with IgnoreSelf off = %v", err)
		}
	})
}

func TestIPv6Grouping(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if b := r.fail("sshd", "2001:db8:1::1", t0, sources.Position{}); b != nil {
		t.Fatal("early ban")
	}
	if b := r.fail("sshd", "2001:db8:2::1", t0, sources.Position{}); b != nil {
		t.Fatal("early ban")
	}
	if b := r.fail("sshd", "2001:db8:1::2", t0, sources.Position{}); b != nil {
		t.Fatal("early ban")
	}
	b := r.fail("sshd", "2001:db8:1:0:ffff::3", t0, sources.Position{})
	if b == nil || b.Prefix != pfx("2001:db8:1::/64") {
		t.Fatalf("ban = %+v, want 2001:db8:1::/64", b)
	}
	st, _ := r.e.Status("sshd")
	if st[0].CurrentlyFailed != 1 {
		t.Errorf("CurrentlyFailed = %d, want 1 (the other /64)", st[0].CurrentlyFailed)
	}
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|2001:db8:1::/64"}) {
		t.Errorf("firewall = %v", got)
	}
	// An address inside the banned /64 is not counted while banned.
	if b := r.fail("sshd", "2001:db8:1::9", t0, sources.Position{}); b != nil {
		t.Error("counted inside banned prefix")
	}
}

func TestBanTimeNever(t *testing.T) {
	c := jailCfg("sshd")
	c.BanTime = -1
	r := newRig(t, c)
	var b *Ban
	for range 3 {
		b = r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	}
	if b == nil || !b.Expires.IsZero() {
		t.Fatalf("ban = %+v, want one without end", b)
	}
	r.clk.Add(1000 * 24 * time.Hour)
	if err := r.e.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.e.Bans(""); len(got) != 1 || !got[0].Expires.IsZero() {
		t.Errorf("Bans = %+v, want the ban without end", got)
	}
	if got := r.fw.keys(); len(got) != 1 {
		t.Errorf("firewall = %v", got)
	}
}

func TestSweepExpiry(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("web"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Ban(ctx, "web", pfx("203.0.113.6/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	r.clk.Add(59 * time.Second)
	r.e.sweep(ctx)
	if n := len(r.e.Bans("")); n != 2 {
		t.Fatalf("%d bans before expiry, want 2", n)
	}
	r.clk.Add(time.Second)
	if err := r.e.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.e.Bans(""); len(got) != 1 || got[0].Jail != "web" {
		t.Errorf("Bans = %+v, want only web's", got)
	}
	if got := r.fw.keys(); !slices.Equal(got, []string{"web|203.0.113.6/32"}) {
		t.Errorf("firewall = %v", got)
	}
	if n := len(r.logs.lines(t, "expire")); n != 1 {
		t.Errorf("%d expire log lines, want 1", n)
	}
	if got := r.eventKinds(); !slices.Contains(got, "expire sshd 203.0.113.5/32") {
		t.Errorf("events = %v, want an expire", got)
	}
	r.e.Close()
	r.open()
	if got := r.e.Bans(""); len(got) != 1 || got[0].Jail != "web" {
		t.Errorf("after reopen Bans = %+v, want only web's", got)
	}
}

func TestExpiredWhileStopped(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	r.clk.Add(time.Hour)
	r.open()
	if got := r.e.Bans(""); len(got) != 0 {
		t.Errorf("Bans = %+v, want none", got)
	}
	if got := r.fw.keys(); len(got) != 0 {
		t.Errorf("firewall = %v, want empty", got)
	}
}

func TestUnban(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("web"))
	for _, b := range []struct{ jail, p string }{
		{"sshd", "203.0.113.0/24"}, {"web", "203.0.113.9/32"}, {"web", "198.51.100.1/32"}, {"sshd", "2001:db8:1::/64"},
	} {
		if _, err := r.e.Ban(ctx, b.jail, pfx(b.p), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("address inside prefix in one jail", func(t *testing.T) {
		got, err := r.e.Unban(ctx, pfx("203.0.113.9/32"), "sshd")
		if err != nil || len(got) != 1 || got[0].Prefix != pfx("203.0.113.0/24") {
			t.Fatalf("Unban = %+v, %v; want sshd's /24", got, err)
		}
		if keys := r.fw.keys(); slices.Contains(keys, "sshd|203.0.113.0/24") || !slices.Contains(keys, "web|203.0.113.9/32") {
			t.Errorf("firewall = %v", keys)
		}
	})
	t.Run("ipv6 address inside /64 in every jail", func(t *testing.T) {
		got, err := r.e.Unban(ctx, pfx("2001:db8:1::77/128"), "")
		if err != nil || len(got) != 1 {
			t.Fatalf("Unban = %+v, %v", got, err)
		}
	})
	t.Run("prefix does not match a narrower ban", func(t *testing.T) {
		_, err := r.e.Unban(ctx, pfx("198.51.100.0/24"), "")
		if !errors.Is(err, ErrNotBanned) {
			t.Errorf("Unban = %v, want ErrNotBanned", err)
		}
	})
	t.Run("not banned", func(t *testing.T) {
		_, err := r.e.Unban(ctx, pfx("203.0.113.0/24"), "sshd")
		if !errors.Is(err, ErrNotBanned) {
			t.Errorf("Unban = %v, want ErrNotBanned", err)
		}
	})
	t.Run("unknown jail", func(t *testing.T) {
		_, err := r.e.Unban(ctx, pfx("203.0.113.9/32"), "nope")
		if !errors.Is(err, ErrUnknownJail) {
			t.Errorf("Unban = %v, want ErrUnknownJail", err)
		}
	})
	t.Run("all", func(t *testing.T) {
		n, err := r.e.UnbanAll(ctx)
		if err != nil || n != 2 {
			t.Fatalf("UnbanAll = %d, %v; want 2", n, err)
		}
		if len(r.e.Bans("")) != 0 || len(r.fw.keys()) != 0 {
			t.Errorf("bans %v, firewall %v left", r.e.Bans(""), r.fw.keys())
		}
		r.e.Close()
		r.open()
		if got := r.e.Bans(""); len(got) != 0 {
			t.Errorf("after reopen: %v", got)
		}
	})
}

func TestManualBanReplaces(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	b, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A re-ban of an active ban is not a new ban: count 1, the jail's hour
	// (later than the minute left) kept.
	if b.Count != 1 || !b.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("ban = %+v, want count 1 for the jail's hour", b)
	}
	got := r.e.Bans("sshd")
	if len(got) != 1 || !got[0].Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("Bans = %+v", got)
	}
	if exp := r.fw.expires("sshd|203.0.113.5/32"); !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("firewall holds expiry %v, want the new one", exp)
	}
}

// A log: line i (from 1) is a failure of addr[i] and ends at offset 100*i.
type logLine struct {
	addr string
}

func feed(t *testing.T, r *rig, lines []logLine, from int) (bannedAt []int) {
	t.Helper()
	for i := from; i < len(lines); i++ {
		pos := sources.Position{Path: "/var/log/auth.log", Inode: 7, Offset: int64(100 * (i + 1))}
		if lines[i].addr == "" {
			r.e.Advance(pos)
			continue
		}
		if b := r.fail("sshd", lines[i].addr, t0.Add(time.Duration(i)*time.Second), pos); b != nil {
			bannedAt = append(bannedAt, i)
		}
	}
	return bannedAt
}

// resumeAt is the index of the first line after the saved position.
func resumeAt(t *testing.T, e *Engine) int {
	t.Helper()
	ps := e.Positions()
	if len(ps) != 1 {
		t.Fatalf("positions = %+v, want one", ps)
	}
	return int(ps[0].Offset / 100)
}

func TestCrashReplayCountsOnce(t *testing.T) {
	A, B := "203.0.113.1", "203.0.113.2"
	lines := []logLine{{A}, {B}, {A}, {""}, {A}, {B}, {""}, {B}, {A}}
	// Uninterrupted, A bans at line 4 and B at line 7.
	tests := []struct {
		name       string
		checkpoint int // call Checkpoint after this line (-1: never)
		crashAfter int // copy the db after this line
	}{
		{"crash right after ban", -1, 4},
		{"crash after more failures", -1, 5},
		{"checkpoint mid window then crash", 5, 6},
		{"checkpoint then crash at once", 5, 5},
		{"crash before any ban", -1, 2},
		{"checkpoint of a line without failure", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, jailCfg("sshd"))
			var banned []int
			for i := 0; i <= tc.crashAfter; i++ {
				banned = append(banned, feed(t, r, lines[:i+1], i)...)
				if i == tc.checkpoint {
					if err := r.e.Checkpoint(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Restart from the copy, as after kill -9.
			r2 := r.crashed()
			from := 0
			if len(r2.e.Positions()) > 0 {
				from = resumeAt(t, r2.e)
			}
			banned = append(banned, feed(t, r2, lines, from)...)
			if want := []int{4, 7}; !slices.Equal(banned, want) {
				t.Errorf("banned at lines %v, want %v (resumed at %d)", banned, want, from)
			}
			if got := r2.fw.keys(); !slices.Equal(got, []string{"sshd|203.0.113.1/32", "sshd|203.0.113.2/32"}) {
				t.Errorf("firewall after restart = %v", got)
			}
		})
	}
}

func TestCloseReopenKeepsBans(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	for range 3 {
		r.fail("sshd", "203.0.113.5", t0, sources.Position{Path: "/l", Inode: 1, Offset: 10})
	}
	if _, err := r.e.Ban(ctx, "sshd", pfx("2001:db8:5::/64"), -1); err != nil {
		t.Fatal(err)
	}
	want := r.e.Bans("")
	r.e.Close()
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.7/32"), 0); err == nil {
		t.Error("Ban after Close succeeded")
	}
	r.fw = newRecFW(r.clk.Now)
	r.opts.Firewall = r.fw
	r.open()
	got := r.e.Bans("")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after reopen Bans = %+v, want %+v", got, want)
	}
	if keys := r.fw.keys(); len(keys) != 2 {
		t.Errorf("firewall after reopen = %v, want both bans synced", keys)
	}
	info, err := os.Stat(filepath.Join(r.dir, "moat.db"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("state db mode = %v, %v; want 0600", info, err)
	}
}

func TestPositions(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	for ino := uint64(1); ino <= 6; ino++ {
		r.e.Advance(sources.Position{Path: "/var/log/a.log", Inode: ino, Offset: int64(ino) * 10, Sum: uint32(ino)})
	}
	r.e.Advance(sources.Position{Path: "/var/log/a.log", Inode: 4, Offset: 99, Sum: 0xdeadbeef})
	r.e.Advance(sources.Position{Path: "/var/log/b.log", Inode: 1, Offset: 5})
	want := []sources.Position{
		{Path: "/var/log/a.log", Inode: 4, Offset: 99, Sum: 0xdeadbeef},
		{Path: "/var/log/a.log", Inode: 6, Offset: 60, Sum: 6},
		{Path: "/var/log/a.log", Inode: 5, Offset: 50, Sum: 5},
		{Path: "/var/log/a.log", Inode: 3, Offset: 30, Sum: 3},
		{Path: "/var/log/b.log", Inode: 1, Offset: 5},
	}
	checkReopen(t, r, want)
}

// TestForgetPositions: forgotten paths leave Positions and, after a
// checkpoint, the state db; the others stay.
func TestForgetPositions(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	for _, p := range []string{"/var/log/a.log", "/c/1/1-json.log", "/c/2/2-json.log"} {
		r.e.Advance(sources.Position{Path: p, Inode: 1, Offset: 7})
	}
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	gone := r.e.ForgetPositions(func(p string) bool { return strings.HasPrefix(p, "/c/") })
	if !slices.Equal(gone, []string{"/c/1/1-json.log", "/c/2/2-json.log"}) {
		t.Errorf("forgot %v", gone)
	}
	want := []sources.Position{{Path: "/var/log/a.log", Inode: 1, Offset: 7}}
	checkReopen(t, r, want)
}

func TestRunFinalCheckpoint(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	r.fail("sshd", "203.0.113.5", t0, sources.Position{Path: "/l", Inode: 1, Offset: 10})
	r.e.Advance(sources.Position{Path: "/l", Inode: 1, Offset: 20})
	c, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.e.Run(c) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	r.e.Close()
	r.open()
	if got := r.e.Positions(); len(got) != 1 || got[0].Offset != 20 {
		t.Errorf("Positions = %+v, want offset 20", got)
	}
	// The window came back too: two more failures ban.
	r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	if b := r.fail("sshd", "203.0.113.5", t0, sources.Position{}); b == nil {
		t.Error("window not restored: no ban at the third failure")
	}
}

func TestConfigureReload(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("web"))
	r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	for _, b := range []struct{ jail, p string }{{"sshd", "198.51.100.1/32"}, {"web", "198.51.100.2/32"}, {"web", "203.0.113.77/32"}} {
		if _, err := r.e.Ban(ctx, b.jail, pfx(b.p), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	sshd := jailCfg("sshd")
	mail := jailCfg("mail")
	mail.IgnoreIP = []netip.Prefix{pfx("198.51.100.0/24")}
	if err := r.e.Configure(ctx, []Config{sshd, mail}); err != nil {
		t.Fatal(err)
	}
	if got := r.e.Jails(); !slices.Equal(got, []string{"mail", "sshd"}) {
		t.Errorf("Jails = %v", got)
	}
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|198.51.100.1/32"}) {
		t.Errorf("firewall = %v, want only sshd's ban", got)
	}
	if len(r.fw.jails) != 2 || r.fw.jails[0].Name != "mail" {
		t.Errorf("firewall jails = %+v", r.fw.jails)
	}
	if n := len(r.logs.lines(t, "unban")); n != 2 {
		t.Errorf("%d unban lines, want 2 (web's bans)", n)
	}
	// sshd's window survived: one more failure bans.
	if b := r.fail("sshd", "203.0.113.5", t0, sources.Position{}); b == nil {
		t.Error("sshd's window lost on reload")
	}
	// Changing a jail's ignoreip lifts bans it now refuses.
	sshd.IgnoreIP = []netip.Prefix{pfx("198.51.100.1/32")}
	if err := r.e.Configure(ctx, []Config{sshd, mail}); err != nil {
		t.Fatal(err)
	}
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|203.0.113.5/32"}) {
		t.Errorf("firewall = %v, want only the new ban", got)
	}
	// A bad config changes nothing.
	if err := r.e.Configure(ctx, []Config{{Name: "x"}}); err == nil {
		t.Error("Configure accepted maxretry 0")
	}
	if got := r.e.Jails(); !slices.Equal(got, []string{"mail", "sshd"}) {
		t.Errorf("Jails after bad config = %v", got)
	}
	// A jail dropped while stopped loses its bans and windows at Configure.
	r.fail("mail", "203.0.113.50", t0, sources.Position{})
	if _, err := r.e.Ban(ctx, "mail", pfx("203.0.113.51/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	r.e.Checkpoint(ctx)
	r.e.Close()
	r.jails = []Config{sshd}
	r.open()
	if got := r.e.Bans("mail"); len(got) != 0 {
		t.Errorf("mail's bans kept: %v", got)
	}
	if n := r.e.tr.len(); n != 0 {
		t.Errorf("%d windows kept, want 0", n)
	}
}

func TestFirewallResync(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	syncs := r.fw.syncs
	r.e.checkFirewall(ctx)
	if r.fw.syncs != syncs {
		t.Errorf("synced an intact firewall")
	}
	r.fw.flush()
	r.e.checkFirewall(ctx)
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|203.0.113.5/32"}) {
		t.Errorf("firewall after resync = %v", got)
	}
	if n := len(r.logs.lines(t, "firewall drift repaired")); n != 1 {
		t.Errorf("%d repair warnings, want 1", n)
	}
	st := r.e.FirewallStatus()
	if st.Matched || st.LastRepair.IsZero() || st.Repairs[firewall.RepairLayout] != 1 || st.LastRepairKinds[firewall.RepairLayout] != 1 {
		t.Errorf("FirewallStatus after the repair = %+v, want not matched, one layout repair", st)
	}
	r.e.checkFirewall(ctx)
	st2 := r.e.FirewallStatus()
	if !st2.Matched || st2.LastRepair != st.LastRepair || st2.Repairs[firewall.RepairLayout] != 1 {
		t.Errorf("FirewallStatus after the next check = %+v, want matched, the same last repair", st2)
	}
}

func TestMemoryCapEviction(t *testing.T) {
	c := jailCfg("sshd")
	r := newRig(t, c)
	r.e.Close()
	r.opts.MaxTracked = 3
	r.open()
	addrs := []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}
	for _, a := range addrs {
		r.fail("sshd", a, t0, sources.Position{})
	}
	r.fail("sshd", "203.0.113.1", t0, sources.Position{}) // .1 is now the most recent
	r.fail("sshd", "203.0.113.4", t0, sources.Position{}) // evicts .2, the oldest
	st, _ := r.e.Status("sshd")
	if st[0].CurrentlyFailed != 3 {
		t.Errorf("CurrentlyFailed = %d, want 3", st[0].CurrentlyFailed)
	}
	// .2 was forgotten: two more do not ban it; .1 (2 failures) bans at one more.
	r.fail("sshd", "203.0.113.2", t0, sources.Position{})
	if b := r.fail("sshd", "203.0.113.2", t0, sources.Position{}); b != nil {
		t.Error(".2 was not evicted")
	}
	if b := r.fail("sshd", "203.0.113.1", t0, sources.Position{}); b == nil {
		t.Error(".1 was evicted though most recent")
	}
}

func TestConcurrentFailures(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	bans := map[netip.Prefix]int{}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 50)})
				pos := sources.Position{Path: fmt.Sprintf("/log%d", g), Inode: 1, Offset: int64(i)}
				b, err := r.e.Failure(ctx, Failure{Jail: "sshd", Addr: a, Time: t0}, pos)
				if err != nil {
					t.Error(err)
					return
				}
				if b != nil {
					mu.Lock()
					bans[b.Prefix]++
					mu.Unlock()
				}
				if i%37 == 0 {
					r.e.Checkpoint(ctx)
				}
			}
		}()
	}
	wg.Wait()
	if len(bans) != 50 {
		t.Errorf("%d prefixes banned, want 50", len(bans))
	}
	for p, n := range bans {
		if n != 1 {
			t.Errorf("%s banned %d times", p, n)
		}
	}
	if n := len(r.e.Bans("")); n != 50 {
		t.Errorf("%d active bans, want 50", n)
	}
}

func TestEvictedWindowsLeaveStateDB(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	r.e.Close()
	r.opts.MaxTracked = 2
	r.open()
	r.fail("sshd", "203.0.113.1", t0, sources.Position{})
	r.fail("sshd", "203.0.113.2", t0, sources.Position{})
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// A flood of distinct addresses evicts both; the never-saved windows
	// it evicts in turn leave nothing to write.
	for i := range 200 {
		r.fail("sshd", fmt.Sprintf("198.51.100.%d", i), t0, sources.Position{})
	}
	if n := r.e.tr.pendingWrites(); n > 4 {
		t.Errorf("dirty set holds %d keys, want at most 2*MaxTracked", n)
	}
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	r.open()
	var got []string
	for _, k := range r.e.tr.keys() {
		got = append(got, k.prefix.String())
	}
	slices.Sort(got)
	if want := []string{"198.51.100.198/32", "198.51.100.199/32"}; !slices.Equal(got, want) {
		t.Errorf("windows after reopen = %v, want %v", got, want)
	}
}

func TestFailuresOfOneLine(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("web"))
	pos := func(o int64) sources.Position { return sources.Position{Path: "/l", Inode: 1, Offset: o} }
	fs := []Failure{
		{Jail: "sshd", Addr: netip.MustParseAddr("203.0.113.5"), Time: t0},
		{Jail: "web", Addr: netip.MustParseAddr("203.0.113.5"), Time: t0},
	}
	for i := range 2 {
		if bans, _, err := r.e.Failures(ctx, fs, pos(int64(i+1))); err != nil || len(bans) != 0 {
			t.Fatalf("line %d: %v, %v", i, bans, err)
		}
	}
	bans, _, err := r.e.Failures(ctx, append(fs, Failure{Jail: "nope", Addr: netip.MustParseAddr("203.0.113.5"), Time: t0}), pos(3))
	if !errors.Is(err, ErrUnknownJail) || len(bans) != 2 {
		t.Fatalf("third line = %v, %v; want two bans and ErrUnknownJail", bans, err)
	}
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|203.0.113.5/32", "web|203.0.113.5/32"}) {
		t.Errorf("firewall = %v", got)
	}
	if got := r.e.Positions(); len(got) != 1 || got[0].Offset != 3 {
		t.Errorf("Positions = %v", got)
	}
}

// TestFailuresTooOld: a failure older than its jail's findtime is
// dropped, handed back by Failures with the findtime, and counted in the
// jail's Status.TooOld (by Failure too); one just inside is recorded.
func TestFailuresTooOld(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("web"))
	ft := jailCfg("sshd").FindTime
	pos := sources.Position{Path: "/l", Inode: 1, Offset: 1}
	a := netip.MustParseAddr("203.0.113.5")
	old := Failure{Jail: "sshd", Addr: a, Time: t0.Add(-ft - time.Second)}
	fresh := Failure{Jail: "web", Addr: a, Time: t0.Add(-ft + time.Second)}
	_, dropped, err := r.e.Failures(ctx, []Failure{old, fresh}, pos)
	if err != nil || len(dropped) != 1 || dropped[0].Failure != old || dropped[0].FindTime != ft {
		t.Fatalf("Failures dropped %v, %v; want only %v with findtime %v", dropped, err, old, ft)
	}
	if _, err := r.e.Failure(ctx, old, pos); err != nil {
		t.Fatal(err)
	}
	st, err := r.e.Status("")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for _, s := range st {
		got[s.Jail] = [2]int{s.TooOld, s.TotalFailed}
	}
	if want := map[string][2]int{"sshd": {2, 0}, "web": {0, 1}}; !maps.Equal(got, want) {
		t.Errorf("status (too old, total failed) = %v, want %v", got, want)
	}
}

// hookFW is the recording firewall with hooks run before each call.
type hookFW struct {
	*recFW
	onAdd    func([]firewall.Ban) error
	onDelete func([]firewall.Ban) error
}

func (h *hookFW) Add(ctx context.Context, bans []firewall.Ban, now time.Time) error {
	if h.onAdd != nil {
		if err := h.onAdd(bans); err != nil {
			return err
		}
	}
	return h.recFW.Add(ctx, bans, now)
}

func (h *hookFW) Delete(ctx context.Context, bans []firewall.Ban) error {
	if h.onDelete != nil {
		if err := h.onDelete(bans); err != nil {
			return err
		}
	}
	return h.recFW.Delete(ctx, bans)
}

// savedBans reads the bans a crash at this instant would leave, from a
// copy of the state db.
func savedBans(t *testing.T, dir string) []string {
	t.Helper()
	cp := t.TempDir()
	copyDB(t, dir, cp)
	db, err := bolt.Open(filepath.Join(cp, "moat.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st := &store{db: db}
	defer st.close()
	l, err := st.load(func(string, []byte, error) {})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range l.bans {
		out = append(out, b.Jail+"|"+b.Prefix.String())
	}
	slices.Sort(out)
	return out
}

func TestDurableBeforeFirewall(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	h := &hookFW{recFW: r.fw}
	var checked int
	h.onAdd = func(bans []firewall.Ban) error {
		for _, b := range bans {
			if !slices.Contains(savedBans(t, r.dir), fwKey(b)) {
				t.Errorf("ban %s reached the firewall before the state db", fwKey(b))
			}
			checked++
		}
		return nil
	}
	h.onDelete = func(bans []firewall.Ban) error {
		for _, b := range bans {
			if slices.Contains(savedBans(t, r.dir), fwKey(b)) {
				t.Errorf("unban %s reached the firewall before the state db", fwKey(b))
			}
			checked++
		}
		return nil
	}
	r.e.Close()
	r.opts.Firewall = h
	r.open()
	for range 3 {
		r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	}
	if _, err := r.e.Ban(ctx, "sshd", pfx("198.51.100.0/24"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Unban(ctx, pfx("203.0.113.5/32"), ""); err != nil {
		t.Fatal(err)
	}
	r.clk.Add(time.Hour)
	if err := r.e.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if checked != 4 {
		t.Errorf("checked %d firewall writes, want 4", checked)
	}
}

func TestFirewallErrorResyncs(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	h := &hookFW{recFW: r.fw}
	fail := true
	h.onAdd = func([]firewall.Ban) error {
		if fail {
			return errors.New("netlink: no buffer space")
		}
		return nil
	}
	r.e.Close()
	r.opts.Firewall = h
	r.open()
	b, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Hour)
	if err == nil || b.Prefix != pfx("203.0.113.5/32") {
		t.Fatalf("Ban = %+v, %v; want the durable ban and the firewall's error", b, err)
	}
	if len(r.e.Bans("")) != 1 || len(r.fw.keys()) != 0 {
		t.Fatalf("bans %v, firewall %v", r.e.Bans(""), r.fw.keys())
	}
	fail = false
	r.e.checkFirewall(ctx)
	if got := r.fw.keys(); !slices.Equal(got, []string{"sshd|203.0.113.5/32"}) {
		t.Errorf("firewall after resync = %v", got)
	}
}

func TestFailureInsideWiderBanIgnored(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.0/24"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Ban(ctx, "sshd", pfx("2001:db8:7::/48"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if b := r.fail("sshd", "203.0.113.5", t0, sources.Position{}); b != nil {
			t.Fatalf("banned %s inside a banned /24", b.Prefix)
		}
		if b := r.fail("sshd", "2001:db8:7:1::5", t0, sources.Position{}); b != nil {
			t.Fatalf("banned %s inside a banned /48", b.Prefix)
		}
	}
	if _, err := r.e.Unban(ctx, pfx("203.0.113.0/24"), ""); err != nil {
		t.Fatal(err)
	}
	var b *Ban
	for range 3 {
		b = r.fail("sshd", "203.0.113.5", t0, sources.Position{})
	}
	if b == nil {
		t.Error("no ban after the /24 was lifted")
	}
}

func TestBlocks(t *testing.T) {
	web := jailCfg("web")
	web.Ports = []firewall.PortRange{{First: 80, Last: 80}, {First: 443, Last: 443}}
	ssh := jailCfg("sshd")
	ssh.Ports = []firewall.PortRange{{First: 22, Last: 22}}
	all := jailCfg("recidive")
	v6 := jailCfg("v6")
	v6.IPv6Prefix = 64
	r := newRig(t, web, ssh, all, v6)
	ban := func(j, p string, d time.Duration) {
		t.Helper()
		if _, err := r.e.Ban(ctx, j, pfx(p), d); err != nil {
			t.Fatal(err)
		}
	}
	ban("web", "192.0.2.1/32", time.Hour)
	ban("sshd", "192.0.2.2/32", time.Hour)
	ban("recidive", "198.51.100.0/24", time.Hour)
	ban("v6", "2001:db8:1::/64", time.Minute)
	cases := []struct {
		addr string
		port uint16
		want bool
	}{
		{"192.0.2.1", 443, true},
		{"192.0.2.1", 22, false},
		{"192.0.2.1", 0, true},
		{"192.0.2.2", 443, false},
		{"192.0.2.2", 22, true},
		{"198.51.100.77", 443, true},      // a wide ban in a jail for every port
		{"::ffff:198.51.100.7", 80, true}, // mapped
		{"2001:db8:1::99", 443, true},     // inside the banned /64
		{"2001:db8:2::1", 443, false},
		{"203.0.113.1", 443, false},
	}
	for _, c := range cases {
		if got := r.e.Blocks(netip.MustParseAddr(c.addr), c.port); got != c.want {
			t.Errorf("Blocks(%s, %d) = %v, want %v", c.addr, c.port, got, c.want)
		}
	}
	r.clk.Add(2 * time.Minute)
	if r.e.Blocks(netip.MustParseAddr("2001:db8:1::99"), 443) {
		t.Error("Blocks is true after the ban expired")
	}
	if _, err := r.e.Unban(ctx, pfx("192.0.2.1/32"), ""); err != nil {
		t.Fatal(err)
	}
	if r.e.Blocks(netip.MustParseAddr("192.0.2.1"), 443) {
		t.Error("Blocks is true after unban")
	}
}
