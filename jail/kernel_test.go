package jail_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"
	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
)

// TestKernelMatchesModel drives the real engine over the real nftables
// backend, in a namespace of its own, with random sequences of bans,
// unbans, expiries, reloads and restarts over overlapping prefixes, in
// three jails (one with ports, one banning IPv6 by /64). After every step
// the kernel's verdict for the edges and middles of every prefix involved
// — read back from the sets, for a sample with `nft get element`, and for a
// smaller sample with a real packet over a veth — must equal the model's.
// Any mismatch prints the sequence that led to it.
func TestKernelMatchesModel(t *testing.T) {
	nftest.RequireRoot(t)
	seeds, ops := 20, 500
	if testing.Short() {
		seeds, ops = 2, 200
	}
	// The seeds run five at a time, each in namespaces of its own: most of
	// a step is waiting (for fsync, for the kernel's garbage collection,
	// for time to pass).
	var mu sync.Mutex
	var wg sync.WaitGroup
	total := 0
	sem := make(chan struct{}, 5)
	for seed := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
				n := runKernelModel(t, uint64(seed), ops)
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	t.Logf("%d operations in all", total)
	if !t.Failed() && total < seeds*ops {
		t.Errorf("%d operations, want %d", total, seeds*ops)
	}
}

var kmJails = []jail.Config{
	{Name: "all", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour},
	{Name: "ssh", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour,
		Ports: []firewall.PortRange{{First: 22, Last: 22}, {First: 2222, Last: 2222}}},
	{Name: "web", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour, IPv6Prefix: 64,
		Ports: []firewall.PortRange{{First: 80, Last: 80}, {First: 8080, Last: 8090}}},
}

// kmPorts are the host ports the packet sample dials: covered by all and
// ssh, by all and web, by all only.
var kmPorts = []uint16{22, 8080, 9999}

type kmBan struct {
	p   netip.Prefix
	exp time.Time // zero: never
}

// kmModel is what must be dropped: per jail, the active bans.
type kmModel map[string]map[netip.Prefix]time.Time

// verdict says whether jail drops a, until when (zero: never), and whether
// the answer is ambiguous because a ban covering a ends within margin of
// now (the kernel and the model may see it a moment apart).
func (m kmModel) verdict(jailName string, a netip.Addr, now time.Time, margin time.Duration) (bool, time.Time, bool) {
	covered, ambiguous := false, false
	var until time.Time
	for p, exp := range m[jailName] {
		if !p.Contains(a) {
			continue
		}
		if !exp.IsZero() && absDur(exp.Sub(now)) < margin {
			ambiguous = true
		}
		if exp.IsZero() || exp.After(now) {
			if !covered || !until.IsZero() && (exp.IsZero() || exp.After(until)) {
				until = exp
			}
			covered = true
		}
	}
	return covered, until, ambiguous
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// kmRig is the engine, its backend and a second backend that only reads.
type kmRig struct {
	t      *testing.T
	ns     *nftest.NetNS
	dir    string
	cfgs   []jail.Config
	fw     *nftables.Backend
	e      *jail.Engine
	stop   context.CancelFunc
	done   chan error
	reader *nftables.Backend
}

func (r *kmRig) start() {
	t := r.t
	fw, err := nftables.New(nftables.Options{NetNS: r.ns.FD(), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	e, err := jail.Open(jail.Options{StateDir: r.dir, Firewall: fw, CheckEvery: 100 * time.Millisecond,
		SelfAddrs: func() []netip.Addr { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Configure(context.Background(), r.cfgs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.fw, r.e, r.stop, r.done = fw, e, cancel, make(chan error, 1)
	go func() { r.done <- e.Run(ctx) }()
}

func (r *kmRig) halt() {
	r.stop()
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
	r.e.Close()
	r.fw.Close()
}

func runKernelModel(t *testing.T, seed uint64, ops int) int {
	rnd := rand.New(rand.NewPCG(seed, 1911))
	host := nftest.New(t)
	client := nftest.New(t)
	nftest.Veth(t, host, client, []string{"192.0.2.1/24", "2001:db8:ffff::1/64"}, []string{"192.0.2.2/24", "2001:db8:ffff::2/64"})
	for _, route := range [][]string{
		{"route", "add", "198.51.100.0/24", "via", "192.0.2.2"},
		{"route", "add", "203.0.113.0/24", "via", "192.0.2.2"},
		{"-6", "route", "add", "2001:db8::/32", "via", "2001:db8:ffff::2"},
	} {
		host.IP(t, route...)
	}
	for _, p := range kmPorts {
		host.ServeTCP(t, fmt.Sprintf("[::]:%d", p))
	}
	r := &kmRig{t: t, ns: host, dir: t.TempDir(), cfgs: kmJails}
	r.start()
	defer func() { r.halt() }()
	reader, err := nftables.New(nftables.Options{NetNS: host.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	model := kmModel{}
	// lingering holds bans lifted in their last moments: the kernel may
	// keep their elements until they time out by themselves (a delete of
	// an element within the expiry skew of its end is not sent again after
	// the kernel refused one in the batch), so until then the kernel's
	// answer for them is ambiguous.
	lingering := kmModel{}
	for _, c := range kmJails {
		model[c.Name] = map[netip.Prefix]time.Time{}
		lingering[c.Name] = map[netip.Prefix]time.Time{}
	}
	lingers := func(jailName string, a netip.Addr, now time.Time, margin time.Duration) bool {
		_, _, amb := lingering.verdict(jailName, a, now, margin)
		return amb
	}
	var seq []string
	involved := map[netip.Prefix]bool{}
	var lastKB []firewall.Ban // the kernel's bans as the last check read them
	fail := func(format string, args ...any) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "seed %d: %s\nsequence:\n  %s\n", seed, fmt.Sprintf(format, args...), strings.Join(seq, "\n  "))
		fmt.Fprintf(&b, "read back at the check (%s):\n", time.Now().Format("15:04:05.000"))
		for _, kb := range lastKB {
			fmt.Fprintf(&b, "  %s %s until %s\n", kb.Jail, kb.Prefix, kb.Expires.Format("15:04:05.000"))
		}
		for name, bans := range model {
			for p, exp := range bans {
				fmt.Fprintf(&b, "  model %s %s until %s\n", name, p, exp.Format("15:04:05.000"))
			}
		}
		out, _ := host.NftMaybe(t, "list", "table", "inet", "moat")
		fmt.Fprintf(&b, "the table now:\n%s", out)
		t.Fatal(b.String())
	}
	ctx := context.Background()
	checked, skipped, gets, packets := 0, 0, 0, 0

	for step := range ops {
		switch op := rnd.IntN(100); {
		case op < 45: // ban
			jc := kmJails[rnd.IntN(len(kmJails))]
			p := kmPrefix(rnd)
			d := []time.Duration{300 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 30 * time.Minute, -1}[rnd.IntN(6)]
			seq = append(seq, fmt.Sprintf("%s ban %s --jail %s --for %v", time.Now().Format("15:04:05.000"), p, jc.Name, d))
			before := time.Now()
			b, err := r.e.Ban(ctx, jc.Name, p, d)
			wide := p.Addr().Is4() && p.Bits() < 16 || p.Addr().Is6() && p.Bits() < 32
			var refused *jail.RefusedError
			if wide {
				if !errors.As(err, &refused) {
					fail("ban of %s: %v, want refused as too wide", p, err)
				}
				continue
			}
			if err != nil {
				fail("ban of %s in %s: %v", p, jc.Name, err)
			}
			want := p
			if p.Addr().Is6() && p.Bits() == 128 && jc.IPv6Prefix == 64 {
				want = netaddr.HostPrefix(p.Addr(), 64)
			}
			if b.Prefix != want {
				fail("ban of %s in %s banned %s, want %s", p, jc.Name, b.Prefix, want)
			}
			involved[want] = true
			// The later expiry wins: the one asked for or the active one's.
			if err := kmKeptLater(model[jc.Name], want, d, before, time.Now(), b.Expires); err != nil {
				fail("ban of %s in %s for %v: %v", p, jc.Name, d, err)
			}
			model[jc.Name][want] = b.Expires
		case op < 70: // unban
			var p netip.Prefix
			if rnd.IntN(2) == 0 && len(involved) > 0 {
				p = kmPick(rnd, involved)
				if rnd.IntN(2) == 0 {
					p = netip.PrefixFrom(kmPoint(rnd, p), p.Addr().BitLen())
				}
			} else {
				p = kmPrefix(rnd)
			}
			jn := ""
			if rnd.IntN(2) == 0 {
				jn = kmJails[rnd.IntN(len(kmJails))].Name
			}
			seq = append(seq, fmt.Sprintf("%s unban %s --jail %q", time.Now().Format("15:04:05.000"), p, jn))
			lifted, err := r.e.Unban(ctx, p, jn)
			if err != nil && !errors.Is(err, jail.ErrNotBanned) {
				fail("unban %s: %v", p, err)
			}
			liftedAt := time.Now()
			for _, b := range lifted {
				delete(model[b.Jail], b.Prefix)
				if !b.Expires.IsZero() && b.Expires.Sub(liftedAt) < 250*time.Millisecond {
					lingering[b.Jail][b.Prefix] = b.Expires
				}
			}
			// Every active ban matching it must have been lifted.
			now := time.Now()
			for name, bans := range model {
				if jn != "" && name != jn {
					continue
				}
				for bp, exp := range bans {
					if (bp == p || p.IsSingleIP() && bp.Contains(p.Addr())) && (exp.IsZero() || exp.After(now.Add(200*time.Millisecond))) {
						fail("unban %s left %s in %s", p, bp, name)
					}
				}
			}
		case op < 88: // time passes (the model's expiries are real time)
			d := time.Duration(20+rnd.IntN(380)) * time.Millisecond
			seq = append(seq, fmt.Sprintf("%s sleep %v", time.Now().Format("15:04:05.000"), d))
			time.Sleep(d)
		case op < 97: // reload, sometimes with web's ports changed
			cfgs := append([]jail.Config(nil), kmJails...)
			if rnd.IntN(2) == 0 {
				cfgs[2].Ports = append(append([]firewall.PortRange(nil), cfgs[2].Ports...), firewall.PortRange{First: 443, Last: 443})
			}
			seq = append(seq, fmt.Sprintf("%s reload (web ports %v)", time.Now().Format("15:04:05.000"), cfgs[2].Ports))
			r.cfgs = cfgs
			if err := r.e.Configure(ctx, cfgs); err != nil {
				fail("reload: %v", err)
			}
		default: // restart
			seq = append(seq, fmt.Sprintf("%s restart", time.Now().Format("15:04:05.000")))
			r.halt()
			r.start()
		}

		// The kernel's verdict against the model's.
		now := time.Now()
		kb, err := reader.List(ctx)
		if err != nil {
			fail("List: %v", err)
		}
		lastKB = kb
		after := time.Now()
		for _, jc := range kmJails {
			for p := range involved {
				for _, a := range kmEdges(p) {
					margin := 250*time.Millisecond + after.Sub(now)
					want, until, amb := model.verdict(jc.Name, a, now, margin)
					if amb || lingers(jc.Name, a, now, margin) {
						skipped++
						continue
					}
					got, gotUntil := kernelVerdict(kb, jc.Name, a)
					checked++
					if got != want {
						fail("step %d: jail %s, %s: kernel drops it %v, model %v", step, jc.Name, a, got, want)
					}
					if got && (gotUntil.IsZero() != until.IsZero() || !until.IsZero() && absDur(gotUntil.Sub(until)) > 1500*time.Millisecond) {
						fail("step %d: jail %s, %s: kernel drops it until %v, model until %v", step, jc.Name, a, gotUntil, until)
					}
				}
			}
		}
		// A sample asked as an operator would.
		if step%10 == 0 && len(involved) > 0 {
			jc := kmJails[rnd.IntN(len(kmJails))]
			a := kmPoint(rnd, kmPick(rnd, involved))
			now := time.Now()
			out, err := host.NftMaybe(t, "get", "element", "inet", "moat", nftables.SetName(jc.Name, famOf(a)), "{ "+a.String()+" }")
			want, _, amb := model.verdict(jc.Name, a, now, 300*time.Millisecond)
			if !amb && !lingers(jc.Name, a, now, 300*time.Millisecond) && !strings.Contains(out, "Interrupted") {
				gets++
				if got := err == nil; got != want {
					fail("step %d: nft get element %s in %s: found %v (%s), model %v", step, a, jc.Name, got, strings.TrimSpace(out), want)
				}
			}
		}
		// A sample with a real packet from a documentation address.
		if step%100 == 50 && len(involved) > 0 {
			a := kmPoint(rnd, kmPick(rnd, involved))
			port := kmPorts[rnd.IntN(len(kmPorts))]
			sent := time.Now()
			if dropped, ok := packetVerdict(t, host, client, a, port, model); ok {
				packets++
				// The model's verdict when the first SYN left; a ban ending
				// while the dials went on is ambiguous.
				margin := time.Since(sent) + 250*time.Millisecond
				want := false
				amb := false
				for _, jc := range kmJails {
					if len(jc.Ports) > 0 && !kmCovers(jc.Ports, port) {
						continue
					}
					w, _, am := model.verdict(jc.Name, a, sent, margin)
					want, amb = want || w, amb || am || lingers(jc.Name, a, sent, margin)
				}
				if !amb && dropped != want {
					out, _ := host.NftMaybe(t, "list", "chain", "inet", "moat", "prerouting")
					again, _ := packetVerdict(t, host, client, a, port, model)
					t.Logf("chain:\n%s\nagain: dropped %v", out, again)
					fail("step %d: a packet from %s to port %d dropped %v, model %v", step, a, port, dropped, want)
				}
			}
		}
	}
	t.Logf("seed %d: %d operations, %d verdicts compared (%d near an expiry left out), %d nft get element, %d packets", seed, ops, checked, skipped, gets, packets)
	if checked == 0 {
		t.Error("no verdict was compared")
	}
	return ops
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func kmCovers(rs []firewall.PortRange, port uint16) bool {
	for _, r := range rs {
		if r.First <= port && port <= r.Last {
			return true
		}
	}
	return false
}

// kernelVerdict says whether the bans read back from the kernel for
// jailName cover a, and until when.
func kernelVerdict(kb []firewall.Ban, jailName string, a netip.Addr) (bool, time.Time) {
	for _, b := range kb {
		if b.Jail == jailName && b.Prefix.Contains(a) {
			return true, b.Expires
		}
	}
	return false, time.Time{}
}

// kmPrefix picks a prefix over a few overlapping regions: IPv4 from /8
// (refused) to /32, IPv6 from /16 (refused) to /128.
func kmPrefix(rnd *rand.Rand) netip.Prefix {
	if rnd.IntN(3) > 0 {
		bases := []string{"198.51.100.0", "198.51.100.7", "198.51.100.16", "198.51.100.20", "198.51.100.77", "198.51.100.128", "198.51.100.255", "203.0.113.16", "203.0.113.17", "203.0.113.20"}
		a := netip.MustParseAddr(bases[rnd.IntN(len(bases))])
		bits := []int{8, 12, 16, 24, 25, 26, 28, 30, 31, 32, 32, 32, 32}[rnd.IntN(13)]
		p, _ := a.Prefix(bits)
		return p
	}
	bases := []string{"2001:db8:0:1::", "2001:db8:0:1::7", "2001:db8:0:1::ff", "2001:db8:0:2::1", "2001:db8:1::77"}
	a := netip.MustParseAddr(bases[rnd.IntN(len(bases))])
	bits := []int{16, 24, 32, 48, 56, 64, 96, 120, 124, 127, 128, 128, 128}[rnd.IntN(13)]
	p, _ := a.Prefix(bits)
	return p
}

func kmPick(rnd *rand.Rand, set map[netip.Prefix]bool) netip.Prefix {
	i := rnd.IntN(len(set))
	for p := range set {
		if i == 0 {
			return p
		}
		i--
	}
	panic("unreachable")
}

// kmEdges are the points checked for a prefix: its first, middle and last
// address, and the addresses just outside it.
func kmEdges(p netip.Prefix) []netip.Addr {
	first, last := p.Addr(), netaddr.LastAddr(p)
	out := []netip.Addr{first, last, kmMiddle(p)}
	if b := first.Prev(); b.IsValid() {
		out = append(out, b)
	}
	if a := last.Next(); a.IsValid() {
		out = append(out, a)
	}
	return out
}

func kmMiddle(p netip.Prefix) netip.Addr {
	if p.IsSingleIP() {
		return p.Addr()
	}
	// The first address of the upper half.
	return netaddr.LastAddr(netip.PrefixFrom(p.Addr(), p.Bits()+1)).Next()
}

// kmKeptLater checks the expiry of a ban of p for d, made between before
// and after, against the active ban of p in bans: the later of the two
// wins (no end beats any end). Within 200 ms either is accepted.
func kmKeptLater(bans map[netip.Prefix]time.Time, p netip.Prefix, d time.Duration, before, after, got time.Time) error {
	const near = 200 * time.Millisecond
	old, ok := bans[p]
	active := ok && (old.IsZero() || old.After(after.Add(near)))
	askedOK := d < 0 && got.IsZero() || d > 0 && !got.IsZero() && !got.Before(before.Add(d)) && !got.After(after.Add(d))
	switch {
	case !active:
		if !askedOK && !(ok && got.Equal(old)) {
			return fmt.Errorf("expires %v, want %v from now", got, d)
		}
	case old.IsZero():
		if !got.IsZero() {
			return fmt.Errorf("expires %v, want never (the active ban's)", got)
		}
	case d < 0:
		if !got.IsZero() {
			return fmt.Errorf("expires %v, want never", got)
		}
	case old.After(after.Add(d + near)):
		if !got.Equal(old) {
			return fmt.Errorf("expires %v, want the active ban's %v", got, old)
		}
	case old.Before(before.Add(d - near)):
		if !askedOK {
			return fmt.Errorf("expires %v, want %v from now (later than the active %v)", got, d, old)
		}
	default:
		if !askedOK && !got.Equal(old) {
			return fmt.Errorf("expires %v, want about %v from now or %v", got, d, old)
		}
	}
	return nil
}

// kmPoint picks a point of p that is a documentation address (the packet
// sample sends from it).
func kmPoint(rnd *rand.Rand, p netip.Prefix) netip.Addr {
	pts := kmEdges(p)
	for range 8 {
		a := pts[rnd.IntN(len(pts))]
		if kmDoc(a) {
			return a
		}
	}
	return p.Addr()
}

var kmDocNets = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/33"),
}

func kmDoc(a netip.Addr) bool {
	for _, n := range kmDocNets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// packetVerdict dials the host at port from a in the client namespace and
// reports whether the SYN was dropped; ok is false when a cannot be used.
func packetVerdict(t *testing.T, host, client *nftest.NetNS, a netip.Addr, port uint16, _ kmModel) (dropped, ok bool) {
	if !kmDoc(a) {
		return false, false
	}
	bits, target := "/32", "192.0.2.1"
	if a.Is6() {
		bits, target = "/128", "2001:db8:ffff::1"
	}
	args := []string{"addr", "add", a.String() + bits, "dev", "vb"}
	if a.Is6() {
		args = append(args, "nodad")
	}
	client.IP(t, args...)
	defer client.IP(t, "addr", "del", a.String()+bits, "dev", "vb")
	var err error
	// A dropped SYN is dropped again; a first packet that only met a slow
	// neighbour discovery gets through the second time.
	for _, timeout := range []time.Duration{400 * time.Millisecond, time.Second} {
		client.Do(t, func() {
			d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: a.AsSlice()}}
			var c net.Conn
			if c, err = d.Dial("tcp", net.JoinHostPort(target, fmt.Sprint(port))); err == nil {
				c.Close()
			}
		})
		if err == nil {
			break
		}
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("dial from %s: %v (want success or a timeout)", a, err)
	}
	return err != nil, true
}

// TestDriftRepairedByRun: with the engine running and checking every
// second, an element deleted behind moat's back (`nft delete element`) is
// put back within two check intervals with its remaining time, one added
// behind its back is removed, and both are counted and shown in
// FirewallStatus.
func TestDriftRepairedByRun(t *testing.T) {
	nftest.RequireRoot(t)
	ns := nftest.New(t)
	fw, err := nftables.New(nftables.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	const every = time.Second
	e, err := jail.Open(jail.Options{StateDir: t.TempDir(), Firewall: fw, CheckEvery: every, SelfAddrs: func() []netip.Addr { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() { cancel(); <-done }()
	if err := e.Configure(ctx, kmJails); err != nil {
		t.Fatal(err)
	}
	go func() { done <- e.Run(ctx) }()
	if _, err := e.Ban(ctx, "all", netip.MustParsePrefix("203.0.113.60/32"), 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	reader, err := nftables.New(nftables.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	covered := func(a string) bool {
		kb, err := reader.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ok, _ := kernelVerdict(kb, "all", netip.MustParseAddr(a))
		return ok
	}
	waitUntil := func(what string, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > 2*every+500*time.Millisecond {
				t.Fatalf("%s: not within two check intervals (%v)", what, 2*every)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	// Let a first full check pass, so the next one is gated by the
	// generation: the drift must still be seen.
	waitUntil("a first full check", func() bool { st := e.FirewallStatus(); return !st.LastCheck.IsZero() && st.Full })
	ns.Nft(t, "delete", "element", "inet", "moat", "all_v4", "{ 203.0.113.60 }")
	took := waitUntil("deleted element put back", func() bool { return covered("203.0.113.60") })
	t.Logf("deleted element put back after %v", took)
	kb, _ := reader.List(context.Background())
	if _, until := kernelVerdict(kb, "all", netip.MustParseAddr("203.0.113.60")); absDur(time.Until(until)-20*time.Minute) > 10*time.Second {
		t.Errorf("put back until %v, want its remaining time (about 20m from the ban)", until)
	}
	ns.Nft(t, "add", "element", "inet", "moat", "all_v4", "{ 203.0.113.61 timeout 1h }")
	took = waitUntil("stray element removed", func() bool { return !covered("203.0.113.61") })
	t.Logf("stray element removed after %v", took)
	// The check that removed it records its repairs just after.
	waitUntil("the stray repair recorded", func() bool { return e.FirewallStatus().Repairs["stray"] > 0 })
	st := e.FirewallStatus()
	if st.Repairs["missing"] != 1 || st.Repairs["stray"] != 1 || st.LastRepair.IsZero() {
		t.Errorf("FirewallStatus = %+v, want one missing and one stray repair", st)
	}
	waitUntil("a check that matched", func() bool { return e.FirewallStatus().Matched })
}
