package netaddr

import (
	"net/netip"
	"testing"
)

var parseTests = []struct {
	name, in, want string // want "" means an error
}{
	{"ipv4", "192.0.2.7", "192.0.2.7/32"},
	{"ipv4 spaces", "  192.0.2.7\t", "192.0.2.7/32"},
	{"ipv6", "2001:db8::1", "2001:db8::1/128"},
	{"ipv6 zone dropped", "fe80::1%eth0", "fe80::1/128"},
	{"mapped", "::ffff:192.0.2.7", "192.0.2.7/32"},
	{"cidr v4 masked", "198.51.100.77/24", "198.51.100.0/24"},
	{"cidr v6 masked", "2001:db8:1:2:3::9/64", "2001:db8:1:2::/64"},
	{"mapped cidr", "::ffff:203.0.113.0/120", "203.0.113.0/24"},
	{"bad octet", "192.0.2.300", ""},
	{"hostname", "example.org", ""},
	{"empty", "", ""},
	{"bad bits", "192.0.2.0/33", ""},
	{"no bits", "192.0.2.0/", ""},
	{"two slashes", "192.0.2.0/24/8", ""},
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range parseTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePrefix(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ParsePrefix(%q) = %s, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ParsePrefix(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestHostPrefix(t *testing.T) {
	tests := []struct {
		name, addr string
		bits       int
		want       string
	}{
		{"ipv4 ignores v6 bits", "192.0.2.7", 64, "192.0.2.7/32"},
		{"ipv6 whole address", "2001:db8::1", 128, "2001:db8::1/128"},
		{"ipv6 zero means address", "2001:db8::1", 0, "2001:db8::1/128"},
		{"ipv6 by /64", "2001:db8:1:2:3::9", 64, "2001:db8:1:2::/64"},
		{"mapped is ipv4", "::ffff:192.0.2.9", 64, "192.0.2.9/32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HostPrefix(netip.MustParseAddr(tc.addr), tc.bits); got.String() != tc.want {
				t.Errorf("HostPrefix(%s, %d) = %s, want %s", tc.addr, tc.bits, got, tc.want)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for in, want := range map[string]bool{
		"198.51.100.9/32": true, "198.51.0.0/16": true, "203.0.113.0/24": false,
		"2001:db8:1::/48": true, "2001:db9::/32": false,
	} {
		if got := Overlaps(netip.MustParsePrefix(in), ps); got != want {
			t.Errorf("Overlaps(%s) = %v, want %v", in, got, want)
		}
	}
}

// FuzzParsePrefix: addresses come from operators and control requests; any
// text gives a valid masked prefix or an error, never a panic.
func FuzzParsePrefix(f *testing.F) {
	for _, tc := range parseTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %s: not a valid, masked, unmapped prefix", s, p)
		}
	})
}

func TestFormat(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7/32": "192.0.2.7", "2001:db8::1/128": "2001:db8::1",
		"198.51.100.0/24": "198.51.100.0/24", "2001:db8::/64": "2001:db8::/64",
	} {
		if got := Format(netip.MustParsePrefix(in)); got != want {
			t.Errorf("Format(%s) = %q, want %q", in, got, want)
		}
	}
	if got := Format(netip.Prefix{}); got != "" {
		t.Errorf("Format(zero) = %q, want empty", got)
	}
}
