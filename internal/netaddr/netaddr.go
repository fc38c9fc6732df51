// Package netaddr holds small address and prefix helpers shared by the jail
// and proxy packages. It must not do I/O.
package netaddr

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefix reads an address ("192.0.2.7", "2001:db8::1") as a single-host
// prefix, or a CIDR ("198.51.100.0/24") as its masked prefix. IPv4-mapped IPv6
// addresses are unmapped.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse %q: want an address or a CIDR prefix", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse %q: want an address or a CIDR prefix", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// HostPrefix is the prefix an address is banned by: the address itself for
// IPv4, and its enclosing /v6bits for IPv6 (v6bits 0 or 128: the address).
func HostPrefix(a netip.Addr, v6bits int) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() && v6bits > 0 && v6bits < 128 {
		p, _ := a.Prefix(v6bits)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// Overlaps reports whether p overlaps any of ps.
func Overlaps(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}

// Format writes a single-host prefix as the bare address ("192.0.2.7") and
// a wider one in CIDR form ("198.51.100.0/24"), as moat shows bans to people
// and scripts; "" for the zero Prefix.
func Format(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return ""
	case p.IsSingleIP():
		return p.Addr().String()
	default:
		return p.String()
	}
}

// LastAddr is the last address of p (p masked).
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
