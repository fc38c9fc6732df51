package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// peerAddr is the address of a TCP peer given as host:port, unmapped and
// without zone; the zero Addr when it cannot be read.
func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, err2 := net.SplitHostPort(remote)
		if err2 != nil {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}
		}
		return a.Unmap().WithZone("")
	}
	return ap.Addr().Unmap().WithZone("")
}

// trusted says whether a is in one of ps.
func trusted(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address a request is accounted to: the TCP peer, or,
// when the peer is a trusted proxy, the rightmost address of the chain in
// header (X-Forwarded-For or Forwarded) that is not itself a trusted
// proxy. The chain is read right to left because only the entries our
// trusted proxies appended can be believed; whatever the client wrote
// stands to their left. A chain entry that is not an address ends the walk:
// the last trusted hop before it is the client.
func clientAddr(peer netip.Addr, h http.Header, header string, trust []netip.Prefix) netip.Addr {
	if !peer.IsValid() || len(trust) == 0 || !trusted(peer, trust) {
		return peer
	}
	vals := h.Values(header)
	client := peer
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			var elem string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				elem, v = v[j+1:], v[:j]
			} else {
				elem, v = v, ""
			}
			var a netip.Addr
			var ok bool
			if header == HeaderForwarded {
				a, ok = forwardedFor(elem)
			} else {
				a, ok = chainAddr(strings.TrimSpace(elem))
			}
			if !ok {
				return client
			}
			client = a
			if !trusted(a, trust) {
				return a
			}
		}
	}
	return client
}

// chainAddr reads one X-Forwarded-For or Forwarded "for" value: an
// address, possibly bracketed or with a port.
func chainAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return chainAddr(s[1 : len(s)-1])
	}
	return netip.Addr{}, false
}

// forwardedFor reads the for= parameter of one Forwarded element (RFC
// 7239), such as `for=192.0.2.60;proto=http` or `for="[2001:db8::1]:4711"`.
func forwardedFor(elem string) (netip.Addr, bool) {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(k, "for") {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return chainAddr(v)
	}
	return netip.Addr{}, false
}
