package nftables

import (
	"bytes"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
)

// element is one ban as the kernel holds it: a prefix and the time it has
// left (zero: no timeout).
type element struct {
	prefix netip.Prefix
	left   time.Duration
}

// prefixKeys returns the interval an nftables interval set stores for p:
// the first address, and the first address after the range (nil when the
// range reaches the end of the address space, where no end element exists).
func prefixKeys(p netip.Prefix) (start, end []byte) {
	p = p.Masked()
	start = p.Addr().AsSlice()
	last := slices.Clone(start)
	hostBits := len(last)*8 - p.Bits()
	for i := len(last) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		last[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	// end = last + 1, unless last is the highest address.
	end = last
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return start, end
		}
	}
	return start, nil
}

// prefixElements returns the set elements (start, and end unless at the end
// of the space) for prefix p with the given timeout (zero: none).
func prefixElements(p netip.Prefix, timeout time.Duration) []nftables.SetElement {
	start, end := prefixKeys(p)
	els := []nftables.SetElement{{Key: start, Timeout: timeout}}
	if end != nil {
		els = append(els, nftables.SetElement{Key: end, IntervalEnd: true})
	}
	return els
}

// rangePrefix returns the prefix covering exactly [start, end), end nil
// meaning the end of the address space; ok is false when the range is not a
// prefix.
func rangePrefix(start, end []byte) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(start)
	if !ok {
		return netip.Prefix{}, false
	}
	n := len(start)
	if end != nil && len(end) != n {
		return netip.Prefix{}, false
	}
	// size = end - start (mod 2^(8n)); end nil means 2^(8n) - start.
	size := make([]byte, n)
	borrow := 0
	for i := n - 1; i >= 0; i-- {
		e := 0
		if end != nil {
			e = int(end[i])
		}
		d := e - int(start[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		size[i] = byte(d)
	}
	ones, pos := 0, -1
	for i, b := range size {
		ones += bits.OnesCount8(b)
		if b != 0 && pos < 0 {
			pos = i*8 + bits.LeadingZeros8(b)
		}
	}
	var prefixBits int
	switch {
	case ones == 0 && end == nil && isZero(start):
		prefixBits = 0 // the whole space
	case ones == 1:
		// size is 2^(8n-1-pos): the prefix length is pos+1.
		prefixBits = pos + 1
	default:
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, prefixBits)
	if p.Masked().Addr() != a {
		return netip.Prefix{}, false
	}
	return p, true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// elementsToPrefixes pairs the start and end elements read back from an
// interval set into prefixes. Elements that do not form a prefix (not
// written by moat) are counted in skipped.
func elementsToPrefixes(els []nftables.SetElement) (out []element, skipped int) {
	els = slices.Clone(els)
	slices.SortStableFunc(els, func(x, y nftables.SetElement) int {
		if c := bytes.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		// An end element sorts before a start at the same key (adjacent ranges).
		switch {
		case x.IntervalEnd && !y.IntervalEnd:
			return -1
		case !x.IntervalEnd && y.IntervalEnd:
			return 1
		}
		return 0
	})
	for i := 0; i < len(els); i++ {
		s := els[i]
		if s.IntervalEnd {
			continue // a leading end element or a stray one
		}
		var end []byte
		if i+1 < len(els) && els[i+1].IntervalEnd {
			end = els[i+1].Key
			i++
		}
		p, ok := rangePrefix(s.Key, end)
		if !ok {
			skipped++
			continue
		}
		left := time.Duration(0)
		if s.Timeout != 0 {
			left = s.Expires
			if left <= 0 {
				continue // expired, not yet collected
			}
		}
		out = append(out, element{prefix: p, left: left})
	}
	return out, skipped
}
