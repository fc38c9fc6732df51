package proxy

import (
	"math"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/moatproj/moat/internal/testkit"
)

// fakeClock is a settable clock safe for concurrent reads.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestLimiterBucket drives one client's bucket by the clock: the burst,
// then refusals with the right wait, then tokens back one by one, then full.
func TestLimiterBucket(t *testing.T) {
	clock := newFakeClock()
	l := NewLimiter("api", Limit{Rate: 2, Burst: 3}, LimiterOptions{Now: clock.Now})
	a := netip.MustParseAddr("192.0.2.10")

	for i, want := range []int{2, 1, 0} {
		d := l.Allow(a)
		if !d.Allowed || d.Remaining != want || d.Limit != 3 {
			t.Fatalf("request %d: %+v; want allowed with %d remaining of 3", i+1, d, want)
		}
		if want > 0 && d.Reset != 0 {
			t.Fatalf("request %d: Reset %v while tokens remain", i+1, d.Reset)
		}
	}
	d := l.Allow(a)
	if d.Allowed || d.Remaining != 0 || d.RetryAfter != 500*time.Millisecond || d.Reset != d.RetryAfter {
		t.Fatalf("4th request: %+v; want refused, retry after 500ms", d)
	}
	clock.Advance(499 * time.Millisecond)
	if d := l.Allow(a); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("after 499ms: %+v; want refused, retry after 1ms", d)
	}
	clock.Advance(time.Millisecond)
	if d := l.Allow(a); !d.Allowed || d.Remaining != 0 || d.Reset != 500*time.Millisecond || d.RetryAfter != 0 {
		t.Fatalf("after 500ms: %+v; want allowed, next token in 500ms", d)
	}
	if d := l.Allow(a); d.Allowed {
		t.Fatalf("second request after 500ms: %+v; want refused", d)
	}
	clock.Advance(time.Hour)
	if d := l.Allow(a); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("after an hour: %+v; want allowed with 2 remaining (refilled to the burst, not beyond)", d)
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("Len() = %d; want 1", n)
	}
}

func TestLimiterExempt(t *testing.T) {
	clock := newFakeClock()
	l := NewLimiter("x", Limit{Rate: 1, Burst: 1}, LimiterOptions{
		Now: clock.Now,
		Exempt: []netip.Prefix{
			netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("2001:db8:ff::/48"),
			netip.MustParsePrefix("::ffff:203.0.113.0/120"), // mapped form of 203.0.113.0/24
		},
	})
	for _, s := range []string{"198.51.100.7", "::ffff:198.51.100.8", "2001:db8:ff:1::1", "203.0.113.9"} {
		a := netip.MustParseAddr(s)
		for i := range 5 {
			d := l.Allow(a)
			if !d.Allowed || !d.Exempt {
				t.Fatalf("%s request %d: %+v; want allowed, exempt", s, i+1, d)
			}
			h := http.Header{}
			d.SetHeaders(h)
			if len(h) != 0 {
				t.Fatalf("%s: headers %v for an exempt client; want none", s, h)
			}
		}
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("Len() = %d after exempt clients only; want 0", n)
	}
	a := netip.MustParseAddr("192.0.2.1")
	if d := l.Allow(a); !d.Allowed || d.Exempt {
		t.Fatalf("non-exempt first request: %+v", d)
	}
	if d := l.Allow(a); d.Allowed {
		t.Fatalf("non-exempt second request: %+v; want refused", d)
	}
}

// TestLimiterKeys checks which addresses share a bucket: with a burst of 1,
// the second address is refused exactly when it shares the first's bucket.
func TestLimiterKeys(t *testing.T) {
	cases := []struct {
		name   string
		prefix int
		a, b   string
		same   bool
	}{
		{"same IPv6 /64", 0, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"other IPv6 /64", 0, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"mapped IPv4 is IPv4", 0, "192.0.2.1", "::ffff:192.0.2.1", true},
		{"other IPv4", 0, "192.0.2.1", "192.0.2.2", false},
		{"IPv4 not masked", 0, "203.0.113.1", "203.0.113.0", false},
		{"zone dropped", 0, "fe80::1%eth0", "fe80::1", true},
		{"zones differ", 0, "fe80::1%eth0", "fe80::2%eth1", true},
		{"IPv6 /48 shares", 48, "2001:db8:1:2::1", "2001:db8:1:3::1", true},
		{"IPv6 /48 splits", 48, "2001:db8:1::1", "2001:db8:2::1", false},
		{"IPv6 /56 mid-byte", 56, "2001:db8:1:2ff::1", "2001:db8:1:200::1", true},
		{"IPv6 /100", 100, "2001:db8::1:1", "2001:db8::1:2", true},
		{"IPv6 /100 splits", 100, "2001:db8::1000:0", "2001:db8::2000:0", false},
		{"IPv6 /128", 128, "2001:db8::1", "2001:db8::2", false},
		{"IPv6 /128 same", 128, "2001:db8::1", "2001:db8::1", true},
		{"IPv4 apart from the IPv6 with its bits", 128, "::c000:201", "192.0.2.1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			l := NewLimiter("k", Limit{Rate: 1, Burst: 1}, LimiterOptions{IPv6Prefix: c.prefix, Now: clock.Now})
			if d := l.Allow(netip.MustParseAddr(c.a)); !d.Allowed {
				t.Fatalf("first %s refused", c.a)
			}
			d := l.Allow(netip.MustParseAddr(c.b))
			if d.Allowed == c.same {
				t.Fatalf("Allow(%s) after Allow(%s) = %v; want shared bucket %v", c.b, c.a, d.Allowed, c.same)
			}
		})
	}
}

func TestDecisionHeaders(t *testing.T) {
	cases := []struct {
		name     string
		policy   string
		limit    Limit
		requests int // requests before the one whose headers are checked
		wait     time.Duration
		policyH  string
		rateH    string
		retry    string // "" for none
	}{
		{"first of ten per second", "api", Limit{Rate: 10, Burst: 20}, 0, 0,
			`"api";q=20;w=2`, `"api";r=19;t=0`, ""},
		{"last token", "api", Limit{Rate: 10, Burst: 20}, 19, 0,
			`"api";q=20;w=2`, `"api";r=0;t=1`, ""},
		{"refused", "api", Limit{Rate: 10, Burst: 20}, 20, 0,
			`"api";q=20;w=2`, `"api";r=0;t=1`, "1"},
		{"slow refill", "login", Limit{Rate: 1.0 / 60, Burst: 5}, 5, 0,
			`"login";q=5;w=300`, `"login";r=0;t=60`, "60"},
		{"part way to a token", "login", Limit{Rate: 1.0 / 60, Burst: 5}, 5, 25 * time.Second,
			`"login";q=5;w=300`, `"login";r=0;t=35`, "35"},
		{"half per second", "h", Limit{Rate: 0.5, Burst: 1}, 1, 0,
			`"h";q=1;w=2`, `"h";r=0;t=2`, "2"},
		{"fast refill rounds up to a second", "f", Limit{Rate: 1000, Burst: 1}, 1, 0,
			`"f";q=1;w=1`, `"f";r=0;t=1`, "1"},
		{"name escaped", `a"b\c` + "\n", Limit{Rate: 1, Burst: 2}, 0, 0,
			`"a\"b\\c?";q=2;w=2`, `"a\"b\\c?";r=1;t=0`, ""},
		{"burst below one is one", "z", Limit{Rate: 1, Burst: 0}, 0, 0,
			`"z";q=1;w=1`, `"z";r=0;t=1`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			l := NewLimiter(c.policy, c.limit, LimiterOptions{Now: clock.Now})
			a := netip.MustParseAddr("203.0.113.5")
			for range c.requests {
				l.Allow(a)
			}
			clock.Advance(c.wait)
			d := l.Allow(a)
			h := http.Header{}
			d.SetHeaders(h)
			if got := h.Values("RateLimit-Policy"); len(got) != 1 || got[0] != c.policyH {
				t.Errorf("RateLimit-Policy = %q; want %q", got, c.policyH)
			}
			if got := h.Values("RateLimit"); len(got) != 1 || got[0] != c.rateH {
				t.Errorf("RateLimit = %q; want %q", got, c.rateH)
			}
			if got := h.Get("Retry-After"); got != c.retry {
				t.Errorf("Retry-After = %q; want %q", got, c.retry)
			}
			if d.Allowed != (c.retry == "") {
				t.Errorf("Allowed = %v with Retry-After %q", d.Allowed, c.retry)
			}
		})
	}

	t.Run("two limiters list both policies", func(t *testing.T) {
		clock := newFakeClock()
		a := netip.MustParseAddr("203.0.113.5")
		global := NewLimiter("global", Limit{Rate: 100, Burst: 100}, LimiterOptions{Now: clock.Now})
		route := NewLimiter("route", Limit{Rate: 1, Burst: 1}, LimiterOptions{Now: clock.Now})
		h := http.Header{}
		global.Allow(a).SetHeaders(h)
		route.Allow(a).SetHeaders(h)
		want := []string{`"global";q=100;w=1`, `"route";q=1;w=1`}
		if got := h.Values("RateLimit-Policy"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("RateLimit-Policy = %q; want %q", got, want)
		}
		if got := h.Values("RateLimit"); len(got) != 2 || got[1] != `"route";r=0;t=1` {
			t.Fatalf("RateLimit = %q", got)
		}
	})
}

func TestLimiterUnlimited(t *testing.T) {
	l := NewLimiter("u", Limit{Rate: math.Inf(1), Burst: 3}, LimiterOptions{})
	a := netip.MustParseAddr("192.0.2.3")
	for i := range 100 {
		if d := l.Allow(a); !d.Allowed || d.Remaining != 3 {
			t.Fatalf("request %d: %+v; want allowed, 3 remaining", i+1, d)
		}
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("Len() = %d; want 0 for an unlimited policy", n)
	}
}

func TestLimiterZeroRate(t *testing.T) {
	clock := newFakeClock()
	l := NewLimiter("z", Limit{Rate: 0, Burst: 2}, LimiterOptions{Now: clock.Now})
	a := netip.MustParseAddr("192.0.2.4")
	for i, want := range []bool{true, true, false} {
		clock.Advance(time.Hour)
		if d := l.Allow(a); d.Allowed != want {
			t.Fatalf("request %d: %+v; want allowed %v (burst, no refill)", i+1, d, want)
		}
	}
}

// floodAddr is the i-th address of a flood: a distinct IPv6 /64 in the
// documentation range.
func floodAddr(i uint32) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	b[15] = 1
	return netip.AddrFrom16(b)
}

// TestLimiterFlood sends a million distinct addresses through a limiter
// capped at 4096 keys while one client keeps asking ten times faster than
// its limit. The cap must hold, and the steady client must get exactly the
// decisions a lone rate.Limiter gives it at the same instants.
func TestLimiterFlood(t *testing.T) {
	const (
		maxKeys = 4096
		every   = 10 // the steady client asks once every this many flood requests
	)
	flood := 1_000_000
	if testkit.Race() || testing.Short() {
		flood = 100_000 // still 25 times the cap
	}
	cases := []struct {
		name string
		tick time.Duration // clock advance per flood request
	}{
		// Flood buckets refill (go idle) 100 requests after their use, so
		// eviction finds idle ones.
		{"clock moving", time.Millisecond},
		// Nothing ever refills: eviction falls back to the least recently
		// seen, which must not be the steady client.
		{"clock stopped", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			lim := Limit{Rate: 10, Burst: 20}
			l := NewLimiter("flood", lim, LimiterOptions{MaxKeys: maxKeys, Now: clock.Now})
			ref := rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst)
			steady := netip.MustParseAddr("192.0.2.200")
			allowed := 0
			for i := range uint32(flood) {
				clock.Advance(c.tick)
				if d := l.Allow(floodAddr(i)); !d.Allowed {
					t.Fatalf("flood address %d refused on its first request", i)
				}
				if i%every == 0 {
					d := l.Allow(steady)
					if want := ref.AllowN(clock.Now(), 1); d.Allowed != want {
						t.Fatalf("steady client at flood request %d: allowed %v, want %v (%+v)", i, d.Allowed, want, d)
					}
					if d.Allowed {
						allowed++
					}
				}
				if i%16384 == 0 {
					if n := l.Len(); n > maxKeys {
						t.Fatalf("Len() = %d after %d addresses; cap %d", n, i+1, maxKeys)
					}
				}
			}
			if n := l.Len(); n > maxKeys || n < maxKeys/2 {
				t.Fatalf("Len() = %d at the end; want at most the cap %d and most of it used", n, maxKeys)
			}
			t.Logf("steady client allowed %d of %d", allowed, flood/every)
		})
	}
}

// TestLimiterEvictsIdleFirst drains one client's bucket in a one-shard
// limiter and inserts new keys while the others refill: each must take an
// idle bucket's place, even when the CLOCK hand points at the client, so the
// client's tokens come back at the configured rate and no faster.
func TestLimiterEvictsIdleFirst(t *testing.T) {
	const maxKeys = minPerShard // one shard: which slot goes is deterministic
	clock := newFakeClock()
	lim := Limit{Rate: 10, Burst: 20}
	l := NewLimiter("idle", lim, LimiterOptions{MaxKeys: maxKeys, Now: clock.Now})
	ref := rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst)
	client := netip.MustParseAddr("198.51.100.77")
	check := func(when string) {
		t.Helper()
		d := l.Allow(client)
		allowed := ref.AllowN(clock.Now(), 1)
		left := int(ref.TokensAt(clock.Now()))
		if d.Allowed != allowed || d.Remaining != left {
			t.Fatalf("client %s: %+v; want allowed %v, %d left (more means its bucket was evicted while not full)", when, d, allowed, left)
		}
	}
	for range 21 {
		check("draining")
	}
	for i := range uint32(maxKeys - 1) {
		l.Allow(floodAddr(i))
	}
	clock.Advance(time.Second) // the others are full again: idle; the client has 10 tokens
	// One new key every 50ms. The old keys are idle and a new one is idle
	// 100ms after its one request, so there is always an idle bucket to
	// take; the CLOCK hand alone would clear the client's mark on the first
	// insert and take its bucket on the last.
	for i := range uint32(maxKeys) {
		l.Allow(floodAddr(1<<20 + i))
		if n := l.Len(); n > maxKeys {
			t.Fatalf("Len() = %d; cap %d", n, maxKeys)
		}
		clock.Advance(50 * time.Millisecond)
	}
	check("after the new keys")
}

func TestLimiterCap(t *testing.T) {
	for _, maxKeys := range []int{1, 3, 63, 100, 1000} {
		t.Run(strconv.Itoa(maxKeys), func(t *testing.T) {
			clock := newFakeClock()
			l := NewLimiter("c", Limit{Rate: 1, Burst: 1}, LimiterOptions{MaxKeys: maxKeys, Now: clock.Now})
			for i := range uint32(5000) {
				l.Allow(floodAddr(i))
				if i%50 != 0 && i < 4990 {
					continue
				}
				if n := l.Len(); n > maxKeys {
					t.Fatalf("Len() = %d after %d addresses; cap %d", n, i+1, maxKeys)
				}
			}
		})
	}
}

// TestLimiterConcurrent has goroutines share a few buckets and flood a small
// cap at once; with the clock stopped each shared client gets exactly its
// burst. Run it with -race.
func TestLimiterConcurrent(t *testing.T) {
	clock := newFakeClock()
	const burst, workers, perWorker = 50, 8, 2000
	l := NewLimiter("c", Limit{Rate: 1, Burst: burst}, LimiterOptions{MaxKeys: 256, Now: clock.Now})
	shared := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("198.51.100.1"),
		netip.MustParseAddr("2001:db8:aa::1"),
	}
	var allowed [3]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := i % len(shared)
				if l.Allow(shared[k]).Allowed {
					allowed[k].Add(1)
				}
				// A few distinct addresses too, far fewer than the cap, so
				// the shared clients are never evicted (the clock is stopped).
				if i%100 == 0 {
					l.Allow(floodAddr(uint32(w*perWorker + i)))
				}
			}
		})
	}
	wg.Wait()
	for k := range shared {
		if got := allowed[k].Load(); got != burst {
			t.Errorf("%s allowed %d times; want its burst %d", shared[k], got, burst)
		}
	}
	if n := l.Len(); n > 256 {
		t.Errorf("Len() = %d; cap 256", n)
	}

	// Now many distinct addresses against a tiny cap from all goroutines.
	small := NewLimiter("s", Limit{Rate: 1, Burst: 1}, LimiterOptions{MaxKeys: 64, Now: clock.Now})
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				small.Allow(floodAddr(uint32(w*perWorker + i)))
				clock.Advance(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if n := small.Len(); n > 64 {
		t.Errorf("Len() = %d; cap 64", n)
	}
}

func TestLimiterAllowNoAlloc(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters change allocation counts")
	}
	l := NewLimiter("a", Limit{Rate: 1e9, Burst: 1 << 30}, LimiterOptions{Now: newFakeClock().Now})
	a := netip.MustParseAddr("2001:db8::7")
	l.Allow(a)
	if n := testing.AllocsPerRun(1000, func() { l.Allow(a) }); n != 0 {
		t.Fatalf("Allow for a known key allocates %v times; want 0", n)
	}
}

// TestLimiterHeapPerKey fills a limiter to the default cap and logs the
// heap it holds per tracked key.
func TestLimiterHeapPerKey(t *testing.T) {
	if testing.Short() || testkit.Race() {
		t.Skip("fills a million keys; skipped with -short and -race")
	}
	clock := newFakeClock()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := NewLimiter("m", Limit{Rate: 1, Burst: 10}, LimiterOptions{Now: clock.Now})
	for i := range uint32(DefaultMaxKeys) {
		l.Allow(floodAddr(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := l.Len()
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	t.Logf("%d keys tracked: %.0f heap bytes per key, %.1f MiB live, %.1f MiB heap obtained from the OS",
		n, perKey, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), float64(after.HeapSys)/(1<<20))
	if n > DefaultMaxKeys || n < DefaultMaxKeys*9/10 {
		t.Errorf("Len() = %d; want near %d", n, DefaultMaxKeys)
	}
	if perKey > 400 {
		t.Errorf("%.0f heap bytes per key; want at most 400", perKey)
	}
	runtime.KeepAlive(l)
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := NewLimiter("b", Limit{Rate: 1e9, Burst: 1 << 30}, LimiterOptions{})
	keys := make([]netip.Addr, 1024)
	for i := range keys {
		keys[i] = floodAddr(uint32(i))
		l.Allow(keys[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i&1023])
			i++
		}
	})
}

func BenchmarkLimiterDistinct(b *testing.B) {
	l := NewLimiter("b", Limit{Rate: 10, Burst: 20}, LimiterOptions{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.Allow(floodAddr(uint32(i)))
	}
	b.StopTimer()
	b.ReportMetric(float64(l.Len()), "keys")
}
