package filters

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawMatch runs a regex without its prefilter or superset.
func rawMatch(t testing.TB, cr *compiledRegex, text []byte) bool {
	if cr.engine == engineGo {
		return cr.re.Match(text)
	}
	ok, err := cr.bt.MatchString(string(text))
	if err != nil {
		t.Fatalf("%s: %v", cr.where, err)
	}
	return ok
}

// sampleTexts returns every sample line with its date cut out, plus
// variants (truncated, case-changed) that stress the prefilters.
func sampleTexts(t testing.TB) [][]byte {
	ref := goldenRef
	var out [][]byte
	for _, c := range goldenCases {
		for _, line := range readLines(t, c.log) {
			s, e, _, _ := findDate(line, ref, time.UTC)
			text := line[:s] + line[e:]
			out = append(out, []byte(text), []byte(strings.ToUpper(text)), []byte(text[:len(text)/2]))
		}
	}
	return out
}

// TestPrefilterNeverRejectsAMatch is the property the speed-up rests on:
// a line the regex matches always passes its prefilter and superset.
func TestPrefilterNeverRejectsAMatch(t *testing.T) {
	texts := sampleTexts(t)
	var regexes []*compiledRegex
	l := &Loader{Location: time.UTC}
	for _, c := range goldenCases {
		f, err := l.Load(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		regexes = append(regexes, f.fail...)
		if c.spec == "sshd" && string(f.gate) != "sshd" {
			t.Errorf("sshd gate = %q, want \"sshd\"", f.gate)
		}
		// The filter-wide gate must pass every line any failregex matches.
		for _, text := range texts {
			for _, cr := range f.fail {
				if rawMatch(t, cr, text) && f.gate != nil && !bytes.Contains(text, f.gate) {
					t.Errorf("%s: gate %q rejects %q which %q matches", c.spec, f.gate, text, cr.src)
				}
			}
		}
	}
	// Backtracking patterns in the style of fail2ban's own filters.
	f, err := l.Inline("bt", []string{
		`^\s*\S+ sshd(?:-session)?\[\d+\]: (?:error: )?Failed (?!publickey)\S+ for (?P<cond_inv>invalid user )?<F-USER>(?(cond_inv)\S+|(?:(?! from ).)*?)</F-USER> from <HOST>(?: port \d+)?`,
		`^(?P<q>")?<HOST>(?(q)"|) \S+ \S+ \[\] "(?P<m>GET|POST)`,
		`(?<=client: )<HOST>, server: (?P<s>\S+), .*host: "(?P=s)"`,
		`Invalid user (?>\S+) from <HOST>`,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	regexes = append(regexes, f.fail...)
	matched := 0
	for _, cr := range regexes {
		for _, text := range texts {
			if !rawMatch(t, cr, text) {
				continue
			}
			matched++
			if !cr.prefilter(text) {
				t.Errorf("%s: prefilter %q rejects %q which %q matches", cr.where, cr.lits, text, cr.src)
			}
			if cr.super != nil && !cr.super.Match(text) {
				t.Errorf("%s: superset rejects %q which %q matches", cr.where, text, cr.src)
			}
		}
	}
	if matched < 50 {
		t.Errorf("only %d (regex, line) matches: the property is barely exercised", matched)
	}
	for _, cr := range f.fail {
		if cr.engine != engineBacktrack || cr.super == nil {
			t.Errorf("%q: engine %v, superset %v; want regexp2 with a superset", cr.src, cr.engine, cr.super != nil)
		}
	}
}

func TestHostileInput(t *testing.T) {
	l := &Loader{Location: time.UTC}
	sshd, err := l.Load("sshd[mode=aggressive]")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("Failed password for invalid user ", 30000) + "x from 192.0.2.1 port 22 ssh2"
	cases := []struct {
		name, line string
		ok         bool
	}{
		{"very long line", "Nov 26 21:19:40 h sshd[1]: " + long, true},
		{"very long junk", strings.Repeat("a", 1<<20), false},
		{"nul bytes", "Nov 26 21:19:40 h sshd[1]: Invalid user \x00root\x00 from 192.0.2.1 port 22", true},
		{"invalid utf-8", "Nov 26 21:19:40 h sshd[1]: Invalid user \xff\xfe from 192.0.2.1 port 22", true},
		{"only a date", "Nov 26 21:19:40", false},
		{"empty", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ok := sshd.Match(c.line, goldenRef)
			if ok != c.ok {
				t.Errorf("Match = %v, want %v", ok, c.ok)
			}
		})
	}

	t.Run("catastrophic backtracking times out", func(t *testing.T) {
		// The superset (the backreference as a wildcard) lets the line
		// through, so regexp2 runs and must give up after backtrackTimeout.
		f, err := l.Inline("evil", []string{`^(?:<HOST> )?(a|aa)+\1$`}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.Match(strings.Repeat("a", 40)+"!", goldenRef); ok {
			t.Error("matched")
		}
		if f.Timeouts() != 1 {
			t.Errorf("Timeouts() = %d, want 1: the pathological line did not hit the time limit", f.Timeouts())
		}
	})
	t.Run("superset keeps backtracking away", func(t *testing.T) {
		// Go's superset ^(a+)+$ rejects the line in linear time: regexp2
		// never runs, so there is no timeout.
		f, err := l.Inline("evil", []string{`^(?:<HOST> )?(?=a)(a+)+$`}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.Match(strings.Repeat("a", 40)+"!", goldenRef); ok {
			t.Error("matched")
		}
		if f.Timeouts() != 0 {
			t.Errorf("Timeouts() = %d, want 0", f.Timeouts())
		}
	})
}

func TestMatchConcurrent(t *testing.T) {
	f, err := (&Loader{Location: time.UTC}).Load("sshd")
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, "sshd.log")
	want := make([]netip.Addr, len(lines))
	for i, line := range lines {
		m, _ := f.Match(line, goldenRef)
		want[i] = m.Addr
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 50; r++ {
				for i, line := range lines {
					if m, _ := f.Match(line, goldenRef); m.Addr != want[i] {
						t.Errorf("concurrent Match(%q) = %v, want %v", line, m.Addr, want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzParseFilter(f *testing.F) {
	for _, name := range append(Builtins(), "common") {
		data, err := builtinFS.ReadFile("builtin/" + name + ".conf")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("[Definition]\nfailregex = ^x <HOST>$\n  (?P<a>b)(?P=a) <ADDR>\nignoreregex = %(failregex)s\n")
	f.Add("[Init]\nm = <m>\n[Definition]\nfailregex = <m>\n")
	f.Add("[INCLUDES]\nbefore = fuzz.conf\n[Definition]\nfailregex = %(known/failregex)s <HOST>\n")
	f.Fuzz(func(t *testing.T, text string) {
		doc := newIniDoc()
		if err := mergeIni(doc, builtinFS, "builtin/fuzz.conf", text, 0); err != nil {
			return
		}
		flt, err := (&Loader{Location: time.UTC}).build("fuzz", doc, nil)
		if err != nil {
			return
		}
		flt.Match("Nov 26 21:19:40 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2", goldenRef)
	})
}

func FuzzMatch(f *testing.F) {
	for _, c := range goldenCases {
		for _, line := range readLines(f, c.log) {
			f.Add(line)
		}
	}
	f.Add("Nov 26 21:19:40 h sshd[1]: Invalid user \x00 from ::ffff:192.0.2.1 port 22")
	sshd, err := (&Loader{Location: time.UTC}).Load("sshd[mode=aggressive]")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := sshd.Match(line, goldenRef)
		if !ok {
			return
		}
		if !m.Addr.IsValid() || m.Addr.IsUnspecified() || m.Addr.Is4In6() || m.Addr.Zone() != "" {
			t.Errorf("Match(%q) gave address %v", line, m.Addr)
		}
		if !bytes.Contains([]byte(line), []byte(m.User)) {
			t.Errorf("Match(%q) gave user %q, not in the line", line, m.User)
		}
	})
}
