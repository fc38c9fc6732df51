package nftables

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The pure core of the set layout, checked against brute force over a
// small address space: 198.51.100.0/24 with prefixes from /24 to /32.

var base24 = netip.MustParsePrefix("198.51.100.0/24")

func addrN(i int) netip.Addr {
	b := base24.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}

func randPrefix(r *rand.Rand) netip.Prefix {
	bits := 24 + r.IntN(9)
	p, _ := addrN(r.IntN(256)).Prefix(bits)
	return p
}

// bruteCover is the expiry each address must be dropped until (0: not
// dropped) for the bans active after now.
func bruteCover(bans map[netip.Prefix]int64, now int64) [256]int64 {
	var out [256]int64
	for p, exp := range bans {
		if exp <= now {
			continue
		}
		for i := range 256 {
			if p.Contains(addrN(i)) {
				out[i] = max(out[i], exp)
			}
		}
	}
	return out
}

func spanCover(spans []span, now int64) [256]int64 {
	var out [256]int64
	for _, s := range spans {
		if s.exp <= now {
			continue
		}
		for i := range 256 {
			a := addrN(i)
			if !a.Less(s.first) && !s.last.Less(a) {
				out[i] = s.exp
			}
		}
	}
	return out
}

func checkDisjoint(t *testing.T, what string, spans []span) {
	t.Helper()
	for i, s := range spans {
		if s.last.Less(s.first) {
			t.Fatalf("%s: span %v-%v is backwards", what, s.first, s.last)
		}
		if i > 0 && !spans[i-1].last.Less(s.first) {
			t.Fatalf("%s: spans %v-%v and %v-%v overlap", what, spans[i-1].first, spans[i-1].last, s.first, s.last)
		}
	}
}

func modelSpans(m *setModel) []span {
	var out []span
	m.spans.Ascend(func(s span) bool { out = append(out, s); return true })
	return out
}

// kernel is a stand-in for an interval set with timeouts, strict as the
// kernel is: a delete of a missing element and an overlapping add fail.
type kernel map[netip.Addr]span

func (k kernel) expire(now int64) {
	for a, s := range k {
		if s.exp <= now {
			delete(k, a)
		}
	}
}

func (k kernel) apply(c change) error {
	for _, s := range c.dels {
		got, ok := k[s.first]
		if !ok || got.last != s.last {
			return fmt.Errorf("delete of %v-%v: no such element", s.first, s.last)
		}
		delete(k, s.first)
	}
	for _, s := range c.adds {
		for _, o := range k {
			if !s.last.Less(o.first) && !o.last.Less(s.first) {
				return fmt.Errorf("add of %v-%v overlaps %v-%v", s.first, s.last, o.first, o.last)
			}
		}
		k[s.first] = s
	}
	return nil
}

func (k kernel) spans() []span {
	var out []span
	for _, s := range k {
		out = append(out, s)
	}
	slices.SortFunc(out, cmpSpan)
	return out
}

func TestSetModelAgainstBruteForce(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 11))
		m := newSetModel()
		k := kernel{}
		bans := map[netip.Prefix]int64{}
		now := int64(1000)
		var log []string
		for step := range 60 {
			switch op := r.IntN(10); {
			case op < 6:
				p := randPrefix(r)
				exp := now + 1 + int64(r.IntN(50))
				if r.IntN(8) == 0 {
					exp = never
				}
				bans[p] = exp
				m.put(p, exp)
				log = append(log, fmt.Sprintf("ban %s until %d", p, exp))
				for _, c := range m.rewrite([]span{regionOf(p)}, now) {
					if err := k.apply(c); err != nil {
						t.Fatalf("seed %d step %d: %v\n%s", seed, step, err, strings.Join(log, "\n"))
					}
				}
			case op < 8 && len(bans) > 0:
				ps := slices.SortedFunc(maps.Keys(bans), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*2 + cmpInt(a.Bits(), b.Bits()) })
				p := ps[r.IntN(len(ps))]
				delete(bans, p)
				m.remove(p)
				log = append(log, fmt.Sprintf("unban %s", p))
				for _, c := range m.rewrite([]span{regionOf(p)}, now) {
					if err := k.apply(c); err != nil {
						t.Fatalf("seed %d step %d: %v\n%s", seed, step, err, strings.Join(log, "\n"))
					}
				}
			default:
				now += int64(1 + r.IntN(20))
				k.expire(now)
				log = append(log, fmt.Sprintf("time %d", now))
			}
			want := bruteCover(bans, now)
			got := spanCover(modelSpans(m), now)
			if got != want {
				t.Fatalf("seed %d step %d: model spans cover\n%v\nwant\n%v\n%s", seed, step, got, want, strings.Join(log, "\n"))
			}
			ks := k.spans()
			checkDisjoint(t, "kernel", ks)
			if kc := spanCover(ks, now); kc != want {
				t.Fatalf("seed %d step %d: kernel covers\n%v\nwant\n%v\n%s", seed, step, kc, want, strings.Join(log, "\n"))
			}
			full := m.cover(addrN(0), addrN(255), now)
			checkDisjoint(t, "cover", full)
			if c := spanCover(full, now); c != want {
				t.Fatalf("seed %d step %d: cover gives\n%v\nwant\n%v", seed, step, c, want)
			}
			if d := compare(ks, full, now, 0, 0); len(d) != 0 {
				t.Fatalf("seed %d step %d: compare(kernel, cover) = %v, want no mismatch", seed, step, d)
			}
		}
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestCoverOverlaps(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	m := newSetModel()
	m.put(netip.MustParsePrefix("198.51.100.0/24"), 100)
	m.put(netip.MustParsePrefix("198.51.100.77/32"), 300)
	m.put(netip.MustParsePrefix("198.51.100.128/25"), 50)
	got := m.cover(a("198.51.100.0"), a("198.51.100.255"), 0)
	want := []span{
		{a("198.51.100.0"), a("198.51.100.76"), 100},
		{a("198.51.100.77"), a("198.51.100.77"), 300},
		{a("198.51.100.78"), a("198.51.100.255"), 100},
	}
	if !slices.Equal(got, want) {
		t.Errorf("cover = %v, want %v", got, want)
	}
	// After the /24 ends, the address stands alone and the /25 is gone too.
	got = m.cover(a("198.51.100.0"), a("198.51.100.255"), 100)
	want = []span{{a("198.51.100.77"), a("198.51.100.77"), 300}}
	if !slices.Equal(got, want) {
		t.Errorf("cover after 100 = %v, want %v", got, want)
	}
	// The top of the address space has no address after it.
	m6 := newSetModel()
	m6.put(netip.MustParsePrefix("ffff::/16"), never)
	m6.put(netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), 5)
	got = m6.cover(a("ffff::"), a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 0)
	want = []span{{a("ffff::"), a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), never}}
	if !slices.Equal(got, want) {
		t.Errorf("cover at the top = %v, want %v", got, want)
	}
}

func TestCompare(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 5))
		gen := func() []span {
			m := newSetModel()
			for range r.IntN(6) {
				exp := int64(10 + r.IntN(4)*10)
				if r.IntN(5) == 0 {
					exp = never
				}
				m.put(randPrefix(r), exp)
			}
			return m.cover(addrN(0), addrN(255), 0)
		}
		have, want := gen(), gen()
		const now, slack = 0, 5
		got := compare(have, want, now, slack, slack)
		hc, wc := spanCover(have, now), spanCover(want, now)
		var bad [256]diffKind
		for i := range 256 {
			h, w := hc[i], wc[i]
			switch {
			case h != 0 && w != 0:
				if (h == never) != (w == never) || h != never && absInt(h-w) > slack {
					bad[i] = kindTimeout
				}
			case h != 0:
				bad[i] = kindStray
			case w != 0:
				bad[i] = kindMissing
			}
		}
		var fromCompare [256]diffKind
		for _, d := range got {
			for i := range 256 {
				a := addrN(i)
				if !a.Less(d.first) && !d.last.Less(a) {
					if fromCompare[i] != "" {
						t.Fatalf("seed %d: address %v in two mismatches", seed, a)
					}
					fromCompare[i] = d.kind
				}
			}
		}
		if fromCompare != bad {
			t.Fatalf("seed %d: compare\nhave %v\nwant %v\n= %v\nwant per address %v", seed, have, want, got, bad)
		}
	}
}

func TestPrefixesOf(t *testing.T) {
	tests := []struct {
		name, first, last string
		want              []string
	}{
		{"one address", "198.51.100.7", "198.51.100.7", []string{"198.51.100.7/32"}},
		{"a prefix", "198.51.100.0", "198.51.100.255", []string{"198.51.100.0/24"}},
		{"ragged", "198.51.100.1", "198.51.100.6", []string{"198.51.100.1/32", "198.51.100.2/31", "198.51.100.4/31", "198.51.100.6/32"}},
		{"everything", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range prefixesOf(netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("prefixesOf(%s, %s) = %v, want %v", tt.first, tt.last, got, tt.want)
			}
		})
	}
}
