package nftables

import (
	"net/netip"
	"regexp"
	"slices"
	"testing"
	"time"

	gnft "github.com/google/nftables"

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

func TestSpanElements(t *testing.T) {
	tests := []struct {
		name, prefix, start, end string // end "" = end of space
	}{
		{"v4 host", "192.0.2.2/32", "192.0.2.2", "192.0.2.3"},
		{"v4 /24", "198.51.100.0/24", "198.51.100.0", "198.51.101.0"},
		{"v4 carry", "192.0.2.255/32", "192.0.2.255", "192.0.3.0"},
		{"v4 last address", "255.255.255.255/32", "255.255.255.255", ""},
		{"v4 last /24", "255.255.255.0/24", "255.255.255.0", ""},
		{"v4 zero", "0.0.0.0/32", "0.0.0.0", "0.0.0.1"},
		{"v4 all", "0.0.0.0/0", "0.0.0.0", ""},
		{"v6 host", "2001:db8::1/128", "2001:db8::1", "2001:db8::2"},
		{"v6 /64", "2001:db8:0:1::/64", "2001:db8:0:1::", "2001:db8:0:2::"},
		{"v6 /64 carry", "2001:db8:0:ffff::/64", "2001:db8:0:ffff::", "2001:db8:1::"},
		{"v6 last address", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
		{"v6 all", "::/0", "::", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := regionOf(netip.MustParsePrefix(tt.prefix))
			els := spanElements(s, time.Minute)
			if addrString(els[0].Key) != tt.start || els[0].Timeout != time.Minute || els[0].IntervalEnd {
				t.Errorf("start element = %s %+v, want %s with timeout 1m and no end flag", addrString(els[0].Key), els[0], tt.start)
			}
			switch {
			case tt.end == "" && len(els) != 1:
				t.Errorf("elements = %+v, want no end element at the end of the space", els)
			case tt.end != "" && (len(els) != 2 || addrString(els[1].Key) != tt.end || !els[1].IntervalEnd || els[1].Timeout != 0):
				t.Errorf("elements = %+v, want an end element %s without timeout", els, tt.end)
			}
			// Read back as the kernel dumps them (in reverse), the
			// elements pair into the same span.
			back, strays := pairElems(rawOf(els, 30*time.Second), len(els[0].Key), time.Unix(0, 0))
			want := span{s.first, s.last, int64(30 * time.Second)}
			if len(back) != 1 || back[0] != want || strays != 0 {
				t.Errorf("read back = %v (%d strays), want %v", back, strays, want)
			}
		})
	}
}

// rawOf turns elements as written into elements as dumped, in reverse
// order, the start elements with left to live.
func rawOf(els []gnft.SetElement, left time.Duration) []rawElem {
	var out []rawElem
	for i := len(els) - 1; i >= 0; i-- {
		e := rawElem{end: els[i].IntervalEnd}
		copy(e.key[:], els[i].Key)
		if els[i].Timeout != 0 {
			e.timeout, e.left = true, left
		}
		out = append(out, e)
	}
	return out
}

func addrString(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

func TestPairElems(t *testing.T) {
	a := netip.MustParseAddr
	var in []gnft.SetElement
	in = append(in, spanElements(span{first: a("192.0.2.2"), last: a("192.0.2.2")}, time.Hour)...)
	in = append(in, spanElements(span{first: a("192.0.2.3"), last: a("192.0.2.9")}, 0)...) // adjacent: end == next start
	in = append(in, spanElements(span{first: a("255.255.255.255"), last: a("255.255.255.255")}, 0)...)
	raw := rawOf(in, 30*time.Minute)
	// An end whose start timed out between two messages of a dump.
	stray := rawElem{end: true}
	copy(stray.key[:], a("198.51.100.9").AsSlice())
	raw = append(raw, stray)
	// An element about to time out (no time left) is still a timeout.
	soon := rawElem{timeout: true}
	copy(soon.key[:], a("203.0.113.5").AsSlice())
	end := rawElem{end: true}
	copy(end.key[:], a("203.0.113.6").AsSlice())
	raw = append(raw, soon, end)
	now := time.Unix(1000, 0)
	got, strays := pairElems(raw, 4, now)
	want := []span{
		{a("192.0.2.2"), a("192.0.2.2"), now.Add(30 * time.Minute).UnixNano()},
		{a("192.0.2.3"), a("192.0.2.9"), never},
		{a("203.0.113.5"), a("203.0.113.5"), now.UnixNano()},
		{a("255.255.255.255"), a("255.255.255.255"), never},
	}
	if !slices.Equal(got, want) || strays != 1 {
		t.Errorf("pairElems = %v, %d strays, want %v, 1 stray", got, strays, want)
	}
}

func FuzzParseElems(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 8, 0, 3, 0, 4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, n := range []int{4, 16} {
			els, _ := parseElems(nil, msg, n)
			spans, _ := pairElems(els, n, time.Unix(0, 0))
			checkDisjoint(t, "parsed", spans)
		}
	})
}

func pr(first, last uint16) firewall.PortRange { return firewall.PortRange{First: first, Last: last} }
