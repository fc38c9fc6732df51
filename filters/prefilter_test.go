package filters

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// TestContentHead checks that matching a prefregex's head alone gives the
// same groups as the whole regex, including where it must fall back.
func TestContentHead(t *testing.T) {
	cases := []struct {
		name, re string
		head     bool
		texts    []string
	}{
		{"prefix", `^(?P<mlfid>\S+ \w+\[\d+\]:\s+)(?:error: )?(?P<content>.+)$`, true,
			[]string{"gw sshd[1]: error: Failed x", "gw sshd[1]: ", "gw sshd[1]: error: ", "gw sshd[1]: a\nb", "none"}},
		{"optional tail", `^(?P<mlfid>a+)(?P<x>b*)(?P<content>.+)$`, true,
			[]string{"aab", "aabb", "aa", "a", "ab\n", "aabc"}},
		{"alternation", `x|(?P<content>.+)$`, false, []string{"x", "yx", "y"}},
		{"escaped paren", `^a\\(?P<content>.+)$`, true, []string{`a\b`, `a\`}},
		{"multiline", `(?m)^(?P<mlfid>a)(?P<content>.+)$`, false, []string{"ab\nac"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int64
			cr, err := compileRegex(c.re, c.re, c.name, &n)
			if err != nil {
				t.Fatal(err)
			}
			if (cr.head != nil) != c.head {
				t.Fatalf("head = %v, want one: %v", cr.head, c.head)
			}
			for _, s := range c.texts {
				got, cs, ce := cr.findSubmatchIndex([]byte(s))
				if cs >= 0 {
					got = append(got, cs, ce)
				}
				want := cr.re.FindSubmatchIndex([]byte(s))
				if !slices.Equal(got, want) {
					t.Errorf("%q: got %v, want %v", s, got, want)
				}
			}
		})
	}
}

// TestAlternativePrefilter checks that a regex starting with an
// alternation gets a literal set, and that it rejects only what the regex
// does not match.
func TestAlternativePrefilter(t *testing.T) {
	var n atomic.Int64
	re := `^(Connection (?:closed|reset)|Disconnected) (?:by|from) (?P<ip4>\d+\.\d+\.\d+\.\d+)$`
	cr, err := compileRegex(re, re, "alt", &n)
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.anyOf) == 0 {
		t.Fatal("no literal set for the alternation")
	}
	for _, s := range []string{
		"Connection closed by 192.0.2.1", "Connection reset from 192.0.2.1",
		"Disconnected from 192.0.2.1", "Accepted password for root from 192.0.2.1",
		"Connection refused by 192.0.2.1",
	} {
		m := cr.re.MatchString(s)
		if p := cr.prefilter([]byte(s)); m && !p {
			t.Errorf("%q: prefilter rejects a match", s)
		}
		if s == "Accepted password for root from 192.0.2.1" && cr.prefilter([]byte(s)) {
			t.Errorf("%q: prefilter lets through a line without any alternative", s)
		}
	}
	if got := requiredAlternatives(`(?:a|bc)`); got != nil {
		t.Errorf("one-byte branch: got %q, want no set", got)
	}
}

// TestAnchoredPrefixes checks which regexes get start-of-text literals,
// and that the prefilter keeps every line the regex matches.
func TestAnchoredPrefixes(t *testing.T) {
	cases := []struct {
		name, re string
		want     []string
		match    []string // lines the regex matches
	}{
		{"literal", `^Accepted (?P<user>\S+)`, []string{"Accepted "}, []string{"Accepted x"}},
		{"capture", `^(?P<nofail>Connection from) (?P<ip4>\S+)`, []string{"Connection from"}, []string{"Connection from a"}},
		{"alternation", `^(Connection (?:closed|reset)|Disconnected) by`, []string{"Connection ", "Disconnected"},
			[]string{"Connection reset by", "Disconnected by"}},
		{"class", `^[aA]uth`, nil, []string{"auth"}},
		{"not anchored", `Accepted (?P<user>\S+)`, nil, []string{"x Accepted y"}},
		{"multiline", `(?m)^Accepted`, nil, []string{"x\nAccepted"}},
		{"fold case", `(?i)^accepted`, nil, []string{"ACCEPTED"}},
		{"optional", `^(?:error: )?Accepted`, nil, []string{"Accepted"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, p := range anchoredPrefixes(c.re) {
				got = append(got, string(p))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("prefixes = %q, want %q", got, c.want)
			}
			var n atomic.Int64
			cr, err := compileRegex(c.re, c.re, c.name, &n)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.match {
				if !cr.re.MatchString(s) {
					t.Fatalf("%q: regex does not match", s)
				}
				if !cr.prefilter([]byte(s)) {
					t.Errorf("%q: prefilter rejects a match", s)
				}
			}
		})
	}
}

// TestAnchoredFirstBytes checks the start bytes a regex can begin with,
// and that the prefilter keeps every line the regex matches.
func TestAnchoredFirstBytes(t *testing.T) {
	cases := []struct {
		name, re string
		want     string // the start bytes, "" for no set
		match    []string
	}{
		{"class", `^[aA]uthentication`, "Aa", []string{"authentication", "Authentication"}},
		{"alternation", `^(?:[iI](?:llegal|nvalid)|ROOT) user`, "IRi", []string{"Invalid user", "ROOT user"}},
		{"fold", `(?i)^failed`, "Ff", []string{"FAILED", "failed"}},
		{"kelvin", `(?i)^key`, "", []string{"\u212aey"}},
		{"optional first", `^(?:error: )?Accepted`, "", []string{"Accepted"}},
		{"negated class", `^[^:]+:`, "", []string{"a:"}},
		{"utf-8", `^é`, "\xc3", []string{"é"}},
		{"not anchored", `[aA]uth`, "", []string{"x auth"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var bs []byte
			if set := anchoredFirstBytes(c.re); set != nil {
				for b, ok := range set {
					if ok {
						bs = append(bs, byte(b))
					}
				}
			}
			got := string(bs)
			if got != c.want {
				t.Errorf("first bytes = %q, want %q", got, c.want)
			}
			var n atomic.Int64
			cr, err := compileRegex(c.re, c.re, c.name, &n)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.match {
				if !cr.re.MatchString(s) {
					t.Fatalf("%q: regex does not match", s)
				}
				if !cr.prefilter([]byte(s)) {
					t.Errorf("%q: prefilter rejects a match", s)
				}
			}
			if cr.first != nil && cr.prefilter(nil) {
				t.Error("prefilter lets empty text through")
			}
		})
	}
}

// TestSuperStopsWhenItRulesOutNothing: a regexp2 regex's RE2 superset runs
// until it is seen to rule out too few of the texts that reach it; the
// answers stay right either way.
func TestSuperStopsWhenItRulesOutNothing(t *testing.T) {
	var n atomic.Int64
	cases := []struct {
		name    string
		texts   []string // cycled through superTrial times
		wantOff bool
	}{
		{"every text matches", []string{"Failed x from 192.0.2.1", "Failed yy from 192.0.2.2"}, true},
		{"half the texts cannot match", []string{"Failed x from 192.0.2.1", "Failed x to 192.0.2.1"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr, err := compileRegex(`^Failed (?=\S)\S+ from <HOST>`, `^Failed (?=\S)\S+ from (?P<ip4>\d+\.\d+\.\d+\.\d+)`, c.name, &n)
			if err != nil {
				t.Fatal(err)
			}
			if cr.engine != engineBacktrack || cr.super == nil {
				t.Fatalf("want a regexp2 regex with an RE2 superset, got engine %v", cr.engine)
			}
			for i := range superTrial + 10 {
				text := c.texts[i%len(c.texts)]
				var g groups
				ok, _, _ := cr.match([]byte(text), &g)
				if want := strings.Contains(text, " from "); ok != want {
					t.Fatalf("run %d: match(%q) = %v, want %v", i, text, ok, want)
				}
			}
			if got := cr.superOff.Load(); got != c.wantOff {
				t.Errorf("super skipped = %v, want %v (%d of %d ruled out)", got, c.wantOff, cr.superRejects.Load(), superTrial)
			}
		})
	}
}
