package nftables

import "net/netip"

// Covers reports whether set holds an element covering addr, as `nft get
// element` does, in-process (a poller can ask thousands of times a second).
func (b *Backend) Covers(set string, addr netip.Addr) (bool, error) {
	return b.rd.covers(b.table.Name, set, addr)
}
