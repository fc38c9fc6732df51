package nftables_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"
	"github.com/moatproj/moat/internal/testkit"
)

// inKernel asks the kernel, as an operator would, whether set holds an
// element covering addr: `nft get element` exits non-zero when none does.
func inKernel(t *testing.T, ns *nftest.NetNS, set, addr string) bool {
	t.Helper()
	out, err := ns.NftMaybe(t, "get", "element", "inet", "moat", set, "{ "+addr+" }")
	if err != nil {
		if strings.Contains(out, "No such file") || strings.Contains(out, "not found") || strings.Contains(out, "does not exist") {
			return false
		}
		t.Fatalf("nft get element %s %s: %v\n%s", set, addr, err, out)
	}
	return true
}

// wantKernel checks which addresses set covers.
func wantKernel(t *testing.T, ns *nftest.NetNS, set string, covered map[string]bool) {
	t.Helper()
	for addr, want := range covered {
		if got := inKernel(t, ns, set, addr); got != want {
			t.Errorf("%s covers %s: %v, want %v", set, addr, got, want)
		}
	}
}

// TestOverlapUnbanKeepsAddress: an address banned for 30 minutes inside a
// prefix banned for 5 minutes stays dropped when the prefix is lifted, in
// both families, and so does an address banned after the prefix.
func TestOverlapUnbanKeepsAddress(t *testing.T) {
	for _, tt := range []struct {
		name, set, addr, prefix, inside, outside, later string
	}{
		{"v4", "sshd_v4", "198.51.100.77/32", "198.51.100.0/24", "198.51.100.1", "198.51.101.1", "198.51.100.200/32"},
		{"v6", "sshd_v6", "2001:db8:7::77/128", "2001:db8:7::/48", "2001:db8:7:1::1", "2001:db8:8::1", "2001:db8:7:ffff::1/128"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, ns, _ := setup(t)
			ctx := context.Background()
			now := time.Now()
			mustSync(t, b, jails, nil, now)
			addr := firewall.Ban{Jail: "sshd", Prefix: pfx(tt.addr), Expires: now.Add(30 * time.Minute)}
			wide := firewall.Ban{Jail: "sshd", Prefix: pfx(tt.prefix), Expires: now.Add(5 * time.Minute)}
			later := firewall.Ban{Jail: "sshd", Prefix: pfx(tt.later), Expires: now.Add(time.Hour)}
			for _, bn := range []firewall.Ban{addr, wide, later} {
				if err := b.Add(ctx, []firewall.Ban{bn}, now); err != nil {
					t.Fatalf("Add %s: %v", bn.Prefix, err)
				}
			}
			a, l := addr.Prefix.Addr().String(), later.Prefix.Addr().String()
			wantKernel(t, ns, tt.set, map[string]bool{a: true, l: true, tt.inside: true, tt.outside: false})
			mustMatch(t, b)
			if err := b.Delete(ctx, []firewall.Ban{wide}); err != nil {
				t.Fatalf("Delete of the prefix: %v", err)
			}
			wantKernel(t, ns, tt.set, map[string]bool{a: true, l: true, tt.inside: false, tt.outside: false})
			sameBans(t, mustList(t, b), []firewall.Ban{addr, later}, 2*time.Second)
			mustMatch(t, b)
		})
	}
}

// TestOverlapExpiryKeepsAddress: an address banned for an hour under a
// prefix banned for one second stays dropped when the prefix times out in
// the kernel by itself, with no call from moat (v4 and v6).
func TestOverlapExpiryKeepsAddress(t *testing.T) {
	b, ns, _ := setup(t)
	ctx := context.Background()
	now := time.Now()
	mustSync(t, b, jails, nil, now)
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("198.51.100.77/32"), Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("198.51.100.0/24"), Expires: now.Add(time.Second)},
		{Jail: "sshd", Prefix: pfx("2001:db8::77/128"), Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("2001:db8::/32"), Expires: now.Add(time.Second)},
	}
	if err := b.Add(ctx, bans, now); err != nil {
		t.Fatalf("Add: %v", err)
	}
	wantKernel(t, ns, "sshd_v4", map[string]bool{"198.51.100.77": true, "198.51.100.78": true})
	wantKernel(t, ns, "sshd_v6", map[string]bool{"2001:db8::77": true, "2001:db8::78": true})
	time.Sleep(time.Until(now.Add(1500 * time.Millisecond))) // the kernel times the short bans out
	wantKernel(t, ns, "sshd_v4", map[string]bool{"198.51.100.77": true, "198.51.100.78": false, "198.51.100.76": false})
	wantKernel(t, ns, "sshd_v6", map[string]bool{"2001:db8::77": true, "2001:db8::78": false})
	// The engine lifts the expired bans after the fact; nothing changes.
	if err := b.Delete(ctx, []firewall.Ban{bans[1], bans[3]}); err != nil {
		t.Fatalf("Delete of the expired prefixes: %v", err)
	}
	wantKernel(t, ns, "sshd_v4", map[string]bool{"198.51.100.77": true, "198.51.100.78": false})
	wantKernel(t, ns, "sshd_v6", map[string]bool{"2001:db8::77": true})
	mustMatch(t, b)
}

// TestOverlapJailBanUnderPrefix: a jail bans an address a manual prefix ban
// already covers, with a later expiry; lifting the prefix keeps it.
func TestOverlapJailBanUnderPrefix(t *testing.T) {
	b, ns, _ := setup(t)
	ctx := context.Background()
	now := time.Now()
	wide := firewall.Ban{Jail: "sshd", Prefix: pfx("203.0.113.16/28"), Expires: now.Add(10 * time.Minute)}
	mustSync(t, b, jails, []firewall.Ban{wide}, now)
	jailBan := firewall.Ban{Jail: "sshd", Prefix: pfx("203.0.113.20/32"), Expires: now.Add(time.Hour)}
	if err := b.Add(ctx, []firewall.Ban{jailBan}, now); err != nil {
		t.Fatalf("Add: %v", err)
	}
	// An unban of 203.0.113.17 lifts the /28 (it contains it).
	if err := b.Delete(ctx, []firewall.Ban{wide}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantKernel(t, ns, "sshd_v4", map[string]bool{"203.0.113.20": true, "203.0.113.17": false, "203.0.113.21": false})
	mustMatch(t, b)
}

// TestCheckRepairsElements: an element deleted behind moat's back is put
// back with its remaining time, one added behind its back is removed, one
// whose timeout was changed gets the right one again; each is reported once
// by kind, and the next check finds nothing.
func TestCheckRepairsElements(t *testing.T) {
	b, ns, _ := setup(t)
	now := time.Now()
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.60/32"), Expires: now.Add(20 * time.Minute)},
		{Jail: "sshd", Prefix: pfx("203.0.113.62/32"), Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("2001:db8::/64"), Expires: now.Add(time.Hour)},
	}
	mustSync(t, b, jails, bans, now)
	mustMatch(t, b)
	ns.Nft(t, "delete", "element", "inet", "moat", "sshd_v4", "{ 203.0.113.60 }")
	ns.Nft(t, "add", "element", "inet", "moat", "sshd_v4", "{ 203.0.113.61 timeout 1h }")
	ns.Nft(t, "delete", "element", "inet", "moat", "sshd_v4", "{ 203.0.113.62 }")
	ns.Nft(t, "add", "element", "inet", "moat", "sshd_v4", "{ 203.0.113.62 timeout 5m }")
	ns.Nft(t, "flush", "set", "inet", "moat", "sshd_v6")
	rep := mustRepair(t, b)
	want := map[string]int{firewall.RepairMissing: 2, firewall.RepairStray: 1, firewall.RepairTimeout: 1}
	for k, n := range want {
		if rep.Counts[k] != n {
			t.Errorf("repairs %v, want %v", rep.Counts, want)
			break
		}
	}
	if !rep.Full {
		t.Error("the check did not read the elements back after nft changed them")
	}
	for _, r := range rep.Repairs {
		if r.Jail != "sshd" || !r.First.IsValid() || r.Detail == "" {
			t.Errorf("repair %+v: want the jail, the addresses and what was wrong", r)
		}
	}
	sameBans(t, mustList(t, b), bans, 2*time.Second)
	wantKernel(t, ns, "sshd_v4", map[string]bool{"203.0.113.60": true, "203.0.113.61": false})
	mustMatch(t, b)
}

// TestCheckSkipsWhenNothingChanged: a check reads the elements back only
// when the ruleset's generation moved since moat's last write or check.
func TestCheckSkipsWhenNothingChanged(t *testing.T) {
	b, ns, _ := setup(t)
	now := time.Now()
	mustSync(t, b, jails, []firewall.Ban{{Jail: "sshd", Prefix: pfx("192.0.2.9/32"), Expires: now.Add(time.Hour)}}, now)
	check := func() firewall.CheckReport {
		t.Helper()
		rep, err := b.Check(context.Background(), time.Now())
		if err != nil || !rep.Matched() {
			t.Fatalf("Check = %+v, %v", rep, err)
		}
		return rep
	}
	check() // the first check after Sync reads back
	if rep := check(); rep.Full {
		t.Error("a check with nothing changed read the elements back")
	}
	// moat's own write keeps the generation known.
	if err := b.Add(context.Background(), []firewall.Ban{{Jail: "sshd", Prefix: pfx("192.0.2.10/32"), Expires: now.Add(time.Hour)}}, now); err != nil {
		t.Fatal(err)
	}
	if rep := check(); rep.Full {
		t.Error("a check after moat's own write read the elements back")
	}
	// Anyone else's transaction, even in another table, makes it read.
	ns.Nft(t, "add", "table", "inet", "other")
	if rep := check(); !rep.Full {
		t.Error("a check after another transaction did not read the elements back")
	}
	if rep := check(); rep.Full {
		t.Error("the check after that read the elements back again")
	}
	// Full comparisons are spaced by twenty times their cost: one that took
	// a minute is not repeated within twenty, until then a check reads
	// nothing (and the next full one catches up).
	b.SpaceFullChecks(time.Minute, time.Now())
	ns.Nft(t, "delete", "table", "inet", "other")
	if rep := check(); rep.Full || !rep.Deferred {
		t.Errorf("a check right after a costly full one: %+v, want it deferred", rep)
	}
	b.SpaceFullChecks(time.Millisecond, time.Now().Add(-time.Second))
	if rep := check(); !rep.Full {
		t.Error("the spaced full comparison did not come")
	}
}

// TestReloadNeverLapses: 50 Syncs that change other jails (relayout: rules
// replaced, sets added and removed) while a poller watches an element of a
// jail that does not change: it is never missing, not even for an instant.
// Sets holding ranges that are not prefixes (from overlapping bans) read
// back as they are and are left alone.
func TestReloadNeverLapses(t *testing.T) {
	b, ns, logs := setupLogged(t, slog.LevelInfo)
	now := time.Now()
	steady := firewall.Jail{Name: "steady", Ports: []firewall.PortRange{pr(22, 22)}}
	bans := []firewall.Ban{
		{Jail: "steady", Prefix: pfx("198.51.100.0/24"), Expires: now.Add(time.Hour)},
		{Jail: "steady", Prefix: pfx("198.51.100.77/32"), Expires: now.Add(2 * time.Hour)}, // splits the /24 into ranges
		{Jail: "steady", Prefix: pfx("2001:db8::/48"), Expires: now.Add(time.Hour)},
		{Jail: "steady", Prefix: pfx("2001:db8::1/128")},
	}
	other := func(i int) []firewall.Jail {
		js := []firewall.Jail{steady, {Name: "churn", Ports: []firewall.PortRange{pr(uint16(1000+i), uint16(1000+i))}}}
		if i%2 == 0 {
			js = append(js, firewall.Jail{Name: "extra"})
		}
		return js
	}
	mustSync(t, b, other(1), bans, now)
	logs.Reset()

	// The poller has a connection of its own, and asks as `nft get
	// element` does, thousands of times a second.
	probe, err := nftables.New(nftables.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	var stop atomic.Bool
	var polls, misses atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for _, a := range []string{"198.51.100.77", "198.51.100.1", "198.51.100.255"} {
				ok, err := probe.Covers("steady_v4", netip.MustParseAddr(a))
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				polls.Add(1)
				if err != nil || !ok {
					misses.Add(1)
					t.Errorf("element %s missing during a reload: %v", a, err)
				}
			}
		}
	}()
	for i := range 50 {
		mustSync(t, b, other(i), bans, now)
		// Let the poller look between reloads too.
		seen := polls.Load()
		testkit.WaitFor(t, 10*time.Second, "the poller to look after a reload", func() bool { return polls.Load() >= seen+21 })
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d polls across 50 reloads, %d misses", polls.Load(), misses.Load())
	if ok, err := probe.Covers("steady_v4", netip.MustParseAddr("198.51.101.1")); ok || err != nil {
		t.Errorf("the probe finds 198.51.101.1 (never banned): %v, %v", ok, err)
	}
	if polls.Load() < 1000 {
		t.Errorf("only %d polls: the probe did not watch the reloads", polls.Load())
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, "nftables synced") || !strings.Contains(line, "added=0 deleted=0") && !strings.Contains(line, "layout=relaid") {
			t.Errorf("unexpected log line: %s", line)
		}
		if strings.Contains(line, "level=WARN") {
			t.Errorf("warning during reloads: %s", line)
		}
	}
	// The steady sets were never rewritten: every Sync added nothing to them.
	if strings.Contains(logs.String(), "empties") {
		t.Errorf("a set was emptied:\n%s", logs.String())
	}
	mustMatch(t, b)
}

// TestAddAfterFlushRuleset: a ban that comes while the table is gone (`nft
// flush ruleset` a moment ago) lays the table out again at once, with every
// ban, instead of failing until the next check.
func TestAddAfterFlushRuleset(t *testing.T) {
	b, _, raw := setup(t)
	now := time.Now()
	old := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.7/32"), Expires: now.Add(time.Hour)}
	mustSync(t, b, jails, []firewall.Ban{old}, now)
	raw.FlushRuleset()
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	fresh := firewall.Ban{Jail: "web-app", Prefix: pfx("2001:db8::/64"), Expires: now.Add(time.Hour)}
	if err := b.Add(context.Background(), []firewall.Ban{fresh}, now); err != nil {
		t.Fatalf("Add after flush ruleset: %v", err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{old, fresh}, 2*time.Second)
	mustMatch(t, b)
}
