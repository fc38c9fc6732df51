package proxy

import (
	"net/http"
	"net/netip"
	"testing"
)

var clientCases = []struct {
	name   string
	peer   string
	header string
	vals   []string
	want   string
}{
	{name: "untrusted peer ignores chain", peer: "203.0.113.9:5000", vals: []string{"198.51.100.1"}, want: "203.0.113.9"},
	{name: "trusted peer no header", peer: "192.0.2.10:5000", want: "192.0.2.10"},
	{name: "trusted peer one hop", peer: "192.0.2.10:5000", vals: []string{"198.51.100.1"}, want: "198.51.100.1"},
	{name: "spoofed left entry ignored", peer: "192.0.2.10:5000", vals: []string{"203.0.113.66, 198.51.100.1"}, want: "198.51.100.1"},
	{name: "trusted hops skipped right to left", peer: "192.0.2.10:5000", vals: []string{"198.51.100.1, 192.0.2.11, 192.0.2.12"}, want: "198.51.100.1"},
	{name: "several header lines", peer: "192.0.2.10:5000", vals: []string{"203.0.113.66", "198.51.100.1, 192.0.2.11"}, want: "198.51.100.1"},
	{name: "all trusted gives leftmost", peer: "192.0.2.10:5000", vals: []string{"192.0.2.11, 192.0.2.12"}, want: "192.0.2.11"},
	{name: "garbage stops at last trusted hop", peer: "192.0.2.10:5000", vals: []string{"198.51.100.1, nonsense, 192.0.2.11"}, want: "192.0.2.11"},
	{name: "garbage right next to peer", peer: "192.0.2.10:5000", vals: []string{"198.51.100.1, <script>"}, want: "192.0.2.10"},
	{name: "empty element", peer: "192.0.2.10:5000", vals: []string{"198.51.100.1,"}, want: "192.0.2.10"},
	{name: "ipv6 with port and brackets", peer: "192.0.2.10:5000", vals: []string{"[2001:db8::7]:4711"}, want: "2001:db8::7"},
	{name: "mapped v4 unmapped", peer: "[::ffff:192.0.2.10]:5000", vals: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
	{name: "zone refused", peer: "192.0.2.10:5000", vals: []string{"fe80::1%eth0"}, want: "192.0.2.10"},
	{name: "forwarded quoted v6", peer: "192.0.2.10:5000", header: HeaderForwarded, vals: []string{`for=203.0.113.66, for="[2001:db8::1]:4711";proto=https`}, want: "2001:db8::1"},
	{name: "forwarded case and params", peer: "192.0.2.10:5000", header: HeaderForwarded, vals: []string{`proto=http;For=198.51.100.1;by=192.0.2.10`}, want: "198.51.100.1"},
	{name: "forwarded obfuscated stops", peer: "192.0.2.10:5000", header: HeaderForwarded, vals: []string{`for=198.51.100.1, for=_hidden`}, want: "192.0.2.10"},
	{name: "xff ignored when forwarded configured", peer: "192.0.2.10:5000", header: HeaderForwarded, vals: nil, want: "192.0.2.10"},
}

func TestClientAddr(t *testing.T) {
	trust := []netip.Prefix{netip.MustParsePrefix("192.0.2.8/29"), netip.MustParsePrefix("192.0.2.16/28")}
	for _, c := range clientCases {
		t.Run(c.name, func(t *testing.T) {
			hdr := c.header
			if hdr == "" {
				hdr = HeaderXFF
			}
			h := http.Header{}
			for _, v := range c.vals {
				h.Add(hdr, v)
			}
			// A header of the other kind is always present and must never count.
			if hdr == HeaderXFF {
				h.Set(HeaderForwarded, "for=203.0.113.200")
			} else {
				h.Set(HeaderXFF, "203.0.113.200")
			}
			got := clientAddr(peerAddr(c.peer), h, hdr, trust)
			if got != netip.MustParseAddr(c.want) {
				t.Errorf("clientAddr(%s, %q) = %v, want %s", c.peer, c.vals, got, c.want)
			}
		})
	}
}

func TestPeerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:80":           "192.0.2.1",
		"[2001:db8::1]:80":       "2001:db8::1",
		"[fe80::1%eth0]:80":      "fe80::1",
		"[::ffff:192.0.2.1]:443": "192.0.2.1",
	} {
		if got := peerAddr(in); got != netip.MustParseAddr(want) {
			t.Errorf("peerAddr(%q) = %v, want %s", in, got, want)
		}
	}
	if got := peerAddr("@"); got.IsValid() {
		t.Errorf("peerAddr(@) = %v, want invalid", got)
	}
}

func FuzzClientAddr(f *testing.F) {
	for _, c := range clientCases {
		for _, v := range c.vals {
			f.Add(v, c.header == HeaderForwarded)
		}
	}
	trust := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	peer := netip.MustParseAddr("192.0.2.10")
	f.Fuzz(func(t *testing.T, v string, fwd bool) {
		hdr := HeaderXFF
		if fwd {
			hdr = HeaderForwarded
		}
		h := http.Header{hdr: {v}}
		got := clientAddr(peer, h, hdr, trust)
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("clientAddr(%q) = %v", v, got)
		}
	})
}
