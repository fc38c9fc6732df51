package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/jail"
)

// TestBanLine: what `moat ban` prints names the prefix banned, the jail and
// the expiry, and says why the prefix differs from the one asked and when
// the prefix was already banned.
func TestBanLine(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	local := func(d time.Duration) string { return at(d).Local().Format(time.RFC3339) }
	ban := func(p string, exp time.Time, prev *jail.Ban) jail.Ban {
		return jail.Ban{Jail: "sshd", Prefix: netip.MustParsePrefix(p), BannedAt: t0, Expires: exp, Count: 1, Previous: prev}
	}
	prev := func(p string, exp time.Time) *jail.Ban { b := ban(p, exp, nil); return &b }
	tests := []struct {
		name, asked string
		ban         jail.Ban
		want        string
	}{
		{"plain", "192.0.2.7", ban("192.0.2.7/32", at(time.Hour), nil),
			"banned 192.0.2.7 in sshd until " + local(time.Hour)},
		{"no end", "192.0.2.7", ban("192.0.2.7/32", time.Time{}, nil),
			"banned 192.0.2.7 in sshd with no end"},
		{"prefix", "198.51.100.9/24", ban("198.51.100.0/24", at(time.Hour), nil),
			"banned 198.51.100.0/24 in sshd until " + local(time.Hour)},
		{"mapped", "::ffff:192.0.2.7", ban("192.0.2.7/32", at(time.Hour), nil),
			"banned 192.0.2.7 in sshd until " + local(time.Hour)},
		{"ipv6 widened", "2001:db8:1::5", ban("2001:db8:1::/64", at(time.Hour), nil),
			"banned 2001:db8:1::/64 in sshd until " + local(time.Hour) + " (the jail bans IPv6 clients by /64)"},
		{"kept", "192.0.2.7", ban("192.0.2.7/32", at(30*time.Minute), prev("192.0.2.7/32", at(30*time.Minute))),
			"banned 192.0.2.7 in sshd until " + local(30*time.Minute) + " (already banned until " + local(30*time.Minute) + "; kept the later expiry)"},
		{"kept without end", "192.0.2.7", ban("192.0.2.7/32", time.Time{}, prev("192.0.2.7/32", time.Time{})),
			"banned 192.0.2.7 in sshd with no end (already banned with no end; kept the later expiry)"},
		{"extended", "192.0.2.7", ban("192.0.2.7/32", at(2*time.Hour), prev("192.0.2.7/32", at(30*time.Minute))),
			"banned 192.0.2.7 in sshd until " + local(2*time.Hour) + " (already banned until " + local(30*time.Minute) + "; extended)"},
		{"widened and kept", "2001:db8:1::9", ban("2001:db8:1::/64", at(time.Hour), prev("2001:db8:1::/64", at(time.Hour))),
			"banned 2001:db8:1::/64 in sshd until " + local(time.Hour) + " (the jail bans IPv6 clients by /64; already banned until " + local(time.Hour) + "; kept the later expiry)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := banLine(tc.asked, tc.ban); got != tc.want {
				t.Errorf("banLine(%q) =\n%s\nwant\n%s", tc.asked, got, tc.want)
			}
		})
	}
}

// TestCLIBanAnswers runs `moat ban` against an in-process daemon whose
// jail bans IPv6 clients by /64, and checks the line it prints.
func TestCLIBanAnswers(t *testing.T) {
	env, _ := startInProcess(t, "    ipv6_prefix: 64\n")
	tm := `(\S+)`
	tests := []struct {
		name string
		args []string
		re   string // the whole of stdout; groups are times
		// same lists pairs of groups that must be the same time.
		same [][2]int
	}{
		{"plain ban", []string{"192.0.2.7", "--for", "30m"},
			`banned 192\.0\.2\.7 in sshd until ` + tm, nil},
		{"re-ban keeps the later expiry", []string{"192.0.2.7", "--for", "5m"},
			`banned 192\.0\.2\.7 in sshd until ` + tm + ` \(already banned until ` + tm + `; kept the later expiry\)`, [][2]int{{1, 2}}},
		{"re-ban extends", []string{"192.0.2.7", "--for", "2h"},
			`banned 192\.0\.2\.7 in sshd until ` + tm + ` \(already banned until ` + tm + `; extended\)`, nil},
		{"re-ban without end", []string{"192.0.2.7", "--for", "-1"},
			`banned 192\.0\.2\.7 in sshd with no end \(already banned until ` + tm + `; extended\)`, nil},
		{"ipv6 address widened", []string{"2001:db8:1::5", "--for", "1h"},
			`banned 2001:db8:1::/64 in sshd until ` + tm + ` \(the jail bans IPv6 clients by /64\)`, nil},
		{"another address of the /64", []string{"2001:db8:1::9", "--for", "1m"},
			`banned 2001:db8:1::/64 in sshd until ` + tm + ` \(the jail bans IPv6 clients by /64; already banned until ` + tm + `; kept the later expiry\)`, [][2]int{{1, 2}}},
		{"explicit /48", []string{"2001:db8:2::/48", "--for", "1h"},
			`banned 2001:db8:2::/48 in sshd until ` + tm, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"ban"}, tc.args...)
			args = append(args, "--jail", "sshd")
			r := cli(t, env, args...)
			if r.code != 0 {
				t.Fatalf("moat %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
			}
			m := regexp.MustCompile(`^` + tc.re + "\n$").FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("moat %s printed %q, want it to match %s", strings.Join(args, " "), r.stdout, tc.re)
			}
			for _, s := range m[1:] {
				if _, err := time.Parse(time.RFC3339, s); err != nil {
					t.Errorf("%q is not an RFC 3339 time", s)
				}
			}
			for _, p := range tc.same {
				if m[p[0]] != m[p[1]] {
					t.Errorf("times %q and %q differ, want the kept expiry twice", m[p[0]], m[p[1]])
				}
			}
		})
	}
	bans := cliBans(t, env["MOAT_SOCKET"])
	got := map[string]banJSON{}
	for _, b := range bans {
		got[b.IP] = b
	}
	if b, ok := got["192.0.2.7"]; !ok || b.ExpiresAt != nil || b.Count != 1 {
		t.Errorf("192.0.2.7: %+v, want one ban without end, count 1", b)
	}
	if _, ok := got["2001:db8:1::/64"]; !ok || len(bans) != 3 {
		t.Errorf("bans = %+v, want 192.0.2.7, 2001:db8:1::/64 and 2001:db8:2::/48", bans)
	}

	// fail2ban-client's banip counts the addresses it newly banned: one
	// inside a banned /64 is banned already, as is a repeated one.
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"2001:db8:1::7"}, "0\n"},
		{[]string{"198.51.100.5", "198.51.100.5"}, "1\n"},
		{[]string{"2001:db8:3::1", "2001:db8:3::2"}, "1\n"},
	} {
		r := cli(t, env, append([]string{"client", "set", "sshd", "banip"}, tc.addrs...)...)
		if r.code != 0 || r.stdout != tc.want {
			t.Errorf("client set sshd banip %v: exit %d, %q; want %q", tc.addrs, r.code, r.stdout, tc.want)
		}
	}
}

// TestCLIBanRefusedClasses: `moat ban` of an address no jail bans fails
// with one line saying why.
func TestCLIBanRefusedClasses(t *testing.T) {
	env, _ := startInProcess(t, "    ipv6_prefix: 64\n")
	for _, tc := range []struct{ addr, want string }{
		{"169.254.1.1", "refusing to ban 169.254.1.1: link-local address"},
		{"::ffff:169.254.1.1", "refusing to ban 169.254.1.1: link-local address"},
		{"169.254.9.0/24", "refusing to ban 169.254.9.0/24: link-local address"},
		{"fe80::1", "refusing to ban fe80::1: link-local address"},
		{"224.0.0.251", "refusing to ban 224.0.0.251: multicast address"},
		{"ff02::1", "refusing to ban ff02::1: multicast address"},
		{"255.255.255.255", "refusing to ban 255.255.255.255: limited broadcast address (255.255.255.255)"},
		{"0.0.0.0", "refusing to ban 0.0.0.0: unspecified address"},
		{"::", "refusing to ban ::: unspecified address"},
		{"::1", "refusing to ban ::1: loopback address"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			r := cli(t, env, "ban", tc.addr, "--jail", "sshd")
			if r.code != 1 || r.stderr != "moat: "+tc.want+"\n" || r.stdout != "" {
				t.Errorf("moat ban %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.addr, r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	if bans := cliBans(t, env["MOAT_SOCKET"]); len(bans) != 0 {
		t.Errorf("refused bans left %+v", bans)
	}
}

// TestRefuseOwnSessionIPv6: the daemon bans a single IPv6 address by the
// jail's prefix, which the CLI does not know, so an address within a /32
// of the operator's own IPv6 session is refused unless --force.
func TestRefuseOwnSessionIPv6(t *testing.T) {
	const session = "2001:db8:1::9 51000 2001:db8:1::1 22"
	for _, tc := range []struct {
		name, target, ssh string
		refused           bool
	}{
		{"same address", "2001:db8:1::9", session, true},
		{"same /64", "2001:db8:1::5", session, true},
		{"same /32", "2001:db8:ffff::5", session, true},
		{"other /32", "2001:db9::5", session, false},
		{"explicit prefix not covering the session", "2001:db8:2::/64", session, false},
		{"explicit prefix covering the session", "2001:db8:1::/64", session, true},
		{"ipv4 target, ipv6 session", "192.0.2.7", session, false},
		{"ipv6 target, ipv4 session", "2001:db8:1::5", "203.0.113.9 51000 192.0.2.1 22", false},
		{"no session", "2001:db8:1::5", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refuseOwnSession(tc.target, tc.ssh)
			if (err != nil) != tc.refused {
				t.Errorf("refuseOwnSession(%s, %q) = %v, want refused %v", tc.target, tc.ssh, err, tc.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "--force") {
				t.Errorf("error %q does not mention --force", err)
			}
		})
	}
}
