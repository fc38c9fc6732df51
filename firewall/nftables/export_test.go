package nftables

import (
	"net/netip"
	"time"
)

// Covers reports whether set holds an element covering addr, as `nft get
// element` does, in-process (a poller can ask thousands of times a second).
func (b *Backend) Covers(set string, addr netip.Addr) (bool, error) {
	return b.rd.covers(b.table.Name, set, addr)
}

// SpaceFullChecks sets what the last full comparison is taken to have
// cost, and when it was, for tests of the spacing of full comparisons.
func (b *Backend) SpaceFullChecks(cost time.Duration, last time.Time) {
	b.fullCost, b.lastFull = cost, last
}
