package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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

// covers asks the kernel whether set holds an element covering addr, as
// `nft get element` does: one request, answered from the set's lookup
// structure, without a dump.
func (r *reader) covers(table, set string, addr netip.Addr) (bool, error) {
	return r.get(table, set, addr)
}

func (r *reader) get(table, set string, addr netip.Addr) (bool, error) {
	if err := r.dial(); err != nil {
		return false, err
	}
	key, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: addr.AsSlice()}})
	if err != nil {
		return false, err
	}
	el, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: key}})
	if err != nil {
		return false, err
	}
	list, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: el}})
	if err != nil {
		return false, err
	}
	req, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(set), 0)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
	})
	if err != nil {
		return false, err
	}
	_, err = r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, req...),
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, r.fail(fmt.Errorf("get element of set %s: %w", set, err))
	}
	return true, nil
}
