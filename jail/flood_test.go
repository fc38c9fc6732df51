package jail

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/moatproj/moat/sources"
)

// floodEngine opens an engine with one jail (maxretry 5, IPv6 /128) and
// room for max windows.
func floodEngine(tb testing.TB, dir string, max int) *Engine {
	tb.Helper()
	e, err := Open(Options{
		StateDir:   dir,
		Firewall:   newRecFW(func() time.Time { return t0 }),
		Logger:     slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return t0 },
		SelfAddrs:  func() []netip.Addr { return nil },
		MaxTracked: max,
	})
	if err != nil {
		tb.Fatal(err)
	}
	c := jailCfg("sshd")
	c.MaxRetry, c.IPv6Prefix = 5, 128
	if err := e.Configure(context.Background(), []Config{c}); err != nil {
		tb.Fatal(err)
	}
	return e
}

// floodAddr is the i-th address of a flood: distinct, in 2001:db8::/32.
func floodAddr(i uint32) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 24), 5: byte(i >> 16), 6: byte(i >> 8), 7: byte(i), 15: 1})
}

// flood records one failure for each of n distinct addresses starting at
// from, in an order that is not the key order.
func flood(tb testing.TB, e *Engine, from, n uint32) {
	tb.Helper()
	ctx := context.Background()
	pos := sources.Position{Path: "/var/log/auth.log", Inode: 1}
	for i := range n {
		// A bijection of [0, n) that scatters neighbours (n is even,
		// the multiplier odd and coprime with n's odd factor).
		j := from + uint32(uint64(i)*2654435761%uint64(n))
		pos.Offset = int64(from + i + 1)
		if b, err := e.Failure(ctx, Failure{Jail: "sshd", Addr: floodAddr(j), Time: t0}, pos); err != nil || b != nil {
			tb.Fatalf("failure %d: ban %v, err %v", i, b, err)
		}
	}
}

// BenchmarkCheckpointMillionDirty is the checkpoint under a flood: 1M
// windows changed since the last one, each of a new address ("new"), or
// 1M new ones on top of 1M already saved ("second").
func BenchmarkCheckpointMillionDirty(b *testing.B) {
	const n = 1_000_000
	for _, tc := range []struct {
		name  string
		saved uint32
	}{
		{"new", 0},
		{"second", n},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e := floodEngine(b, b.TempDir(), 4*n)
				if tc.saved > 0 {
					flood(b, e, 0, tc.saved)
					if err := e.Checkpoint(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				flood(b, e, tc.saved, n)
				b.StartTimer()
				if err := e.Checkpoint(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				e.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/checkpoint")
		})
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkBytesPerWindow measures the live heap per tracked address after
// a flood of distinct addresses, before and after its checkpoint.
func BenchmarkBytesPerWindow(b *testing.B) {
	const n = 1_000_000
	// Timed as a whole, so the benchmark runs it once, not b.N times.
	for range b.N {
		base := heapInUse()
		e := floodEngine(b, b.TempDir(), 4*n)
		flood(b, e, 0, n)
		dirty := heapInUse()
		if err := e.Checkpoint(context.Background()); err != nil {
			b.Fatal(err)
		}
		clean := heapInUse()
		b.ReportMetric(float64(dirty-base)/n, "B/addr-dirty")
		b.ReportMetric(float64(clean-base)/n, "B/addr-saved")
		runtime.KeepAlive(e)
		e.Close()
	}
}

// TestFloodCheckpointRoundTrip saves a flood's windows (keys written in
// sorted order, some deleted in the same checkpoint) and reads them back.
func TestFloodCheckpointRoundTrip(t *testing.T) {
	const n = 20_000
	dir := t.TempDir()
	e := floodEngine(t, dir, 4*n)
	flood(t, e, 0, n)
	if err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Four more failures ban address 7; 8 gets a second failure; a v4
	// address and a /64 key travel too.
	for range 4 {
		e.Failure(ctx, Failure{Jail: "sshd", Addr: floodAddr(7), Time: t0}, sources.Position{})
	}
	e.Failure(ctx, Failure{Jail: "sshd", Addr: floodAddr(8), Time: t0.Add(time.Second)}, sources.Position{})
	e.Failure(ctx, Failure{Jail: "sshd", Addr: netip.MustParseAddr("198.51.100.7"), Time: t0}, sources.Position{})
	if err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if w := e.tr.pendingWrites(); w != 0 {
		t.Errorf("%d writes pending after checkpoint", w)
	}
	e.Close()
	e = floodEngine(t, dir, 4*n)
	defer e.Close()
	if got := e.tr.len(); got != n { // -7 +v4
		t.Errorf("%d windows after reopen, want %d", got, n)
	}
	if w := e.tr.get(winKey{"sshd", netip.PrefixFrom(floodAddr(7), 128)}); w != nil {
		t.Errorf("banned address's window kept: %v", w)
	}
	w := e.tr.get(winKey{"sshd", netip.PrefixFrom(floodAddr(8), 128)})
	if len(w) != 2 || w[1] != t0.Add(time.Second).UnixNano() {
		t.Errorf("address 8's window = %v", w)
	}
	if e.tr.get(winKey{"sshd", netip.MustParsePrefix("198.51.100.7/32")}) == nil {
		t.Error("IPv4 window lost")
	}
	if got := e.Bans("sshd"); len(got) != 1 || got[0].Prefix != netip.PrefixFrom(floodAddr(7), 128) {
		t.Errorf("bans after reopen = %v", got)
	}
}

func TestDBKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, jail, prefix string }{
		{"v4 host", "sshd", "203.0.113.5/32"},
		{"v4 net", "sshd", "203.0.113.0/24"},
		{"v6 host", "web", "2001:db8::1/128"},
		{"v6 /64", "web", "2001:db8:1:2::/64"},
		{"v6 zero", "a\x00b", "::/0"},
		{"v4 zero", "x", "0.0.0.0/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := winKey{tc.jail, netip.MustParsePrefix(tc.prefix)}
			got, err := parseDBKey(dbKey(k))
			if err != nil || got != k {
				t.Errorf("round trip of %v = %v, %v", k, got, err)
			}
			tr := newTracker(1)
			if got := tr.winKey(tr.tk(k)); got != k {
				t.Errorf("tracker key round trip of %v = %v", k, got)
			}
		})
	}
	for _, bad := range []string{"", "sshd", "sshd\x00short", "sshd\x00" + string(make([]byte, 16)) + "\xff"} {
		if _, err := parseDBKey([]byte(bad)); err == nil {
			t.Errorf("parseDBKey(%q) accepted", bad)
		}
	}
}
