package nftables

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/moatproj/moat/internal/netaddr"
)

// reader reads set elements and the ruleset generation over a netlink
// socket of its own. google/nftables reads with a 4 KiB buffer, so the
// kernel answers a dump in 4 KiB messages, and an interval set's dump
// restarts its walk from the first element for every message: a set of
// 100,000 bans took 6 s that way. reader receives into 64 KiB, which lets
// the kernel fill 32 KiB messages, 8 times fewer (about 0.2 s).
type reader struct {
	netns int
	conn  *netlink.Conn
	buf   []byte
}

// readTimeout bounds one dump, so that a kernel that never answers cannot
// hang the engine.
const readTimeout = 10 * time.Second

func (r *reader) dial() error {
	if r.conn != nil {
		return nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: r.netns})
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	if err := bigBuffers(c); err != nil {
		_ = c.Close()
		return fmt.Errorf("open netlink: %w", err)
	}
	r.conn = c
	if r.buf == nil {
		r.buf = make([]byte, 64<<10)
	}
	return nil
}

func (r *reader) close() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
}

// fail closes the connection after an error, so that replies left unread
// cannot be taken for the next request's.
func (r *reader) fail(err error) error {
	r.close()
	return err
}

const nftMsg = unix.NFNL_SUBSYS_NFTABLES << 8

// generation returns the ruleset's generation: it moves with every
// committed nftables transaction in the namespace (moat's own and anyone
// else's), and not when an element times out.
func (r *reader) generation() (uint32, error) {
	if err := r.dial(); err != nil {
		return 0, err
	}
	msgs, err := r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, r.fail(fmt.Errorf("read ruleset generation: %w", err))
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, r.fail(fmt.Errorf("read ruleset generation: %w", err))
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, r.fail(errors.New("read ruleset generation: no generation in the answer"))
}

// errNoSet is returned by spans for a set that does not exist.
var errNoSet = errors.New("no such set")

// spans reads the elements of an interval set and pairs them into spans,
// sorted, with their expiry (now plus the time each has left). Start
// elements without an end reach the end of the address space; an end
// without a start (a start that timed out between two messages of the
// dump) is skipped.
//
// strays counts the end elements without a start: their starts timed out
// and the kernel has not collected them yet (see Backend.collect).
func (r *reader) spans(table, set string, addrLen int, now time.Time) (spans []span, strays int, err error) {
	els, err := r.elems(table, set, addrLen)
	if err != nil {
		return nil, 0, err
	}
	spans, strays = pairElems(els, addrLen, now)
	return spans, strays, nil
}

// elems dumps the elements of set. A dump that a transaction interrupted
// (the kernel flags it: elements may be missing or repeated) is read again.
func (r *reader) elems(table, set string, addrLen int) ([]rawElem, error) {
	for range 5 {
		els, intr, err := r.elemsOnce(table, set, addrLen)
		if err != nil || !intr {
			return els, err
		}
	}
	return nil, fmt.Errorf("read set %s: dump interrupted by transactions five times in a row", set)
}

func (r *reader) elemsOnce(table, set string, addrLen int) (els []rawElem, intr bool, err error) {
	if err := r.dial(); err != nil {
		return nil, false, err
	}
	req, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(table), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(set), 0)},
	})
	if err != nil {
		return nil, false, err
	}
	sent, err := r.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request | netlink.Dump},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, req...),
	})
	if err != nil {
		return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, err))
	}
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return nil, false, r.fail(err)
	}
	if err := r.conn.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		return nil, false, r.fail(err)
	}
	for done := false; !done; {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), r.buf, 0)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, err))
		}
		msgs, err := syscall.ParseNetlinkMessage(r.buf[:n])
		if err != nil {
			return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, err))
		}
		for _, m := range msgs {
			if m.Header.Seq != sent.Header.Sequence {
				continue // a late reply to an earlier request
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				done = true
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno > 0 {
						return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, syscall.Errno(errno)))
					}
				}
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, false, r.fail(fmt.Errorf("read set %s: short error message", set))
				}
				errno := -int32(binary.NativeEndian.Uint32(m.Data))
				if errno == 0 {
					done = true
					continue
				}
				if syscall.Errno(errno) == unix.ENOENT {
					// The dump ends with this error: nothing more follows.
					return nil, false, fmt.Errorf("read set %s: %w", set, errNoSet)
				}
				return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, syscall.Errno(errno)))
			default:
				if els, err = parseElems(els, m.Data, addrLen); err != nil {
					return nil, false, r.fail(fmt.Errorf("read set %s: %w", set, err))
				}
			}
		}
	}
	return els, intr, nil
}

// rawElem is one element of an interval set as the kernel dumps it.
type rawElem struct {
	key     [16]byte
	end     bool
	timeout bool          // it has a timeout
	left    time.Duration // time to expiry, with timeout
}

// nla walks netlink attributes: it returns the type (flags masked) and
// payload of the first attribute of b, and the rest.
func nla(b []byte) (typ uint16, data, rest []byte, ok bool) {
	if len(b) < 4 {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b))
	if l < 4 || l > len(b) {
		return 0, nil, nil, false
	}
	typ = binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
	next := min((l+3)&^3, len(b))
	return typ, b[4:l], b[next:], true
}

// parseElems appends the elements of one NFT_MSG_NEWSETELEM message (after
// its netlink header) to els.
func parseElems(els []rawElem, msg []byte, addrLen int) ([]rawElem, error) {
	if len(msg) < 4 {
		return els, errors.New("short message")
	}
	for b := msg[4:]; len(b) > 0; {
		typ, data, rest, ok := nla(b)
		if !ok {
			return els, errors.New("malformed attribute")
		}
		b = rest
		if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		for l := data; len(l) > 0; {
			typ, el, rest, ok := nla(l)
			if !ok {
				return els, errors.New("malformed element list")
			}
			l = rest
			if typ != unix.NFTA_LIST_ELEM {
				continue
			}
			var e rawElem
			haveKey := false
			for a := el; len(a) > 0; {
				typ, v, rest, ok := nla(a)
				if !ok {
					return els, errors.New("malformed element")
				}
				a = rest
				switch typ {
				case unix.NFTA_SET_ELEM_KEY:
					if kt, kv, _, ok := nla(v); ok && kt == unix.NFTA_DATA_VALUE && len(kv) == addrLen {
						copy(e.key[:], kv)
						haveKey = true
					}
				case unix.NFTA_SET_ELEM_FLAGS:
					if len(v) == 4 {
						e.end = binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
					}
				case unix.NFTA_SET_ELEM_TIMEOUT:
					e.timeout = true
				case unix.NFTA_SET_ELEM_EXPIRATION:
					if len(v) == 8 {
						e.left = time.Duration(binary.BigEndian.Uint64(v)) * time.Millisecond
					}
				}
			}
			if haveKey {
				els = append(els, e)
			}
		}
	}
	return els, nil
}

// pairElems pairs start and end elements into spans. An end sorts before
// a start at the same key (adjacent spans share it).
func pairElems(els []rawElem, addrLen int, now time.Time) (out []span, strays int) {
	sortElems(els)
	for i := 0; i < len(els); i++ {
		e := els[i]
		if e.end {
			strays++
			continue
		}
		first, _ := netip.AddrFromSlice(e.key[:addrLen])
		var last netip.Addr
		if i+1 < len(els) && els[i+1].end {
			end, _ := netip.AddrFromSlice(els[i+1].key[:addrLen])
			last = end.Prev()
			i++
		} else {
			last = netaddr.LastAddr(netip.PrefixFrom(first, 0))
		}
		exp := int64(never)
		if e.timeout {
			exp = now.Add(e.left).UnixNano()
		}
		// The kernel holds no overlapping intervals; should a dump ever
		// show some, the later one is clipped so spans stay disjoint.
		if n := len(out); n > 0 && !out[n-1].last.Less(first) {
			first = out[n-1].last.Next()
			if !first.IsValid() {
				continue
			}
		}
		if !last.Less(first) {
			out = append(out, span{first, last, exp})
		}
	}
	return out, strays
}

// nlaTypeMask clears the nested and byte-order flags of an attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// sortElems orders elements by key, an end before a start at the same key
// (adjacent spans share it).
func sortElems(els []rawElem) {
	slices.SortFunc(els, func(x, y rawElem) int {
		if c := bytes.Compare(x.key[:], y.key[:]); c != 0 {
			return c
		}
		switch {
		case x.end && !y.end:
			return -1
		case !x.end && y.end:
			return 1
		}
		return 0
	})
}
