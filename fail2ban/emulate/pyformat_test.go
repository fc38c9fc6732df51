package emulate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/moatproj/moat/filters"
)

// The expected texts below are what Python 3 (fail2ban's interpreter)
// prints for the same values.

func TestPyTime(t *testing.T) {
	cases := []struct {
		name string
		t    time.Time
		want string
	}{
		{"local date keeps whole seconds", time.Unix(1794312000, 0), "1794312000.0"},
		{"epoch fraction", time.Unix(1794312000, 118e6), "1794312000.118"},
		{"epoch one-digit fraction", time.Unix(1794312000, 5e8), "1794312000.5"},
		{"epoch microseconds", time.Unix(1794312000, 1e3), "1794312000.000001"},
		{"epoch six digits", time.Unix(1794312000, 123456e3), "1794312000.123456"},
		{"LEPOCH float to the nanosecond", time.Unix(1794312000, 250499964), "1794312000.2505"},
		{"zone written: int", time.Unix(1794312000, 0).In(time.FixedZone("", 3600)), "1794312000"},
		{"UTC (TAI64N): int", time.Unix(1794312000, 0).UTC(), "1794312000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pyTime(c.t); got != c.want {
				t.Errorf("pyTime(%v) = %q, want %q", c.t, got, c.want)
			}
		})
	}
}

func TestPyAddr(t *testing.T) {
	cases := []struct{ name, addr, want string }{
		{"ipv4", "192.0.2.1", "192.0.2.1"},
		{"ipv6", "2001:db8::1", "2001:db8::1"},
		{"ipv4-compatible is dotted", "::c000:2f7", "::192.0.2.247"},
		{"from ::FFFF:203", "::ffff:203", "::255.255.2.3"},
		{"seven zero words stay hex", "::192", "::192"},
		{"loopback", "::1", "::1"},
		{"not all zero before", "1::ffff:c000:201", "1::ffff:c000:201"},
		{"zero then ffff then hex", "::ffff:0:c000:201", "::ffff:0:c000:201"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pyAddr(netip.MustParseAddr(c.addr)); got != c.want {
				t.Errorf("pyAddr(%s) = %q, want %q", c.addr, got, c.want)
			}
		})
	}
}

func TestPyText(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"valid", "ok \u20ac", "ok \u20ac"},
		{"encoded replacement char", "ok \xef\xbf\xbd", "ok \ufffd"},
		{"surrogate: three", "a\xed\xa0\x80b", "a\ufffd\ufffd\ufffdb"},
		{"above U+10FFFF: three", "\xf4\x90\x80c", "\ufffd\ufffd\ufffdc"},
		{"overlong: two", "\xc0\xaf", "\ufffd\ufffd"},
		{"E0 then 80: two", "\xe0\x80", "\ufffd\ufffd"},
		{"truncated three-byte: one", "\xe2\x82a", "\ufffda"},
		{"truncated four-byte, stray bytes", "\xf0\x9f\x98 x\xff\xfe", "\ufffd x\ufffd\ufffd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pyText(c.in); got != c.want {
				t.Errorf("pyText(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestClassifyNamesSubnets(t *testing.T) {
	cases := []struct{ name, addr, prefix, want string }{
		{"ipv4 subnet", "192.0.2.0", "192.0.2.0/24", "192.0.2.0/24"},
		{"ipv6 subnet", "2001:db8::", "2001:db8::/64", "2001:db8::/64"},
		{"full length is the address", "192.0.2.7", "192.0.2.7/32", "192.0.2.7"},
		{"no subnet", "2001:db8::1", "", "2001:db8::1"},
		{"length 0 leaves the masked address", "192.0.2.1", "0.0.0.0/0", "0.0.0.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := filters.Match{Addr: netip.MustParseAddr(c.addr)}
			if c.prefix != "" {
				m.Prefix = netip.MustParsePrefix(c.prefix)
			}
			v, fl := classify(filters.Result{Failregex: 0, Failure: true, Match: m, Host: c.addr}, "line", false)
			if v != verdictMatched || fl == nil || fl.fid != c.want {
				t.Fatalf("classify(%v) = %v %+v, want matched with id %q", m, v, fl, c.want)
			}
		})
	}
}
