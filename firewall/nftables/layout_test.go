package nftables

import (
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
)

var validSetName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

func TestSetBase(t *testing.T) {
	tests := []struct {
		name, jail, want string
	}{
		{"plain", "sshd", "sshd"},
		{"underscore", "nginx_http", "nginx_http"},
		{"digits", "web2", "web2"},
		{"dash", "nginx-auth", "nginx_auth__"},
		{"double underscore", "a__b", "a_b__"},
		{"trailing underscore", "a_", "a__"},
		{"leading digit", "1st", "j1st__"},
		{"unicode", "ssh-ü", "ssh__"},
		{"empty", "", "j__"},
		{"space", "web app", "web_app__"},
		{"long", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwx__"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := setBase(tt.jail)
			if got != tt.want && !(len(got) == len(tt.want)+12 && got[:len(tt.want)] == tt.want) {
				t.Errorf("setBase(%q) = %q, want %q (plus 12 hex digits when hashed)", tt.jail, got, tt.want)
			}
			if !validSetName.MatchString(got + "_v6") {
				t.Errorf("setBase(%q) = %q: not a valid set name", tt.jail, got)
			}
			if other, ok := seen[got]; ok {
				t.Errorf("setBase(%q) = setBase(%q) = %q", tt.jail, other, got)
			}
			seen[got] = tt.jail
		})
	}
	// Names that clean to the same stem stay apart.
	if setBase("a-b") == setBase("a.b") || setBase("a-b") == setBase("a_b") {
		t.Errorf("collision: a-b %q, a.b %q, a_b %q", setBase("a-b"), setBase("a.b"), setBase("a_b"))
	}
	if setBase("x") != setBase("x") {
		t.Error("setBase is not stable")
	}
}

func FuzzSetBase(f *testing.F) {
	for _, s := range []string{"sshd", "nginx-auth", "a__b", "", "1st", "ssh-ü", "web app"} {
		f.Add(s, s+"-")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		x, y := setBase(a), setBase(b)
		if !validSetName.MatchString(x + "_v4") {
			t.Fatalf("setBase(%q) = %q: not a valid set name", a, x)
		}
		if a != b && x == y {
			t.Fatalf("setBase(%q) = setBase(%q) = %q", a, b, x)
		}
	})
}

func TestComment(t *testing.T) {
	tests := []struct {
		name string
		jail firewall.Jail
		fam  int
		want string
	}{
		{"no ports", firewall.Jail{Name: "sshd"}, 0, `moat jail=sshd family=v4`},
		{"ports merged and sorted", firewall.Jail{Name: "web", Ports: []firewall.PortRange{pr(443, 443), pr(80, 80), pr(81, 90), pr(8000, 8100), pr(8050, 8200)}}, 1,
			`moat jail=web family=v6 ports=80-90,443,8000-8200`},
		{"quoted name", firewall.Jail{Name: `a "b"/c`}, 0, `moat jail=a%20%22b%22%2Fc family=v4`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := comment(tt.jail, tt.fam)
			if got != tt.want {
				t.Errorf("comment = %q, want %q", got, tt.want)
			}
			name, ok := jailFromComment(got)
			if !ok || name != tt.jail.Name {
				t.Errorf("jailFromComment(%q) = %q, %v, want %q", got, name, ok, tt.jail.Name)
			}
		})
	}
}

func TestPrefixKeys(t *testing.T) {
	tests := []struct {
		name, prefix, start, end string // end "" = end of space
	}{
		{"v4 host", "192.0.2.2/32", "192.0.2.2", "192.0.2.3"},
		{"v4 /24", "198.51.100.0/24", "198.51.100.0", "198.51.101.0"},
		{"v4 unmasked /24", "198.51.100.7/24", "198.51.100.0", "198.51.101.0"},
		{"v4 carry", "192.0.2.255/32", "192.0.2.255", "192.0.3.0"},
		{"v4 last address", "255.255.255.255/32", "255.255.255.255", ""},
		{"v4 last /24", "255.255.255.0/24", "255.255.255.0", ""},
		{"v4 zero", "0.0.0.0/32", "0.0.0.0", "0.0.0.1"},
		{"v4 all", "0.0.0.0/0", "0.0.0.0", ""},
		{"v6 host", "2001:db8::1/128", "2001:db8::1", "2001:db8::2"},
		{"v6 /64", "2001:db8:0:1::/64", "2001:db8:0:1::", "2001:db8:0:2::"},
		{"v6 /64 carry", "2001:db8:0:ffff:ffff::/64", "2001:db8:0:ffff::", "2001:db8:1::"},
		{"v6 last address", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
		{"v6 last /64", "ffff:ffff:ffff:ffff::/64", "ffff:ffff:ffff:ffff::", ""},
		{"v6 all", "::/0", "::", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := netip.MustParsePrefix(tt.prefix)
			start, end := prefixKeys(p)
			if addrString(start) != tt.start {
				t.Errorf("start = %s, want %s", addrString(start), tt.start)
			}
			if tt.end == "" && end != nil || tt.end != "" && addrString(end) != tt.end {
				t.Errorf("end = %s, want %q", addrString(end), tt.end)
			}
			back, ok := rangePrefix(start, end)
			if !ok || back != p.Masked() {
				t.Errorf("rangePrefix = %v, %v, want %v", back, ok, p.Masked())
			}
			els := prefixElements(p, time.Minute)
			if els[0].Timeout != time.Minute || els[0].IntervalEnd {
				t.Errorf("start element = %+v, want timeout 1m and no end flag", els[0])
			}
			if (len(els) == 2) != (end != nil) || len(els) == 2 && (!els[1].IntervalEnd || els[1].Timeout != 0) {
				t.Errorf("elements = %+v, want an end element without timeout iff end exists", els)
			}
		})
	}
}

func addrString(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

func TestRangePrefixRejects(t *testing.T) {
	tests := []struct {
		name, start, end string
	}{
		{"not a power of two", "192.0.2.0", "192.0.2.3"},
		{"unaligned", "192.0.2.1", "192.0.2.3"},
		{"empty", "192.0.2.1", "192.0.2.1"},
		{"open but not a prefix", "255.255.255.253", ""},
		{"v6 unaligned", "2001:db8::1", "2001:db8::3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var end []byte
			if tt.end != "" {
				end = netip.MustParseAddr(tt.end).AsSlice()
			}
			if p, ok := rangePrefix(netip.MustParseAddr(tt.start).AsSlice(), end); ok {
				t.Errorf("rangePrefix = %v, want not a prefix", p)
			}
		})
	}
}

func FuzzPrefixKeys(f *testing.F) {
	f.Add([]byte{192, 0, 2, 2}, 32)
	f.Add([]byte{255, 255, 255, 255}, 24)
	f.Add(netip.MustParseAddr("2001:db8::").AsSlice(), 64)
	f.Add(netip.MustParseAddr("ffff::").AsSlice(), 128)
	f.Fuzz(func(t *testing.T, addr []byte, bits int) {
		a, ok := netip.AddrFromSlice(addr)
		if !ok || bits < 0 || bits > a.BitLen() {
			return
		}
		p := netip.PrefixFrom(a, bits).Masked()
		start, end := prefixKeys(p)
		back, ok := rangePrefix(start, end)
		if !ok || back != p {
			t.Fatalf("prefix %v: keys %x %x back %v %v", p, start, end, back, ok)
		}
	})
}

func TestElementsToPrefixes(t *testing.T) {
	in := append(append(prefixElements(netip.MustParsePrefix("192.0.2.2/32"), time.Hour),
		prefixElements(netip.MustParsePrefix("192.0.2.3/32"), 0)...), // adjacent: end == next start
		prefixElements(netip.MustParsePrefix("255.255.255.255/32"), 0)...)
	// The kernel sets Expires on read; mimic it and reverse the order as
	// dumps do.
	in[0].Expires = 30 * time.Minute
	for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
		in[i], in[j] = in[j], in[i]
	}
	got, skipped := elementsToPrefixes(in)
	if skipped != 0 {
		t.Errorf("skipped = %d, want 0", skipped)
	}
	want := map[netip.Prefix]time.Duration{
		netip.MustParsePrefix("192.0.2.2/32"):       30 * time.Minute,
		netip.MustParsePrefix("192.0.2.3/32"):       0,
		netip.MustParsePrefix("255.255.255.255/32"): 0,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, e := range got {
		if w, ok := want[e.prefix]; !ok || w != e.left {
			t.Errorf("element %v left %v, want %v", e.prefix, e.left, w)
		}
	}
}

func pr(first, last uint16) firewall.PortRange { return firewall.PortRange{First: first, Last: last} }
