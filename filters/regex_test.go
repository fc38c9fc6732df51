package filters

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTranslatePython(t *testing.T) {
	cases := []struct {
		name, in       string
		goSrc, bt, sup string
		backtrack      bool
	}{
		{"plain", `^foo (?P<user>\S+)$`, `^foo (?P<user>\S+)$`, `^foo (?<user>\S+)$`, "", false},
		{"brace without min", `\d{,3}x`, `\d{0,3}x`, `\d{0,3}x`, "", false},
		{"brace literal", `a{x}`, `a{x}`, `a{x}`, "", false},
		{"end of text", `foo\Z`, `foo\z`, `foo\z`, "", false},
		{"inline flag", `(?i)abc`, `(?i)abc`, `(?i)abc`, "", false},
		{"python-only flags dropped", `(?iu)x(?a:y)`, `(?i)x(?:y)`, `(?i)x(?:y)`, "", false},
		{"comment", `a(?#note)b`, `ab`, `ab`, "", false},
		{"class with bracket", `[]a]x`, `[]a]x`, `[]a]x`, "", false},
		{"backreference by name", `(?P<n>a)(?P=n)`, `(?P<n>a)(?P=n)`, `(?<n>a)\k<n>`, `(?P<n>a)(?s:.*?)`, true},
		{"backreference by number", `(a)\1`, `(a)\1`, `(a)\1`, `(a)(?s:.*?)`, true},
		{"lookahead dropped", `foo(?=bar)baz`, `foo(?=bar)baz`, `foo(?=bar)baz`, `foobaz`, true},
		{"nested lookbehind dropped", `(?<!x(?:y))z`, `(?<!x(?:y))z`, `(?<!x(?:y))z`, `z`, true},
		{"conditional", `(?P<u>a)?(?(u)b|c)`, `(?P<u>a)?(?(u)b|c)`, `(?<u>a)?(?(u)b|c)`, `(?P<u>a)?(?:b|c|)`, true},
		{"atomic", `(?>ab)c`, `(?>ab)c`, `(?>ab)c`, `(?:ab)c`, true},
		{"possessive", `a*+b`, `a*b`, `a*b`, `a*b`, true},
		{"unicode classes in superset", `(?=x)\w[\d]\s`, `(?=x)\w[\d]\s`, `(?=x)\w[\d]\s`, `[\p{L}\p{M}\p{N}\p{Pc}][\p{Nd}][\s\v\x{85}\p{Z}]`, true},
		{"verbose has no superset", `(?x) a b (?=c)`, `(?) a b (?=c)`, `(?x) a b (?=c)`, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := translatePython(c.in)
			if got.backtrack != c.backtrack {
				t.Errorf("translatePython(%q).backtrack = %v, want %v", c.in, got.backtrack, c.backtrack)
			}
			if !c.backtrack && got.goSrc != c.goSrc {
				t.Errorf("translatePython(%q).goSrc = %q, want %q", c.in, got.goSrc, c.goSrc)
			}
			if got.btSrc != c.bt {
				t.Errorf("translatePython(%q).btSrc = %q, want %q", c.in, got.btSrc, c.bt)
			}
			if got.superSrc != c.sup {
				t.Errorf("translatePython(%q).superSrc = %q, want %q", c.in, got.superSrc, c.sup)
			}
		})
	}
}

func TestEngineChoice(t *testing.T) {
	cases := []struct {
		name, re  string
		want      engine
		wantSuper bool
		match     string
		noMatch   string
	}{
		{"re2 syntax", `^Failed for (?P<user>\S+) from (?P<ip4>[\d.]+)$`, engineGo, false, "Failed for a from 1.2.3.4", "Failed for a from x y"},
		{"lookahead", `^Failed (?!publickey)\S+ for`, engineBacktrack, true, "Failed password for", "Failed publickey for"},
		{"backreference", `^(?P<q>["'])x(?P=q)$`, engineBacktrack, true, `"x"`, `"x'`},
		{"conditional", `^(?P<b>\[)?x(?(b)\])$`, engineBacktrack, true, "[x]", "[x"},
		{"go rejects large repeat", `^a{1001}$`, engineBacktrack, false, strings.Repeat("a", 1001), "a"},
	}
	var timeouts atomic.Int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr, err := compileRegex(c.re, c.re, "test", &timeouts)
			if err != nil {
				t.Fatal(err)
			}
			if cr.engine != c.want {
				t.Errorf("engine(%q) = %v, want %v", c.re, cr.engine, c.want)
			}
			if (cr.super != nil) != c.wantSuper {
				t.Errorf("superset(%q) present = %v, want %v", c.re, cr.super != nil, c.wantSuper)
			}
			if !cr.matches([]byte(c.match)) {
				t.Errorf("%q does not match %q", c.re, c.match)
			}
			if cr.matches([]byte(c.noMatch)) {
				t.Errorf("%q matches %q", c.re, c.noMatch)
			}
		})
	}
}

func TestCompileErrorNamesRegex(t *testing.T) {
	var timeouts atomic.Int64
	_, err := compileRegex(`^foo(<HOST>`, `^foo(x`, "f.conf:7: failregex", &timeouts)
	if err == nil {
		t.Fatal("compileRegex accepted an unbalanced group")
	}
	for _, want := range []string{"f.conf:7", "failregex", `^foo(<HOST>`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestRequiredLiterals(t *testing.T) {
	cases := []struct {
		name, re string
		want     []string
	}{
		{"concat", `^Failed password for \S+ from`, []string{"Failed password for ", " from"}},
		{"across capture", `foo (?P<u>bar) baz`, []string{"foo bar baz"}},
		{"optional ignored", `ab(?:cd)?ef`, []string{"ab", "ef"}},
		{"alternation ignored", `x(?:foo|bar)y`, nil},
		{"common prefix of alternation", `x(?:abc|abd)y`, []string{"xab"}},
		{"plus required", `(?:abc)+z`, []string{"abc"}},
		{"case-folded skipped", `(?i)abc`, nil},
		{"single bytes skipped", `a.b`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, l := range requiredLiterals(c.re) {
				got = append(got, string(l))
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("requiredLiterals(%q) = %q, want %q", c.re, got, c.want)
			}
		})
	}
}

func TestSubstituteTags(t *testing.T) {
	vars := map[string]string{
		"block":     "a|b",
		"mode":      "ddos",
		"mdre-ddos": "DDOS <HOST>",
		"self":      "x<self>",
		"__pref":    `^\s*host:`,
	}
	lookup := func(k string) (string, bool, error) { v, ok := vars[k]; return v, ok, nil }
	cases := []struct {
		name, in, want string
		err            bool
	}{
		{"host", `from <HOST>$`, `from ` + tagHost + `$`, false},
		{"addr", `<ADDR>`, tagAddr, false},
		{"subnet", `<SUBNET>`, tagSubnet, false},
		{"variable", `/(?:<block>)`, `/(?:a|b)`, false},
		{"prefix variable", `<__pref> x`, `^\s*host: x`, false},
		{"nested", `<mdre-<mode>>`, `DDOS ` + tagHost, false},
		{"user field", `<F-USER>\S+</F-USER>`, `(?P<user>\S+)`, false},
		{"id field", `<F-ID>\d+</F-ID>`, `(?P<fid>\d+)`, false},
		{"lone nofail", `<F-NOFAIL>x`, `(?P<nofail>)x`, false},
		{"named group untouched", `(?P<name>x)\k<name>`, `(?P<name>x)\k<name>`, false},
		{"unknown untouched", `<unknown> <a b> a<b`, `<unknown> <a b> a<b`, false},
		{"self reference", `<self>`, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := substituteTags(c.in, lookup)
			if (err != nil) != c.err {
				t.Fatalf("substituteTags(%q) error = %v, want error %v", c.in, err, c.err)
			}
			if got != c.want {
				t.Errorf("substituteTags(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestAddressTags(t *testing.T) {
	l := &Loader{}
	cases := []struct {
		name, regex, line, addr, user string
		ok                            bool
	}{
		{"ipv4", `^from <HOST>$`, "from 192.0.2.1", "192.0.2.1", "", true},
		{"bracketed ipv4", `^from <HOST>$`, "from [192.0.2.1]", "192.0.2.1", "", true},
		{"ipv6", `^from <HOST>$`, "from 2001:db8::1", "2001:db8::1", "", true},
		{"bracketed ipv6", `^from <HOST> port`, "from [2001:db8::1] port", "2001:db8::1", "", true},
		{"mapped ipv4", `^from <ADDR>$`, "from ::ffff:192.0.2.1", "192.0.2.1", "", true},
		{"ipv6 then colon", `^from <HOST>: x$`, "from 2001:db8::1: x", "2001:db8::1", "", true},
		{"dns gives no address", `^from <HOST>$`, "from host.example.org", "", "", false},
		{"addr refuses names", `^from <ADDR>$`, "from host.example.org", "", "", false},
		{"ip4 tag", `^from <IP4>$`, "from 2001:db8::1", "", "", false},
		{"fail2ban slash tag", `^from <F-IP6/>$`, "from 2001:db8::2", "2001:db8::2", "", true},
		{"self-closing port", `^from <ADDR>(?::<F-PORT/>)? to`, "from 192.0.2.1:40123 to", "192.0.2.1", "", true},
		{"self-closing id", `^id <F-ID/> from <ADDR>$`, "id a-1 from 192.0.2.1", "192.0.2.1", "", true},
		{"unknown slash tag is literal", `^from <ADDR><F-USER/>$`, "from 192.0.2.1<F-USER/>", "192.0.2.1", "", true},
		// fail2ban's ip4 tag takes a lower-case "::ffff:" before the address,
		// its ip6 tag no dotted tail; a mapped address written in hex is IPv4.
		{"mapped in ip4 tag", `^from <IP4>$`, "from ::ffff:192.0.2.1", "192.0.2.1", "", true},
		{"mapped upper case is no address", `^from <HOST>$`, "from ::FFFF:192.0.2.1", "", "", false},
		{"mapped long form is no address", `^from <HOST>$`, "from 0:0:0:0:0:ffff:192.0.2.1", "", "", false},
		{"compatible dotted is no address", `^from <HOST>$`, "from ::192.0.2.1", "", "", false},
		{"ip6 tag takes no dotted tail", `^from <IP6>$`, "from ::ffff:192.0.2.1", "", "", false},
		{"mapped in hex is ipv4", `^from <IP6>$`, "from ::ffff:c000:0201", "192.0.2.1", "", true},
		{"cidr of any length", `^from <SUBNET> x$`, "from 192.0.2.1/1234 x", "192.0.2.1", "", true},
		{"ipv6 ending in ::", `^from <HOST> x$`, "from 2001:db8:: x", "2001:db8::", "", true},
		{"alt user merged", `^(?:u=<F-USER>\w+</F-USER>|r=<F-ALT_USER>\w+</F-ALT_USER>) <HOST>$`, "r=bob 192.0.2.1", "192.0.2.1", "bob", true},
		{"alt user merged on regexp2", `^(?=.)(?:u=<F-USER>\w+</F-USER>|r=<F-ALT_USER>\w+</F-ALT_USER>) <HOST>$`, "r=bob 192.0.2.1", "192.0.2.1", "bob", true},
		{"invalid octet", `^from <HOST>$`, "from 192.0.2.300", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := l.Inline("t", []string{c.regex}, nil)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := f.Match(c.line, time.Unix(0, 0))
			if ok != c.ok {
				t.Fatalf("Match(%q) with %q = %v, want %v", c.line, c.regex, ok, c.ok)
			}
			if ok && (m.Addr.String() != c.addr || m.User != c.user) {
				t.Errorf("Match(%q) = %v %q, want %s %q", c.line, m.Addr, m.User, c.addr, c.user)
			}
		})
	}
}
