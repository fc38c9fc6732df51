package nftables

import (
	"time"

	"github.com/google/nftables"
)

// spanElements returns the set elements of s: its first address with the
// timeout (zero: none), and the address after its last as the interval's
// end, unless s reaches the end of the address space, where no end element
// exists. The kernel takes no timeout on an end element.
func spanElements(s span, timeout time.Duration) []nftables.SetElement {
	els := []nftables.SetElement{{Key: s.first.AsSlice(), Timeout: timeout}}
	if end := s.last.Next(); end.IsValid() {
		els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return els
}

// timeoutOf is the timeout that makes an element written at now expire at
// exp: zero (none) for never, and at least a millisecond otherwise (a zero
// timeout would be no timeout at all).
func timeoutOf(exp int64, now time.Time) time.Duration {
	if exp == never {
		return 0
	}
	return max(time.Duration(exp-now.UnixNano()), time.Millisecond)
}
