package jail

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/moatproj/moat/sources"
)

// refusalCases are prefixes no jail bans, whatever its settings, with the
// reason refusal gives; want "" means the prefix may be banned.
var refusalCases = []struct {
	name, prefix, want string
}{
	{"link-local v4", "169.254.1.1/32", whyLinkLocal},
	{"link-local v4 mapped", "::ffff:169.254.1.1/128", whyLinkLocal},
	{"link-local v4 mapped prefix", "::ffff:169.254.0.0/112", whyLinkLocal},
	{"link-local v4 last", "169.254.255.255/32", whyLinkLocal},
	{"prefix in link-local v4", "169.254.7.0/24", whyLinkLocal},
	{"link-local v6", "fe80::1/128", whyLinkLocal},
	{"link-local v6 /64", "fe80::/64", whyLinkLocal},
	{"link-local v6 top of /10", "febf:ffff::/32", whyLinkLocal},
	{"multicast v4", "224.0.0.1/32", whyMulticast},
	{"multicast v4 ssdp", "239.255.255.250/32", whyMulticast},
	{"multicast v4 mapped", "::ffff:224.0.0.251/128", whyMulticast},
	{"prefix in multicast v4", "232.1.0.0/16", whyMulticast},
	{"multicast v6", "ff02::1/128", whyMulticast},
	{"prefix in multicast v6", "ff05::/32", whyMulticast},
	{"broadcast", "255.255.255.255/32", whyBroadcast},
	{"broadcast mapped", "::ffff:255.255.255.255/128", whyBroadcast},
	{"prefix holding broadcast", "255.255.255.0/24", whyBroadcast},
	{"/16 holding broadcast", "255.255.0.0/16", whyBroadcast},
	{"unspecified v4", "0.0.0.0/32", whyUnspecified},
	{"unspecified v4 mapped", "::ffff:0.0.0.0/128", whyUnspecified},
	{"prefix holding unspecified v4", "0.0.0.0/24", whyUnspecified},
	{"unspecified v6", "::/128", whyUnspecified},
	{"prefix holding unspecified v6", "::/64", whyUnspecified},
	{"loopback v4", "127.0.0.1/32", whyLoopback},
	{"loopback v4 mapped", "::ffff:127.0.0.1/128", whyLoopback},
	{"loopback v6", "::1/128", whyLoopback},
	// An IPv6 prefix wider than /96 that takes in mapped IPv4 space holds
	// its loopback, link-local, ... forms.
	{"v6 prefix holding mapped v4", "::fffe:0:0/95", whyUnspecified},
	{"mapped whole v4", "::ffff:0:0/96", "prefix wider than /16"},
	{"too wide v4", "10.0.0.0/8", "prefix wider than /16"},
	{"too wide v6", "2001:db8::/16", "prefix wider than /32"},
	{"invalid", "", "not a valid address or prefix"},
	// Neighbours of the classes may be banned.
	{"below link-local", "169.253.255.255/32", ""},
	{"above link-local", "169.255.0.0/16", ""},
	{"below multicast", "223.255.255.255/32", ""},
	{"next to broadcast", "255.255.255.254/32", ""},
	{"above unspecified", "0.0.0.1/32", ""},
	{"below link-local v6", "fe7f::1/128", ""},
	{"site-local v6", "fec0::1/128", ""},
	{"documentation v4", "203.0.113.9/32", ""},
	{"documentation v4 mapped", "::ffff:203.0.113.9/128", ""},
	{"documentation v6", "2001:db8::/32", ""},
}

func TestRefusalClasses(t *testing.T) {
	cfg := &Config{Name: "sshd"}
	for _, tc := range refusalCases {
		t.Run(tc.name, func(t *testing.T) {
			var p netip.Prefix
			if tc.prefix != "" {
				p = pfx(tc.prefix)
			}
			if got := refusal(cfg, p, nil); got != tc.want {
				t.Errorf("refusal(%s) = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
}

// TestRefusalNoAlloc: refusal runs for every failure read; an address it
// lets through costs no allocation.
func TestRefusalNoAlloc(t *testing.T) {
	cfg := &Config{Name: "sshd", IgnoreSelf: true, IgnoreIP: []netip.Prefix{pfx("198.51.100.0/24")}}
	self := []netip.Addr{selfAddr}
	for _, s := range []string{"203.0.113.9/32", "2001:db8:1::/64"} {
		p := pfx(s)
		if n := testing.AllocsPerRun(100, func() { _ = refusal(cfg, p, self) }); n != 0 {
			t.Errorf("refusal(%s) allocates %v times", s, n)
		}
	}
}

// TestBanRefusedClasses: Engine.Ban refuses each class with a
// *RefusedError whose reason says why; a single IPv6 address is judged by
// the prefix the jail bans it by.
func TestBanRefusedClasses(t *testing.T) {
	c := jailCfg("sshd") // bans IPv6 by /64
	c.IgnoreIP = []netip.Prefix{pfx("2001:db8:ffff::7/128")}
	r := newRig(t, c)
	for _, tc := range []struct {
		name, prefix string
		wantPrefix   string
		want         string
	}{
		{"link-local v4", "169.254.1.1/32", "169.254.1.1/32", whyLinkLocal},
		{"link-local v4 mapped", "::ffff:169.254.1.1/128", "169.254.1.1/32", whyLinkLocal},
		{"prefix in link-local v4", "169.254.7.0/24", "169.254.7.0/24", whyLinkLocal},
		{"link-local v6", "fe80::1234/128", "fe80::1234/128", whyLinkLocal},
		{"link-local v6 /64", "fe80::/64", "fe80::/64", whyLinkLocal},
		{"multicast v4", "224.0.0.251/32", "224.0.0.251/32", whyMulticast},
		{"multicast v4 mapped", "::ffff:224.0.0.251/128", "224.0.0.251/32", whyMulticast},
		{"multicast v6", "ff02::fb/128", "ff02::fb/128", whyMulticast},
		{"broadcast", "255.255.255.255/32", "255.255.255.255/32", whyBroadcast},
		{"broadcast mapped", "::ffff:255.255.255.255/128", "255.255.255.255/32", whyBroadcast},
		{"prefix holding broadcast", "255.255.255.0/24", "255.255.255.0/24", whyBroadcast},
		{"unspecified v4", "0.0.0.0/32", "0.0.0.0/32", whyUnspecified},
		{"unspecified v4 mapped", "::ffff:0.0.0.0/128", "0.0.0.0/32", whyUnspecified},
		{"unspecified v6", "::/128", "::/128", whyUnspecified},
		{"loopback v6", "::1/128", "::1/128", whyLoopback},
		// A single IPv6 address is banned by the jail's /64: refused
		// when that /64 holds a refused address.
		{"address whose /64 holds ::", "::2/128", "::/64", whyUnspecified},
		{"address whose /64 holds an ignoreip", "2001:db8:ffff::8/128", "2001:db8:ffff::/64", "listed in ignoreip of jail sshd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.e.Ban(ctx, "sshd", pfx(tc.prefix), time.Hour)
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != tc.want || re.Prefix != pfx(tc.wantPrefix) {
				t.Fatalf("Ban(%s) = %v, want *RefusedError for %s: %q", tc.prefix, err, tc.wantPrefix, tc.want)
			}
			if want := fmt.Sprintf("refusing to ban %s: %s", tc.wantPrefix, tc.want); err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
	if bs := r.e.Bans(""); len(bs) != 0 {
		t.Errorf("refused bans left %+v", bs)
	}
	if ks := r.fw.keys(); len(ks) != 0 {
		t.Errorf("refused bans reached the firewall: %v", ks)
	}
}

const refusedMsg = "failure not counted: address never banned"

// TestRefusedFailuresCountNothing: a filter that yields an address of a
// class never banned counts nothing, never bans, and is logged once per
// jail and address.
func TestRefusedFailuresCountNothing(t *testing.T) {
	web := jailCfg("web")
	web.IPv6Prefix = 128
	r := newRig(t, jailCfg("sshd"), web)
	tests := []struct {
		name   string
		addrs  []string // failures of these count as one address in the log
		logged string   // the address the warning names; "" none
		why    string
	}{
		{"link-local v4", []string{"169.254.3.4"}, "169.254.3.4", whyLinkLocal},
		{"link-local v4 mapped", []string{"::ffff:169.254.3.5"}, "169.254.3.5", whyLinkLocal},
		{"link-local v6 with and without zone", []string{"fe80::1%eth0", "fe80::1"}, "fe80::1", whyLinkLocal},
		{"broadcast", []string{"255.255.255.255"}, "255.255.255.255", whyBroadcast},
		{"multicast v4", []string{"224.0.0.5"}, "224.0.0.5", whyMulticast},
		{"multicast v6", []string{"ff02::1:2"}, "ff02::1:2", whyMulticast},
		{"unspecified v4", []string{"0.0.0.0"}, "0.0.0.0", whyUnspecified},
		{"unspecified v6", []string{"::"}, "::", whyUnspecified},
		{"loopback is ignored silently", []string{"127.0.0.1", "::ffff:127.0.0.1"}, "", whyLoopback},
		{"own address is ignored silently", []string{"192.0.2.10"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := r.e.Status("")
			for _, jail := range []string{"sshd", "web"} {
				for range 2 {
					for _, a := range tc.addrs {
						for range 3 * jailCfg("").MaxRetry {
							if b := r.fail(jail, a, t0, sources.Position{}); b != nil {
								t.Fatalf("%s banned in %s: %+v", a, jail, b)
							}
						}
					}
				}
			}
			after, _ := r.e.Status("")
			for i := range after {
				if after[i].TotalFailed != before[i].TotalFailed || after[i].CurrentlyFailed != 0 || after[i].TotalBanned != 0 {
					t.Errorf("%s: status %+v after %+v, want nothing counted", after[i].Jail, after[i], before[i])
				}
			}
			lines := 0
			for _, l := range r.logs.lines(t, refusedMsg) {
				if l[keyIP] != tc.logged && !(tc.logged == "" && contains(tc.addrs, l[keyIP])) {
					continue
				}
				lines++
				if l["level"] != "WARN" || l[keyReason] != tc.why {
					t.Errorf("log line %v: want a WARN with reason %q", l, tc.why)
				}
			}
			want := 2 // once in each jail
			if tc.logged == "" {
				want = 0
			}
			if lines != want {
				t.Errorf("%d log lines for %v, want %d (once per jail)", lines, tc.addrs, want)
			}
		})
	}
	if bs := r.e.Bans(""); len(bs) != 0 {
		t.Errorf("bans = %+v, want none", bs)
	}
}

func contains(ss []string, v any) bool {
	for _, s := range ss {
		if s == v {
			return true
		}
	}
	return false
}

// TestRefusedLogBounded: a jail remembers at most maxRefusedLogged
// addresses it logged; past that, one line says further ones are not
// logged, and nothing more is remembered.
func TestRefusedLogBounded(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	n := maxRefusedLogged + 50
	for i := range n {
		a := netip.AddrFrom4([4]byte{169, 254, byte(i >> 8), byte(i)})
		for range 2 {
			if _, err := r.e.Failure(ctx, Failure{Jail: "sshd", Addr: a, Time: t0}, sources.Position{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := len(r.logs.lines(t, refusedMsg)); got != maxRefusedLogged {
		t.Errorf("%d refused lines, want %d", got, maxRefusedLogged)
	}
	more := r.logs.lines(t, "too many refused addresses; further ones are not logged")
	if len(more) != 1 || more[0][keyJail] != "sshd" {
		t.Errorf("lines saying further ones are not logged = %v, want 1 for sshd", more)
	}
	held := 0
	r.e.mu.Lock()
	if rl := r.e.refusedLogs["sshd"]; rl != nil {
		held = len(rl.seen)
	}
	r.e.mu.Unlock()
	if held != maxRefusedLogged {
		t.Errorf("%d addresses remembered, want %d", held, maxRefusedLogged)
	}
}
