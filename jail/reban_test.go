package jail

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/sources"
)

// addLog records every ban the engine adds to the firewall, and counts
// the bans it deletes.
type addLog struct {
	mu      sync.Mutex
	adds    []firewall.Ban
	deletes int
}

func (l *addLog) recordDelete(bans []firewall.Ban) error {
	l.mu.Lock()
	l.deletes += len(bans)
	l.mu.Unlock()
	return nil
}

func (l *addLog) record(bans []firewall.Ban) error {
	l.mu.Lock()
	l.adds = append(l.adds, bans...)
	l.mu.Unlock()
	return nil
}

// last is the last ban added for jail|prefix k.
func (l *addLog) last(k string) (firewall.Ban, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.adds) - 1; i >= 0; i-- {
		if fwKey(l.adds[i]) == k {
			return l.adds[i], true
		}
	}
	return firewall.Ban{}, false
}

// newAddRig is a rig whose firewall records every Add.
func newAddRig(t *testing.T, jails ...Config) (*rig, *addLog) {
	t.Helper()
	r := newRig(t, jails...)
	l := &addLog{}
	r.e.Close()
	r.opts.Firewall = &hookFW{recFW: r.fw, onAdd: l.record, onDelete: l.recordDelete}
	r.open()
	return r, l
}

// TestReBanKeepsLaterExpiry: a manual ban of a prefix banned now keeps the
// later of the two expiries, in what it returns, in Bans, in the firewall
// and across a restart; it does not count as a new ban.
func TestReBanKeepsLaterExpiry(t *testing.T) {
	const never = time.Duration(-1)
	m := time.Minute
	tests := []struct {
		name          string
		first, second time.Duration // -1: no end; 0: the jail's hour
		want          time.Duration // expiry from t0; -1: no end
		kept          bool          // the first ban's expiry stays
	}{
		{"shorter keeps the longer", 30 * m, 5 * m, 30 * m, true},
		{"longer extends", 5 * m, 30 * m, 31 * m, false},
		{"no end on a ban with an end", 30 * m, never, never, false},
		{"an end on a ban without end", never, 5 * m, never, true},
		{"no end on a ban without end", never, never, never, true},
		{"same expiry", 30 * m, 29 * m, 30 * m, true},
		{"jail's time extends a short ban", 5 * m, 0, 61 * m, false},
		{"jail's time keeps a long ban", 2 * time.Hour, 0, 2 * time.Hour, true},
	}
	at := func(d time.Duration) time.Time {
		if d < 0 {
			return time.Time{}
		}
		return t0.Add(d)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, adds := newAddRig(t, jailCfg("sshd"))
			p := pfx("203.0.113.5/32")
			first, err := r.e.Ban(ctx, "sshd", p, tc.first)
			if err != nil {
				t.Fatal(err)
			}
			if first.Previous != nil || first.Count != 1 {
				t.Fatalf("first ban = %+v, want count 1 and no previous", first)
			}
			r.clk.Add(time.Minute)
			b, err := r.e.Ban(ctx, "sshd", p, tc.second)
			if err != nil {
				t.Fatal(err)
			}
			want := at(tc.want)
			if !b.Expires.Equal(want) || b.Count != 1 || !b.BannedAt.Equal(t0) {
				t.Errorf("re-ban = %+v, want count 1, banned at %v, expiring %v", b, t0, want)
			}
			if b.Previous == nil || !b.Previous.Expires.Equal(first.Expires) || b.Previous.Count != 1 {
				t.Errorf("re-ban's previous = %+v, want the first ban", b.Previous)
			} else if kept := b.Previous.Expires.Equal(b.Expires); kept != tc.kept {
				t.Errorf("kept = %v, want %v", kept, tc.kept)
			}
			if fb, ok := adds.last("sshd|203.0.113.5/32"); !ok || !fb.Expires.Equal(want) {
				t.Errorf("last firewall add = %+v, want expiry %v", fb, want)
			}
			// The firewall replaces the expiry in place: a delete first
			// would let the ban lapse between two transactions.
			if adds.deletes != 0 {
				t.Errorf("the re-ban deleted %d bans from the firewall, want none", adds.deletes)
			}
			if exp := r.fw.expires("sshd|203.0.113.5/32"); !exp.Equal(want) {
				t.Errorf("firewall holds expiry %v, want %v", exp, want)
			}
			check := func(when string) {
				t.Helper()
				bs := r.e.Bans("sshd")
				if len(bs) != 1 || !bs[0].Expires.Equal(want) || bs[0].Count != 1 || !bs[0].BannedAt.Equal(t0) || bs[0].Previous != nil {
					t.Errorf("%s: Bans = %+v, want one ban, count 1, since %v, expiring %v", when, bs, t0, want)
				}
			}
			check("after the re-ban")
			st, _ := r.e.Status("sshd")
			if st[0].TotalBanned != 1 {
				t.Errorf("TotalBanned = %d, want 1 (a re-ban is not a new ban)", st[0].TotalBanned)
			}
			r.e.Close()
			r.open()
			check("after a restart")
		})
	}
}

// TestReBanEscalation: a manual re-ban of an active ban does not count for
// escalation; a manual ban after the ban was lifted or expired does, as
// do bans moat decides.
func TestReBanEscalation(t *testing.T) {
	c := jailCfg("sshd")
	c.Increment = Increment{Enabled: true} // 1h, 2h, 4h, ...
	r := newRig(t, c)
	p := pfx("203.0.113.5/32")
	type step struct {
		name      string
		do        func() Ban
		wantCount int
		wantLen   time.Duration // Expires - now
	}
	ban := func(d time.Duration) func() Ban {
		return func() Ban {
			b, err := r.e.Ban(ctx, "sshd", p, d)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	after := func(d time.Duration, f func() Ban) func() Ban {
		return func() Ban {
			r.clk.Add(d)
			return f()
		}
	}
	unbanThen := func(f func() Ban) func() Ban {
		return func() Ban {
			if _, err := r.e.Unban(ctx, p, "sshd"); err != nil {
				t.Fatal(err)
			}
			return f()
		}
	}
	expireThen := func(f func() Ban) func() Ban {
		return func() Ban {
			r.clk.Add(10 * time.Hour)
			if err := r.e.sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if bs := r.e.Bans("sshd"); len(bs) != 0 {
				t.Fatalf("ban not expired: %+v", bs)
			}
			return f()
		}
	}
	byFailures := func() Ban {
		var b *Ban
		for range c.MaxRetry {
			b = r.fail("sshd", "203.0.113.5", r.clk.Now(), sources.Position{})
		}
		if b == nil {
			t.Fatal("no ban after maxretry failures")
		}
		return *b
	}
	for _, s := range []step{
		{"first manual ban", ban(0), 1, time.Hour},
		// The jail's time for this ban's level, from now: 1h, later than
		// the 50m left.
		{"re-ban with the jail's time", after(10*time.Minute, ban(0)), 1, time.Hour},
		{"re-ban for 5m keeps the hour", ban(5 * time.Minute), 1, time.Hour},
		{"ban after unban counts", unbanThen(ban(0)), 2, 2 * time.Hour},
		{"re-ban without end", ban(-1), 2, -1},
		{"ban after expiry counts", unbanThen(expireThen(ban(0))), 3, 4 * time.Hour},
		{"ban by failures after expiry counts", expireThen(byFailures), 4, 8 * time.Hour},
		{"re-ban of a ban by failures", ban(time.Minute), 4, 8 * time.Hour},
	} {
		b := s.do()
		now := r.clk.Now()
		gotLen := time.Duration(-1)
		if !b.Expires.IsZero() {
			gotLen = b.Expires.Sub(now)
		}
		if b.Count != s.wantCount || gotLen != s.wantLen {
			t.Errorf("%s: count %d, %v left; want count %d, %v left", s.name, b.Count, gotLen, s.wantCount, s.wantLen)
		}
	}
	bs := r.e.Bans("sshd")
	if len(bs) != 1 || bs[0].Failures != c.MaxRetry {
		t.Errorf("Bans = %+v, want the ban by failures kept, with its %d failures", bs, c.MaxRetry)
	}
	st, _ := r.e.Status("sshd")
	if st[0].TotalBanned != 4 {
		t.Errorf("TotalBanned = %d, want 4 (re-bans are not new bans)", st[0].TotalBanned)
	}
}

// TestManualBanIPv6Prefix: a single IPv6 address is banned by the jail's
// ipv6_prefix, as the jail bans its clients; a prefix is banned as given;
// IPv4 is unchanged.
func TestManualBanIPv6Prefix(t *testing.T) {
	by := func(name string, bits int) Config { c := jailCfg(name); c.IPv6Prefix = bits; return c }
	r := newRig(t, by("by64", 64), by("by128", 128), by("by56", 56))
	tests := []struct {
		name, jail, ban, want string
	}{
		{"address in a /64 jail", "by64", "2001:db8:1::5/128", "2001:db8:1::/64"},
		{"address in a /56 jail", "by56", "2001:db8:2:3::5/128", "2001:db8:2::/56"},
		{"address in a /128 jail", "by128", "2001:db8:1::5/128", "2001:db8:1::5/128"},
		{"explicit /48", "by64", "2001:db8:4::/48", "2001:db8:4::/48"},
		{"explicit /96", "by64", "2001:db8:5::/96", "2001:db8:5::/96"},
		{"ipv4 address", "by64", "192.0.2.7/32", "192.0.2.7/32"},
		{"ipv4 mapped", "by64", "::ffff:198.51.100.7/128", "198.51.100.7/32"},
		{"ipv4 prefix", "by64", "198.51.100.0/24", "198.51.100.0/24"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := r.e.Ban(ctx, tc.jail, pfx(tc.ban), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if b.Prefix != pfx(tc.want) {
				t.Errorf("Ban(%s) banned %s, want %s", tc.ban, b.Prefix, tc.want)
			}
			if !slices.Contains(r.fw.keys(), tc.jail+"|"+tc.want) {
				t.Errorf("firewall %v lacks %s|%s", r.fw.keys(), tc.jail, tc.want)
			}
			if !r.e.Blocks(pfx(tc.ban).Addr(), 0) {
				t.Errorf("%s not blocked", tc.ban)
			}
		})
	}
	// Another address of the banned /64 is the same ban: not a new one.
	b, err := r.e.Ban(ctx, "by64", pfx("2001:db8:1::9/128"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Prefix != pfx("2001:db8:1::/64") || b.Previous == nil || b.Count != 1 || !b.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("ban of a neighbour in the banned /64 = %+v, want the /64's ban kept", b)
	}
}

// TestReBanWhilePending: a manual ban decided while a ban of the same
// prefix by failures waits for its commit is a re-ban of it: one ban, the
// later expiry, one count.
func TestReBanWhilePending(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	p := pfx("203.0.113.5/32")
	r.e.mu.Lock()
	js := r.e.jails["sshd"]
	k := winKey{"sshd", p}
	byFailures := r.e.decideLocked(js, k, 3, t0, 0, "failures", false)
	manual := r.e.decideLocked(js, k, 0, t0, 5*time.Minute, "manual, already banned", true)
	r.e.mu.Unlock()
	b, err := r.e.await(ctx, manual)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := r.e.await(ctx, byFailures)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Expires.Equal(t0.Add(time.Hour)) || b.Count != 1 || b.Failures != 3 || b.Previous == nil {
		t.Errorf("manual re-ban = %+v, want the ban by failures' hour, count and failures", b)
	}
	if fb.Count != 1 || !fb.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("ban by failures = %+v", fb)
	}
	bs := r.e.Bans("sshd")
	if len(bs) != 1 || !bs[0].Expires.Equal(t0.Add(time.Hour)) || bs[0].Count != 1 {
		t.Errorf("Bans = %+v, want one ban for the hour, count 1", bs)
	}
	if got := savedBans(t, r.dir); !slices.Equal(got, []string{"sshd|203.0.113.5/32"}) {
		t.Errorf("saved bans = %v", got)
	}
}
