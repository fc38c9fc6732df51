package nftables

import (
	"cmp"
	"math"
	"net/netip"
	"slices"

	"github.com/google/btree"

	"github.com/moatproj/moat/internal/netaddr"
)

// never is the expiry of a ban or span without end.
const never = math.MaxInt64

// span is a run of addresses [first, last] that the kernel holds as one
// interval element, dropped until exp (Unix nanoseconds; never: no end).
type span struct {
	first, last netip.Addr
	exp         int64
}

func spanLess(a, b span) bool { return a.first.Less(b.first) }

// banKey orders bans by first address, then length (a prefix before the
// narrower ones that start where it does).
type banKey struct {
	addr netip.Addr
	bits int
}

func banKeyLess(a, b banKey) bool {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c < 0
	}
	return a.bits < b.bits
}

// setModel is what one set (one jail, one family) must hold: the bans, and
// the spans written for them, which tile the union of the bans into
// disjoint runs each carrying the latest expiry of the bans covering it.
// An interval set refuses overlapping elements, so overlapping bans (an
// address inside a banned prefix, prefixes inside prefixes) cannot each
// be an element; as spans, every address is dropped exactly while at
// least one ban covers it, and a span times out in the kernel by itself
// when the last ban covering it ends.
//
// spans mirrors the kernel: it is what was written, less what timed out.
// It is not always the canonical tiling of the bans (two spans written
// while a covering prefix existed stay two after it expired), so the
// kernel is compared with it point by point, never element by element.
// A setModel is not safe for concurrent use.
type setModel struct {
	bans  map[netip.Prefix]int64
	order *btree.BTreeG[banKey]
	lens  [129]int // bans per prefix length
	spans *btree.BTreeG[span]
	// zombies are the start and end keys of spans that timed out and that
	// the kernel may still hold (see Backend.collect): a new element with
	// the same key would be taken for the old one and vanish with it.
	zombies map[zombieKey]int64
}

// zombieKey is an element's key and whether it is an interval's end.
type zombieKey struct {
	key netip.Addr
	end bool
}

func newSetModel() *setModel {
	return &setModel{
		bans:    map[netip.Prefix]int64{},
		order:   btree.NewG(16, banKeyLess),
		spans:   btree.NewG(16, spanLess),
		zombies: map[zombieKey]int64{},
	}
}

// put sets the ban of p to expire at exp.
func (m *setModel) put(p netip.Prefix, exp int64) {
	if _, ok := m.bans[p]; !ok {
		m.order.ReplaceOrInsert(banKey{p.Addr(), p.Bits()})
		m.lens[p.Bits()]++
	}
	m.bans[p] = exp
}

// remove forgets the ban of p; it reports whether there was one.
func (m *setModel) remove(p netip.Prefix) bool {
	if _, ok := m.bans[p]; !ok {
		return false
	}
	delete(m.bans, p)
	m.order.Delete(banKey{p.Addr(), p.Bits()})
	m.lens[p.Bits()]--
	return true
}

// cover returns the spans that tile [lo, hi] for the bans active after now:
// each maximal run covered by at least one ban, split where the latest
// expiry covering it changes. Bans are clipped to [lo, hi].
func (m *setModel) cover(lo, hi netip.Addr, now int64) []span {
	type open struct {
		last netip.Addr
		exp  int64
	}
	var bans []netip.Prefix
	// The bans containing lo, widest first; then those starting after lo.
	for l := 0; l <= lo.BitLen(); l++ {
		if m.lens[l] == 0 {
			continue
		}
		p := netip.PrefixFrom(lo, l).Masked()
		if _, ok := m.bans[p]; ok {
			bans = append(bans, p)
		}
	}
	if next := lo.Next(); next.IsValid() && !hi.Less(next) {
		m.order.AscendGreaterOrEqual(banKey{next, -1}, func(k banKey) bool {
			if hi.Less(k.addr) {
				return false
			}
			bans = append(bans, netip.PrefixFrom(k.addr, k.bits))
			return true
		})
	}
	var out []span
	emit := func(first, last netip.Addr, exp int64) {
		if n := len(out); n > 0 && out[n-1].exp == exp && out[n-1].last.Next() == first {
			out[n-1].last = last
			return
		}
		out = append(out, span{first, last, exp})
	}
	var stack []open
	var x netip.Addr // the first address not yet emitted; invalid past the end
	// pop closes the innermost open ban: what of it is left is emitted.
	pop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.IsValid() && !top.last.Less(x) {
			emit(x, top.last, top.exp)
			x = top.last.Next()
		}
	}
	for _, p := range bans {
		exp := m.bans[p]
		if exp <= now {
			continue
		}
		first, last := p.Addr(), netaddr.LastAddr(p)
		if first.Less(lo) {
			first = lo
		}
		if hi.Less(last) {
			last = hi
		}
		for len(stack) > 0 && stack[len(stack)-1].last.Less(first) {
			pop()
		}
		if len(stack) > 0 {
			if x.IsValid() && x.Less(first) {
				emit(x, first.Prev(), stack[len(stack)-1].exp)
			}
			exp = max(exp, stack[len(stack)-1].exp)
		}
		x = first
		stack = append(stack, open{last, exp})
	}
	for len(stack) > 0 {
		pop()
	}
	return out
}

// setSpans replaces the spans with have (sorted, disjoint), as read from
// the kernel; spans that timed out by now become zombies.
func (m *setModel) setSpans(have []span, now int64) {
	m.spans.Ascend(func(s span) bool {
		if s.exp <= now {
			m.bury(s)
		}
		return true
	})
	m.spans.Clear(false)
	for _, s := range have {
		m.spans.ReplaceOrInsert(s)
	}
}

// liveSpans returns the spans that have not timed out by now, in order.
func (m *setModel) liveSpans(now int64) []span {
	out := make([]span, 0, m.spans.Len())
	m.spans.Ascend(func(s span) bool {
		if s.exp > now {
			out = append(out, s)
		}
		return true
	})
	return out
}

// spansIn returns the spans that intersect [lo, hi], in order.
func (m *setModel) spansIn(lo, hi netip.Addr) []span {
	var out []span
	m.spans.DescendLessOrEqual(span{first: lo}, func(s span) bool {
		if !s.last.Less(lo) {
			out = append(out, s)
		}
		return false
	})
	m.spans.AscendGreaterOrEqual(span{first: lo}, func(s span) bool {
		if hi.Less(s.first) {
			return false
		}
		if s.first != lo {
			out = append(out, s)
		}
		return true
	})
	return out
}

// hull widens [lo, hi] to take in every span that intersects it.
func (m *setModel) hull(lo, hi netip.Addr) (netip.Addr, netip.Addr) {
	m.spans.DescendLessOrEqual(span{first: lo}, func(s span) bool {
		if !s.last.Less(lo) {
			lo = s.first
			if hi.Less(s.last) {
				hi = s.last
			}
		}
		return false
	})
	m.spans.DescendLessOrEqual(span{first: hi}, func(s span) bool {
		if hi.Less(s.last) {
			hi = s.last
		}
		return false
	})
	return lo, hi
}

// change is what one rewrite does to the kernel: spans to delete and
// spans to add, in one transaction so that no address covered before and
// after is uncovered in between.
type change struct {
	dels, adds []span
}

func (c change) size() int { return len(c.dels) + len(c.adds) }

// rewrite makes the spans over the regions (each [first, last]) tile what
// the bans now cover, and returns the changes for the kernel, one per
// group of overlapping regions. Spans that timed out by now are forgotten
// and never deleted (the kernel dropped them, and a delete of a missing
// element fails its whole transaction).
func (m *setModel) rewrite(regions []span, now int64) []change {
	for i, r := range regions {
		regions[i].first, regions[i].last = m.hull(r.first, r.last)
	}
	slices.SortFunc(regions, func(a, b span) int { return a.first.Compare(b.first) })
	var merged []span
	for _, r := range regions {
		if n := len(merged); n > 0 && !merged[n-1].last.Less(r.first.Prev()) {
			if merged[n-1].last.Less(r.last) {
				merged[n-1].last = r.last
			}
			continue
		}
		merged = append(merged, r)
	}
	var out []change
	for _, r := range merged {
		old := m.spansIn(r.first, r.last)
		want := m.cover(r.first, r.last, now)
		var c change
		for _, s := range old {
			m.spans.Delete(s)
			if s.exp <= now {
				m.bury(s)
				continue
			}
			if _, ok := slices.BinarySearchFunc(want, s, cmpSpan); !ok {
				c.dels = append(c.dels, s)
			}
		}
		for _, s := range want {
			m.spans.ReplaceOrInsert(s)
			if _, ok := slices.BinarySearchFunc(old, s, cmpSpan); !ok {
				c.adds = append(c.adds, s)
			}
		}
		if c.size() > 0 {
			out = append(out, c)
		}
	}
	return out
}

// bury records a span that timed out as a zombie.
func (m *setModel) bury(s span) {
	m.zombies[zombieKey{key: s.first}] = s.exp
	if end := s.last.Next(); end.IsValid() {
		m.zombies[zombieKey{key: end, end: true}] = s.exp
	}
}

// haunted reports whether adding spans would write an element with the key
// of a zombie.
func (m *setModel) haunted(adds []span) bool {
	if len(m.zombies) == 0 {
		return false
	}
	for _, s := range adds {
		if _, ok := m.zombies[zombieKey{key: s.first}]; ok {
			return true
		}
		if end := s.last.Next(); end.IsValid() {
			if _, ok := m.zombies[zombieKey{key: end, end: true}]; ok {
				return true
			}
		}
	}
	return false
}

// collected forgets the zombies that timed out by at, when the kernel
// collected the set's garbage; spans still in the model that timed out by
// then are dropped too.
func (m *setModel) collected(at int64) {
	for k, exp := range m.zombies {
		if exp <= at {
			delete(m.zombies, k)
		}
	}
	var dead []span
	m.spans.Ascend(func(s span) bool {
		if s.exp <= at {
			dead = append(dead, s)
		}
		return true
	})
	for _, s := range dead {
		m.spans.Delete(s)
	}
}

// cmpSpan orders spans by first address, then last, then expiry; equal
// spans are the same element with the same timeout.
func cmpSpan(a, b span) int {
	if c := a.first.Compare(b.first); c != 0 {
		return c
	}
	if c := a.last.Compare(b.last); c != 0 {
		return c
	}
	return cmp.Compare(a.exp, b.exp)
}

// regionOf is the run of addresses of p, as a region to rewrite.
func regionOf(p netip.Prefix) span { return span{first: p.Addr(), last: netaddr.LastAddr(p)} }

// diffKind names what is wrong on a run where the kernel and the model
// disagree.
type diffKind string

const (
	kindMissing diffKind = "missing" // moat bans it, the kernel does not drop it
	kindStray   diffKind = "stray"   // the kernel drops it, no ban accounts for it
	kindTimeout diffKind = "timeout" // both, but it times out at another time
)

// mismatch is a run of addresses where have and want differ.
type mismatch struct {
	first, last netip.Addr
	kind        diffKind
	have, want  int64 // expiries (0: not covered)
}

// compare walks two sorted, disjoint span lists, what the kernel has and
// what it should have, and returns the runs where they differ: covered by
// one only, or with expiries further apart than slack (an expiry without
// end equals only another without end). A run only the kernel has that
// ends within slack of now, and a run only want has that ends within grace
// of now, are left out: they are timing out, and the kernel counts time in
// jiffies. Adjacent runs of the same kind are joined.
func compare(have, want []span, now, slack, grace int64) []mismatch {
	var out []mismatch
	add := func(first, last netip.Addr, kind diffKind, h, w int64) {
		if n := len(out); n > 0 && out[n-1].kind == kind && out[n-1].last.Next() == first {
			out[n-1].last = last
			return
		}
		out = append(out, mismatch{first, last, kind, h, w})
	}
	soon := func(exp, within int64) bool { return exp != never && exp-now <= within }
	i, j := 0, 0
	var x netip.Addr // the first address not yet compared; invalid: none yet
	for i < len(have) || j < len(want) {
		// Pick the next run: from x (or the lowest first) to the nearest
		// boundary of either list.
		var h, w *span
		if i < len(have) {
			h = &have[i]
		}
		if j < len(want) {
			w = &want[j]
		}
		start := x
		lowest := func(s *span) netip.Addr {
			if s == nil {
				return netip.Addr{}
			}
			if start.IsValid() && s.first.Less(start) {
				return start
			}
			return s.first
		}
		hf, wf := lowest(h), lowest(w)
		var from netip.Addr
		switch {
		case h == nil:
			from = wf
		case w == nil:
			from = hf
		case hf.Less(wf):
			from = hf
		default:
			from = wf
		}
		inH := h != nil && !from.Less(h.first) && !h.last.Less(from)
		inW := w != nil && !from.Less(w.first) && !w.last.Less(from)
		// The run ends at the first boundary after from.
		to := netip.Addr{}
		pick := func(a netip.Addr) {
			if !to.IsValid() || a.Less(to) {
				to = a
			}
		}
		if inH {
			pick(h.last)
		} else if h != nil {
			pick(h.first.Prev())
		}
		if inW {
			pick(w.last)
		} else if w != nil {
			pick(w.first.Prev())
		}
		switch {
		case inH && inW:
			if (h.exp == never) != (w.exp == never) || h.exp != never && absInt(h.exp-w.exp) > slack {
				add(from, to, kindTimeout, h.exp, w.exp)
			}
		case inH && !inW:
			if !soon(h.exp, slack) {
				add(from, to, kindStray, h.exp, 0)
			}
		case inW && !inH && !soon(w.exp, grace):
			add(from, to, kindMissing, 0, w.exp)
		}
		if inH && h.last == to {
			i++
		}
		if inW && w.last == to {
			j++
		}
		x = to.Next()
		if !x.IsValid() {
			break
		}
	}
	return out
}

func absInt(d int64) int64 {
	if d < 0 {
		return -d
	}
	return d
}

// prefixesOf splits [first, last] into the fewest prefixes that cover it
// exactly, in order.
func prefixesOf(first, last netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		// The widest prefix starting at first that ends at or before last.
		bits := first.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(first, bits-1)
			if p.Masked().Addr() != first || last.Less(netaddr.LastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(first, bits)
		out = append(out, p)
		end := netaddr.LastAddr(p)
		if end == last {
			return out
		}
		first = end.Next()
	}
}
