package jail

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatproj/moat/sources"
)

func key(i uint32) winKey {
	return winKey{jail: "sshd", prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 32)}
}

func TestTrackerEvictsLeastRecentlyFailed(t *testing.T) {
	tr := newTracker(3)
	var evicted []winKey
	tr.onEvict = func(k winKey) { evicted = append(evicted, k) }
	ft := int64(time.Hour)
	tr.add(key(1), 1, ft)
	tr.add(key(2), 2, ft)
	tr.add(key(3), 3, ft)
	tr.add(key(1), 4, ft)
	for i := uint32(4); i <= 6; i++ {
		tr.add(key(i), int64(i), ft)
	}
	want := []winKey{key(2), key(3), key(1)}
	if len(evicted) != 3 || evicted[0] != want[0] || evicted[1] != want[1] || evicted[2] != want[2] {
		t.Errorf("evicted %v, want %v", evicted, want)
	}
	if tr.len() != 3 || tr.count("sshd") != 3 {
		t.Errorf("len %d count %d, want 3", tr.len(), tr.count("sshd"))
	}
}

func TestTrackerExpireOld(t *testing.T) {
	tr := newTracker(10)
	ft := int64(100)
	tr.add(key(1), 10, ft)
	tr.add(key(2), 500, ft)
	tr.add(key(3), 20, ft) // older but more recent in arrival: kept until it reaches the tail
	tr.expireOld(550, func(string) (int64, bool) { return ft, true })
	if tr.get(key(1)) != nil || tr.get(key(2)) == nil || tr.get(key(3)) == nil || tr.len() != 2 {
		t.Errorf("len %d after expiry; want key 1 only dropped", tr.len())
	}
}

func TestTrackerBoundedAtMillion(t *testing.T) {
	const n, max = 1_000_000, 100_000
	tr := newTracker(max)
	for i := uint32(0); i < n; i++ {
		tr.add(key(i+1<<24), int64(i), int64(time.Hour))
	}
	if tr.len() != max || len(tr.keys()) != max || tr.count("sshd") != max {
		t.Errorf("tracker holds %d (list %d), want %d", tr.len(), len(tr.keys()), max)
	}
	// The newest survive.
	if tr.get(key(n-1+1<<24)) == nil || tr.get(key(1<<24)) != nil {
		t.Error("eviction kept the wrong entries")
	}
}

func benchEngine(b *testing.B, maxTracked int) *Engine {
	e, err := Open(Options{
		StateDir:   b.TempDir(),
		Firewall:   newRecFW(func() time.Time { return t0 }),
		Logger:     slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return t0 },
		SelfAddrs:  func() []netip.Addr { return nil },
		MaxTracked: maxTracked,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	c := jailCfg("sshd")
	c.MaxRetry = 1 << 30
	if err := e.Configure(context.Background(), []Config{c}); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkFailureNoBan is the per-line fast path: distinct addresses, no
// ban reached, the tracker at its cap (so every call also evicts).
func BenchmarkFailureNoBan(b *testing.B) {
	e := benchEngine(b, 100_000)
	ctx := context.Background()
	pos := sources.Position{Path: "/var/log/auth.log", Inode: 1}
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		i++
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		pos.Offset = int64(i)
		if _, err := e.Failure(ctx, Failure{Jail: "sshd", Addr: a, Time: t0}, pos); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFailureMillionAddresses feeds 1M distinct addresses with
// MaxTracked 100k and checks the map stays at 100k.
func BenchmarkFailureMillionAddresses(b *testing.B) {
	for b.Loop() {
		e := benchEngine(b, 100_000)
		ctx := context.Background()
		for i := uint32(0); i < 1_000_000; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			e.Failure(ctx, Failure{Jail: "sshd", Addr: a, Time: t0}, sources.Position{})
		}
		if n := e.tr.len(); n != 100_000 {
			b.Fatalf("tracker holds %d, want 100000", n)
		}
		e.Close()
	}
}

func BenchmarkAdvance(b *testing.B) {
	e := benchEngine(b, 1000)
	pos := sources.Position{Path: "/var/log/auth.log", Inode: 1}
	for b.Loop() {
		pos.Offset++
		e.Advance(pos)
	}
}

// BenchmarkBanDurable is the slow path: one ban committed (fsync) and
// added to the firewall.
func BenchmarkBanDurable(b *testing.B) {
	e := benchEngine(b, 1000)
	ctx := context.Background()
	i := uint32(0)
	for b.Loop() {
		i++
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		if _, err := e.Ban(ctx, "sshd", p, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTrackerMatchesModel runs random adds, removes and expiries against a
// plain map and compares every key's times: it exercises the hash table's
// probing, growth and backward-shift deletion, the slab's free list, and
// windows that outgrow their inline times.
func TestTrackerMatchesModel(t *testing.T) {
	const ft = 50
	rnd := rand.New(rand.NewPCG(1, 2))
	tr := newTracker(1 << 20)
	model := map[winKey][]int64{}
	jails := []string{"sshd", "web", "mail"}
	keyOf := func() winKey {
		i := rnd.IntN(300)
		if i%2 == 0 {
			return winKey{jails[i%3], netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32)}
		}
		return winKey{jails[i%3], netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), 128)}
	}
	now := int64(1000)
	for step := range 50_000 {
		now++
		k := keyOf()
		switch op := rnd.IntN(10); {
		case op < 7:
			at := now - int64(rnd.IntN(30))
			ts := append(model[k], at)
			newest := slices.Max(ts)
			ts = slices.DeleteFunc(ts, func(x int64) bool { return x < newest-ft })
			model[k] = ts
			if n := tr.add(k, at, ft); n != len(ts) {
				t.Fatalf("step %d: add(%v) = %d, want %d", step, k, n, len(ts))
			}
		case op < 9:
			delete(model, k)
			tr.remove(k)
		default:
			// Expire everything whose newest time is older than now-ft,
			// as the tracker does from its tail.
			tr.expireOld(now, func(string) (int64, bool) { return ft, true })
			for mk, ts := range model {
				if tr.get(mk) == nil {
					if slices.Max(ts) >= now-ft {
						t.Fatalf("step %d: expiry dropped fresh %v", step, mk)
					}
					delete(model, mk)
				}
			}
		}
		if tr.len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, tr.len(), len(model))
		}
	}
	for k, ts := range model {
		got := slices.Clone(tr.get(k))
		slices.Sort(got)
		slices.Sort(ts)
		if !slices.Equal(got, ts) {
			t.Errorf("%v: times %v, want %v", k, got, ts)
		}
	}
	if n := tr.count("sshd") + tr.count("web") + tr.count("mail"); n != len(model) {
		t.Errorf("per-jail counts sum to %d, want %d", n, len(model))
	}
	// The slab holds no more slots than keys ever live at once, plus one.
	if int(tr.used) > 301 {
		t.Errorf("slab used %d slots for 300 keys", tr.used)
	}
}
