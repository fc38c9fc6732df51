package nftables_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gnft "github.com/google/nftables"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"
	"github.com/moatproj/moat/internal/netaddr"

	"github.com/moatproj/moat/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

// setup makes a namespace and a backend in it, and a raw library
// connection to the same namespace for reading back.
func setup(t testing.TB) (*nftables.Backend, *nftest.NetNS, *gnft.Conn) {
	t.Helper()
	ns := nftest.New(t)
	b, err := nftables.New(nftables.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	raw, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	return b, ns, raw
}

// setupLogged is setup with the backend logging (at level, and above) to
// the returned buffer.
func setupLogged(t testing.TB, level slog.Level) (*nftables.Backend, *nftest.NetNS, *bytes.Buffer) {
	t.Helper()
	ns := nftest.New(t)
	logs := &bytes.Buffer{}
	b, err := nftables.New(nftables.Options{NetNS: ns.FD(), Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, ns, logs
}

func mustSync(t *testing.T, b *nftables.Backend, jails []firewall.Jail, bans []firewall.Ban, now time.Time) {
	t.Helper()
	if err := b.Sync(context.Background(), jails, bans, now); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func mustList(t *testing.T, b *nftables.Backend) []firewall.Ban {
	t.Helper()
	bans, err := b.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return bans
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// sameBans compares bans ignoring order, with Expires within slack.
func sameBans(t *testing.T, got, want []firewall.Ban, slack time.Duration) {
	t.Helper()
	key := func(b firewall.Ban) string { return b.Jail + " " + b.Prefix.String() }
	w := map[string]firewall.Ban{}
	for _, b := range want {
		w[key(b)] = b
	}
	if len(got) != len(want) {
		t.Errorf("got %d bans, want %d", len(got), len(want))
	}
	for _, g := range got {
		wb, ok := w[key(g)]
		if !ok {
			t.Errorf("unexpected ban %s", key(g))
			continue
		}
		delete(w, key(g))
		if wb.Expires.IsZero() != g.Expires.IsZero() || !wb.Expires.IsZero() && absDur(g.Expires.Sub(wb.Expires)) > slack {
			t.Errorf("ban %s expires %v, want %v (±%v)", key(g), g.Expires, wb.Expires, slack)
		}
	}
	for k := range w {
		t.Errorf("missing ban %s", k)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

var jails = []firewall.Jail{
	{Name: "sshd"},
	{Name: "web-app", Ports: []firewall.PortRange{pr(443, 443), pr(80, 80), pr(8000, 8100)}},
}

func TestSyncLayout(t *testing.T) {
	b, _, raw := setup(t)
	mustSync(t, b, jails, nil, time.Now())

	tbl, err := raw.ListTableOfFamily("moat", gnft.TableFamilyINet)
	if err != nil {
		t.Fatalf("table inet moat: %v", err)
	}
	ch, err := raw.ListChain(tbl, "prerouting")
	if err != nil {
		t.Fatalf("chain prerouting: %v", err)
	}
	if *ch.Hooknum != *gnft.ChainHookPrerouting || *ch.Priority != *gnft.ChainPriorityRaw || *ch.Policy != gnft.ChainPolicyAccept || ch.Type != gnft.ChainTypeFilter {
		t.Errorf("chain = hook %v prio %v policy %v type %v, want prerouting raw accept filter", *ch.Hooknum, *ch.Priority, *ch.Policy, ch.Type)
	}
	sets, err := raw.GetSets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		names = append(names, s.Name)
		if !s.Interval || !s.HasTimeout {
			t.Errorf("set %s: interval %v timeout %v, want both", s.Name, s.Interval, s.HasTimeout)
		}
		wantType := "ipv4_addr"
		if strings.HasSuffix(s.Name, "_v6") {
			wantType = "ipv6_addr"
		}
		if s.KeyType.Name != wantType {
			t.Errorf("set %s: type %s, want %s", s.Name, s.KeyType.Name, wantType)
		}
	}
	slices.Sort(names)
	want := []string{"sshd_v4", "sshd_v6", nftables.SetName("web-app", 4), nftables.SetName("web-app", 6)}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("sets = %v, want %v", names, want)
	}
	rules, err := raw.GetRules(tbl, ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 4 {
		t.Errorf("rules = %d, want 4 (one per jail and family)", len(rules))
	}
	if rep, err := b.Check(context.Background(), time.Now()); !rep.Matched() || err != nil {
		t.Errorf("Check = %+v, %v, want matched", rep, err)
	}
}

// TestSyncRulesetGolden compares the ruleset as nft prints it with
// testdata/ruleset.golden (bans without end, so the text is stable).
func TestSyncRulesetGolden(t *testing.T) {
	b, ns, _ := setup(t)
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("192.0.2.7/32")},
		{Jail: "sshd", Prefix: pfx("198.51.100.0/24")},
		{Jail: "sshd", Prefix: pfx("2001:db8:1::/64")},
		{Jail: "web-app", Prefix: pfx("203.0.113.9/32")},
	}
	mustSync(t, b, jails, bans, time.Now())
	got := ns.Nft(t, "list", "ruleset")
	got = regexp.MustCompile(`__[0-9a-f]{12}_`).ReplaceAllString(got, "__HASH_")
	path := filepath.Join("testdata", "ruleset.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("ruleset differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestSyncTimeoutsAndList(t *testing.T) {
	b, _, raw := setup(t)
	now := time.Now()
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("192.0.2.2/32"), Expires: now.Add(10 * time.Minute)},
		{Jail: "sshd", Prefix: pfx("192.0.2.3/32")}, // no end
		{Jail: "sshd", Prefix: pfx("2001:db8::/64"), Expires: now.Add(24 * time.Hour)},
		{Jail: "web-app", Prefix: pfx("203.0.113.0/24"), Expires: now.Add(time.Minute)},
	}
	expired := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.9/32"), Expires: now.Add(-time.Second)}
	mustSync(t, b, jails, append(slices.Clone(bans), expired), now)
	sameBans(t, mustList(t, b), bans, 2*time.Second)

	// The kernel holds the full timeout, not just an expiry computed by moat.
	tbl := &gnft.Table{Name: "moat", Family: gnft.TableFamilyINet}
	els, err := raw.GetSetElements(&gnft.Set{Table: tbl, Name: "sshd_v4"})
	if err != nil {
		t.Fatal(err)
	}
	timeouts := map[string]time.Duration{}
	for _, e := range els {
		if !e.IntervalEnd {
			a, _ := netip.AddrFromSlice(e.Key)
			timeouts[a.String()] = e.Timeout
		}
	}
	for addr, want := range map[string]time.Duration{"192.0.2.1": time.Hour, "192.0.2.2": 10 * time.Minute, "192.0.2.3": 0} {
		if got := timeouts[addr]; absDur(got-want) > 2*time.Second {
			t.Errorf("element %s timeout %v, want about %v", addr, got, want)
		}
	}
}

func TestElementExpiresInKernel(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	short := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.5/32"), Expires: now.Add(time.Second)}
	long := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.6/32"), Expires: now.Add(time.Hour)}
	mustSync(t, b, jails, nil, now)
	if err := b.Add(context.Background(), []firewall.Ban{short, long}, now); err != nil {
		t.Fatalf("Add: %v", err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{short, long}, 2*time.Second)
	testkit.WaitFor(t, 5*time.Second, "the ban listed", func() bool { return len(mustList(t, b)) == 1 })
	sameBans(t, mustList(t, b), []firewall.Ban{long}, 2*time.Second)
}

func TestDeleteExpiredDoesNotFailBatch(t *testing.T) {
	b, _, logs := setupLogged(t, slog.LevelDebug)
	now := time.Now()
	short := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.5/32"), Expires: now.Add(time.Second)}
	other := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.6/32"), Expires: now.Add(time.Hour)}
	v6 := firewall.Ban{Jail: "sshd", Prefix: pfx("2001:db8::/64"), Expires: now.Add(time.Hour)}
	mustSync(t, b, jails, []firewall.Ban{short, other, v6}, now)
	// Right after the kernel's expiry, before its garbage collection: a
	// delete of this element alone would fail with ENOENT.
	time.Sleep(time.Until(short.Expires.Add(100 * time.Millisecond)))
	never := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.1/32")}
	if err := b.Delete(context.Background(), []firewall.Ban{short, other, never, v6}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := mustList(t, b); len(got) != 0 {
		t.Errorf("after Delete: %v, want none", got)
	}
	// The element that timed out was not asked for: no batch failed.
	if strings.Contains(logs.String(), "failed") {
		t.Errorf("a write failed; logs:\n%s", logs.String())
	}
}

func TestPrefixesRoundTrip(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	var bans []firewall.Ban
	for i, p := range []string{
		"192.0.2.0/24", "198.51.100.7/32", "255.255.255.255/32", "0.0.0.0/32",
		"2001:db8:1:2::/64", "2001:db8::1/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128",
	} {
		exp := now.Add(time.Duration(i+1) * time.Hour)
		if i%2 == 1 {
			exp = time.Time{}
		}
		bans = append(bans, firewall.Ban{Jail: "sshd", Prefix: pfx(p), Expires: exp})
	}
	// The end-of-space elements in a second jail, next to other prefixes.
	bans = append(bans,
		firewall.Ban{Jail: "web-app", Prefix: pfx("255.255.255.0/24"), Expires: now.Add(time.Hour)},
		firewall.Ban{Jail: "web-app", Prefix: pfx("ffff:ffff:ffff:ffff::/64")},
	)
	mustSync(t, b, jails, bans, now)
	sameBans(t, mustList(t, b), bans, 2*time.Second)

	// Add and Delete handle them too.
	if err := b.Delete(context.Background(), bans[:4]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	sameBans(t, mustList(t, b), bans[4:], 2*time.Second)
	if err := b.Add(context.Background(), bans[:4], now); err != nil {
		t.Fatalf("Add: %v", err)
	}
	sameBans(t, mustList(t, b), bans, 2*time.Second)
}

func TestResync(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	a := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}
	bb := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.2/32"), Expires: now.Add(time.Hour)}
	c := firewall.Ban{Jail: "web-app", Prefix: pfx("2001:db8::/64"), Expires: now.Add(time.Hour)}
	mustSync(t, b, jails, []firewall.Ban{a, bb}, now)

	// Extra a removed, missing c added, bb's timeout fixed (1h → 3h), and a
	// ban without end replaced by one with end and back.
	bb3 := bb
	bb3.Expires = now.Add(3 * time.Hour)
	d := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.0/24")}
	mustSync(t, b, jails, []firewall.Ban{bb3, c, d}, now)
	sameBans(t, mustList(t, b), []firewall.Ban{bb3, c, d}, 2*time.Second)

	d2 := d
	d2.Expires = now.Add(time.Hour)
	bb0 := bb
	bb0.Expires = time.Time{}
	mustSync(t, b, jails, []firewall.Ban{bb0, c, d2}, now)
	sameBans(t, mustList(t, b), []firewall.Ban{bb0, c, d2}, 2*time.Second)

	// A changed jail list rebuilds the layout and keeps the bans given.
	newJails := []firewall.Jail{{Name: "sshd", Ports: []firewall.PortRange{pr(22, 22)}}, {Name: "postfix"}}
	e := firewall.Ban{Jail: "postfix", Prefix: pfx("203.0.113.5/32"), Expires: now.Add(time.Hour)}
	mustSync(t, b, newJails, []firewall.Ban{bb0, e, c}, now) // c's jail is gone
	sameBans(t, mustList(t, b), []firewall.Ban{bb0, e}, 2*time.Second)
	if rep, err := b.Check(context.Background(), time.Now()); !rep.Matched() || err != nil {
		t.Errorf("Check = %+v, %v, want matched", rep, err)
	}
}

func TestCheckRepairsLayout(t *testing.T) {
	b, _, raw := setup(t)
	ctx := context.Background()
	if _, err := b.Check(ctx, time.Now()); !errors.Is(err, firewall.ErrNotSynced) {
		t.Errorf("Check before any Sync: %v, want ErrNotSynced", err)
	}
	now := time.Now()
	bans := []firewall.Ban{{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}}
	mustSync(t, b, jails, bans, now)
	mustMatch(t, b)

	raw.FlushRuleset() // what `nft flush ruleset` does
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	rep := mustRepair(t, b)
	if rep.Counts[firewall.RepairLayout] != 1 || len(rep.Counts) != 1 {
		t.Errorf("Check after flush ruleset repaired %v, want one layout repair", rep.Counts)
	}
	mustMatch(t, b)
	sameBans(t, mustList(t, b), bans, 2*time.Second)

	// A deleted rule is noticed and put back too.
	tbl := &gnft.Table{Name: "moat", Family: gnft.TableFamilyINet}
	rules, err := raw.GetRules(tbl, &gnft.Chain{Name: "prerouting", Table: tbl})
	if err != nil || len(rules) == 0 {
		t.Fatalf("rules: %v, %v", rules, err)
	}
	if err := raw.DelRule(rules[0]); err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	if rep := mustRepair(t, b); rep.Counts[firewall.RepairLayout] != 1 {
		t.Errorf("Check after a rule was deleted repaired %v, want a layout repair", rep.Counts)
	}
	mustMatch(t, b)
	sameBans(t, mustList(t, b), bans, 2*time.Second)
}

// mustMatch checks the kernel holds exactly what the backend was told.
func mustMatch(t *testing.T, b *nftables.Backend) {
	t.Helper()
	rep, err := b.Check(context.Background(), time.Now())
	if err != nil || !rep.Matched() {
		t.Fatalf("Check = %+v, %v, want matched", rep, err)
	}
}

// mustRepair runs a check that must find and repair something.
func mustRepair(t *testing.T, b *nftables.Backend) firewall.CheckReport {
	t.Helper()
	rep, err := b.Check(context.Background(), time.Now())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if rep.Matched() {
		t.Fatalf("Check found nothing to repair, want a repair")
	}
	return rep
}

func TestOtherTablesUntouched(t *testing.T) {
	b, _, raw := setup(t)
	other := raw.AddTable(&gnft.Table{Name: "docker", Family: gnft.TableFamilyINet})
	raw.AddChain(&gnft.Chain{Name: "x", Table: other})
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b, jails, nil, time.Now())
	mustSync(t, b, jails[:1], nil, time.Now()) // rebuild
	if _, err := raw.ListChain(other, "x"); err != nil {
		t.Errorf("other table's chain gone: %v", err)
	}
}

func TestAddUnknownJail(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	mustSync(t, b, jails, nil, now)
	ok := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}
	err := b.Add(context.Background(), []firewall.Ban{{Jail: "nope", Prefix: pfx("192.0.2.2/32")}, ok}, now)
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Add = %v, want an error naming jail nope", err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{ok}, 2*time.Second)
}

func TestAddUpdatesTimeout(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	mustSync(t, b, jails, nil, now)
	ban := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Minute)}
	if err := b.Add(context.Background(), []firewall.Ban{ban}, now); err != nil {
		t.Fatal(err)
	}
	ban.Expires = now.Add(time.Hour)
	if err := b.Add(context.Background(), []firewall.Ban{ban}, now); err != nil {
		t.Fatal(err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{ban}, 2*time.Second)
}

func TestSyncLarge(t *testing.T) {
	b, _, _ := setup(t)
	now := time.Now()
	var bans []firewall.Ban
	for i := range 25000 {
		v4 := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		var a16 [16]byte
		copy(a16[:], netip.MustParseAddr("2001:db8::").AsSlice())
		binary.BigEndian.PutUint32(a16[4:], uint32(i)) // one /64 each
		bans = append(bans,
			firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(v4, 32), Expires: now.Add(time.Hour)},
			firewall.Ban{Jail: "web-app", Prefix: netip.PrefixFrom(netip.AddrFrom16(a16), 64), Expires: now.Add(2 * time.Hour)},
		)
	}
	start := time.Now()
	mustSync(t, b, jails, bans, now)
	t.Logf("sync of %d bans (rebuild): %v", len(bans), time.Since(start))
	if got, want := covered(mustList(t, b)), covered(bans); got != want {
		t.Fatalf("List covers %v addresses, want %v", got, want)
	}
	// Change a tenth: drop 2500, add 2500.
	next := append(slices.Clone(bans[2500:]), firewall.Ban{})
	next = next[:len(next)-1]
	for i := range 2500 {
		next = append(next, firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 200 + byte(i>>8), byte(i)}), 32), Expires: now.Add(time.Hour)})
	}
	start = time.Now()
	mustSync(t, b, jails, next, now)
	t.Logf("sync of %d bans (diff): %v", len(next), time.Since(start))
	sameCoverage(t, mustList(t, b), next)
}

// sameCoverage checks that got and want cover the same addresses in each
// jail, however they are split into prefixes.
func sameCoverage(t *testing.T, got, want []firewall.Ban) {
	t.Helper()
	runs := func(bans []firewall.Ban) map[string][][2]netip.Addr {
		out := map[string][][2]netip.Addr{}
		for _, b := range bans {
			p := b.Prefix.Masked()
			out[b.Jail] = append(out[b.Jail], [2]netip.Addr{p.Addr(), netaddr.LastAddr(p)})
		}
		for j, rs := range out {
			slices.SortFunc(rs, func(x, y [2]netip.Addr) int { return x[0].Compare(y[0]) })
			merged := rs[:1]
			for _, r := range rs[1:] {
				last := &merged[len(merged)-1]
				if next := last[1].Next(); next.IsValid() && !next.Less(r[0]) {
					if last[1].Less(r[1]) {
						last[1] = r[1]
					}
					continue
				}
				merged = append(merged, r)
			}
			out[j] = merged
		}
		return out
	}
	g, w := runs(got), runs(want)
	for j := range w {
		if !slices.Equal(g[j], w[j]) {
			t.Errorf("jail %s covers %d runs %v..., want %d runs %v...", j, len(g[j]), head(g[j]), len(w[j]), head(w[j]))
		}
	}
	for j := range g {
		if _, ok := w[j]; !ok {
			t.Errorf("jail %s covers %v, want nothing", j, head(g[j]))
		}
	}
}

func head[T any](s []T) []T { return s[:min(len(s), 3)] }

func Example_setName() {
	fmt.Println(nftables.SetName("sshd", 4), nftables.SetName("sshd", 6))
	// Output: sshd_v4 sshd_v6
}

func pr(first, last uint16) firewall.PortRange { return firewall.PortRange{First: first, Last: last} }

func TestAddOverlappingPrefixes(t *testing.T) {
	b, _, _ := setup(t)
	ctx := context.Background()
	now := time.Now()
	h1 := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.1/32"), Expires: now.Add(time.Hour)}
	h2 := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.2/32"), Expires: now.Add(time.Hour)}
	out := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}
	mustSync(t, b, jails, []firewall.Ban{h1, h2, out}, now)

	wide := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.0/24"), Expires: now.Add(2 * time.Hour)}
	if err := b.Add(ctx, []firewall.Ban{wide}, now); err != nil {
		t.Fatalf("Add of a /24 over two /32s: %v", err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{wide, out}, 2*time.Second)

	inside := firewall.Ban{Jail: "sshd", Prefix: pfx("198.51.100.9/32"), Expires: now.Add(time.Hour)}
	if err := b.Add(ctx, []firewall.Ban{inside}, now); err != nil {
		t.Fatalf("Add of a /32 inside a banned /24: %v", err)
	}
	sameBans(t, mustList(t, b), []firewall.Ban{wide, out}, 2*time.Second)

	// Sync drops covered prefixes rather than failing.
	mustSync(t, b, jails, []firewall.Ban{h1, wide, out}, now)
	sameBans(t, mustList(t, b), []firewall.Ban{wide, out}, 2*time.Second)
}

// TestSyncModes checks from the summary log line what each Sync did: a
// repeated Sync changes nothing; a changed jail list keeps the table and
// the sets of kept jails; a flushed ruleset rebuilds.
func TestSyncModes(t *testing.T) {
	b, ns, logs := setupLogged(t, slog.LevelInfo)
	raw, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	keep := firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}
	gone := firewall.Ban{Jail: "web-app", Prefix: pfx("192.0.2.2/32"), Expires: now.Add(time.Hour)}
	newJails := []firewall.Jail{jails[0], {Name: "postfix", Ports: []firewall.PortRange{pr(25, 25)}}}
	fresh := firewall.Ban{Jail: "postfix", Prefix: pfx("2001:db8::/64")}

	steps := []struct {
		name  string
		jails []firewall.Jail
		bans  []firewall.Ban
		flush bool
		want  string
	}{
		{"first", jails, []firewall.Ban{keep, gone}, false, "layout=rebuilt added=2 deleted=0"},
		{"again", jails, []firewall.Ban{keep, gone}, false, "layout=kept added=0 deleted=0"},
		{"jails changed", newJails, []firewall.Ban{keep, fresh}, false, "layout=relaid added=1 deleted=0"},
		{"after flush ruleset", newJails, []firewall.Ban{keep, fresh}, true, "layout=rebuilt added=2 deleted=0"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.flush {
				raw.FlushRuleset()
				if err := raw.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			logs.Reset()
			mustSync(t, b, st.jails, st.bans, now)
			if !strings.Contains(logs.String(), st.want) {
				t.Errorf("log = %q, want it to contain %q", logs.String(), st.want)
			}
			sameBans(t, mustList(t, b), st.bans, 2*time.Second)
			if rep, err := b.Check(context.Background(), time.Now()); !rep.Matched() || err != nil {
				t.Errorf("Check = %+v, %v, want matched", rep, err)
			}
		})
	}
	// The sets of a removed jail are gone.
	sets, err := raw.GetSets(&gnft.Table{Name: "moat", Family: gnft.TableFamilyINet})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, "web_app") {
			t.Errorf("set %s of a removed jail still there", s.Name)
		}
	}
}

// TestListWithoutSync reads bans written by an earlier process: the jails
// come from the rules' comments.
func TestListWithoutSync(t *testing.T) {
	b, ns, _ := setup(t)
	now := time.Now()
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)},
		{Jail: "web-app", Prefix: pfx("2001:db8::/64")},
	}
	mustSync(t, b, jails, bans, now)
	b2, err := nftables.New(nftables.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	sameBans(t, mustList(t, b2), bans, 2*time.Second)
	if _, err := b2.Check(context.Background(), time.Now()); !errors.Is(err, firewall.ErrNotSynced) {
		t.Errorf("Check of a backend that never synced: %v, want ErrNotSynced", err)
	}
}

// TestSyncReplacesForeignSet: a set with a wanted name but another type
// (made by someone else) makes the relayout fail; Sync rebuilds instead.
func TestSyncReplacesForeignSet(t *testing.T) {
	b, ns, logs := setupLogged(t, slog.LevelInfo)
	raw, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mustSync(t, b, jails[:1], nil, now)
	tbl := &gnft.Table{Name: "moat", Family: gnft.TableFamilyINet}
	if err := raw.AddSet(&gnft.Set{Table: tbl, Name: nftables.SetName("web-app", 4), KeyType: gnft.TypeInetService}, nil); err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	bans := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("192.0.2.1/32"), Expires: now.Add(time.Hour)},
		{Jail: "web-app", Prefix: pfx("192.0.2.2/32"), Expires: now.Add(time.Hour)},
	}
	mustSync(t, b, jails, bans, now)
	if !strings.Contains(logs.String(), "layout=rebuilt") {
		t.Errorf("want a rebuild after the relayout failed; logs:\n%s", logs.String())
	}
	sameBans(t, mustList(t, b), bans, 2*time.Second)
	if rep, err := b.Check(context.Background(), time.Now()); !rep.Matched() || err != nil {
		t.Errorf("Check = %+v, %v, want matched", rep, err)
	}
}

// covered counts the addresses bans cover, per family (IPv6 in /64s):
// what the kernel drops, however it splits it into elements.
func covered(bans []firewall.Ban) [2]float64 {
	var n [2]float64
	for _, b := range bans {
		if b.Prefix.Addr().Is4() {
			n[0] += math.Exp2(float64(32 - b.Prefix.Bits()))
		} else {
			n[1] += math.Exp2(float64(64 - b.Prefix.Bits()))
		}
	}
	return n
}
