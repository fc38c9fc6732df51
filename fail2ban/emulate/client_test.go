package emulate

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/moatproj/moat/jail"
)

func TestWriteIgnoreIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		list []string
		want string
	}{
		{"empty", nil, "No IP address/network is ignored\n"},
		{"one", []string{"192.0.2.1/32"}, "These IP addresses/networks are ignored:\n`- 192.0.2.1\n"},
		{"networks first, each kind in order", []string{"192.0.2.1/32", "2001:db8::/64", "203.0.113.5/32", "198.51.100.0/24"},
			"These IP addresses/networks are ignored:\n|- 2001:db8::/64\n|- 198.51.100.0/24\n|- 192.0.2.1\n`- 203.0.113.5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := make([]netip.Prefix, len(tc.list))
			for i, s := range tc.list {
				ps[i] = netip.MustParsePrefix(s)
			}
			var b bytes.Buffer
			writeIgnoreIP(&b, ps)
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestBanTimesAndSeconds(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	b := jail.Ban{BannedAt: start, Expires: start.Add(90 * time.Minute)}
	if got, want := banTimes(b), "2026-03-01 10:00:00 + 5400 = 2026-03-01 11:30:00"; got != want {
		t.Errorf("banTimes = %q, want %q", got, want)
	}
	b.Expires = time.Time{}
	if got, want := banTimes(b), "2026-03-01 10:00:00 + -1 = 9999-12-31 23:59:59"; got != want {
		t.Errorf("banTimes without end = %q, want %q", got, want)
	}
	for d, want := range map[time.Duration]int64{time.Hour: 3600, 1500 * time.Millisecond: 1, -1: -1, -time.Hour: -1} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %d, want %d", d, got, want)
		}
	}
}
