package filters

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLineGate(t *testing.T) {
	cases := []struct {
		name  string
		srcs  []string
		pass  []string
		block []string
	}{
		{"literal", []string{`Failed password`}, []string{"x Failed password y"}, []string{"Failed passwor", "failed password", ""}},
		{"anchors loosened", []string{`^from (\d+)$`}, []string{"from 12", "xx from 12 yy"}, []string{"from x"}},
		{"word boundaries loosened", []string{`\broot\b`, `\Bx\B`}, []string{"roots", "aroot", "axa", "x"}, []string{"rot"}},
		{"union", []string{`^a+b`, `c{2,}`}, []string{"zab", "cc"}, []string{"c b", "acb"}},
		{"case folding", []string{`(?i)invalid user`}, []string{"INVALID USER x", "Invalid User"}, []string{"invalid-user"}},
		{"unicode", []string{`é+ from`, `\w+ß`}, []string{"café from", "straße", "x éé from y"}, []string{"cafe from", "strasse"}},
		{"any but newline", []string{`a.b`}, []string{"a€b", "a b"}, []string{"a\nb", "ab"}},
		{"invalid utf-8 read as U+FFFD", []string{`a.b`}, []string{"a\xffb"}, []string{"a\xff\xffb"}},
		{"lazy and greedy the same", []string{`x.*?y`, `p.+q`}, []string{"x--y", "pzq"}, []string{"yx", "pq"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newLineGate(c.srcs)
			if g == nil {
				t.Fatalf("no gate for %q", c.srcs)
			}
			for round := range 2 {
				for _, s := range c.pass {
					if !g.mayMatch([]byte(s)) {
						t.Errorf("round %d: %q rejected", round, s)
					}
				}
				for _, s := range c.block {
					if g.mayMatch([]byte(s)) {
						t.Errorf("round %d: %q let through", round, s)
					}
				}
			}
		})
	}
	for _, srcs := range [][]string{{`x*`}, {`abc`, `^$`}, {`(`}, nil} {
		if newLineGate(srcs) != nil {
			t.Errorf("%q: want no gate (it matches the empty text, does not parse or is empty)", srcs)
		}
	}
}

// TestLineGateCacheReset: past maxGateStates a cache starts again and
// still answers right.
func TestLineGateCacheReset(t *testing.T) {
	// Unanchored, a[ab]{11}x must remember which of the last 12 letters
	// were a's: 4096 states, more than a cache holds.
	const src = `a[ab]{11}x`
	g := newLineGate([]string{src})
	re := regexp.MustCompile(src)
	rnd := rand.New(rand.NewPCG(1, 2))
	resets := 0
	for range 3000 {
		b := make([]byte, 40)
		for i := range b {
			b[i] = "ab"[rnd.IntN(2)]
		}
		b[rnd.IntN(len(b))] = 'x'
		c := g.get()
		before := len(c.pcs)
		g.put(c)
		if got, want := g.mayMatch(b), re.Match(b); got != want {
			t.Fatalf("%q: mayMatch = %v, want %v", b, got, want)
		}
		c = g.get()
		if len(c.pcs) < before {
			resets++
		}
		g.put(c)
	}
	if resets == 0 {
		t.Errorf("the cache never started again past %d states", maxGateStates)
	}
}

// sampleLogJob is a filter and a sample log of it.
type sampleLogJob struct {
	spec string
	l    *Loader
	log  string
}

// sampleLogJobs lists, with loaders whose backtracking regexes do not time
// out on a loaded machine, the built-ins' sample logs and, where Debian's
// fail2ban is installed, every stock filter's sample log of moat regex's
// tests (named after the filter: sshd@mode=ddos.log is for
// sshd[mode=ddos]).
func sampleLogJobs(t *testing.T) []sampleLogJob {
	var jobs []sampleLogJob
	for _, c := range goldenCases {
		jobs = append(jobs, sampleLogJob{c.spec, &Loader{Location: time.UTC, MatchTimeout: time.Minute}, filepath.Join("testdata", c.log)})
	}
	if _, err := os.Stat("/etc/fail2ban/filter.d/sshd.conf"); err != nil {
		return jobs
	}
	stock, err := filepath.Glob(filepath.Join("..", "fail2ban", "emulate", "testdata", "stock", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, log := range stock {
		base := strings.TrimSuffix(filepath.Base(log), ".log")
		name, opts, ok := strings.Cut(base, "@")
		spec := name
		if ok {
			spec += "[" + strings.Join(strings.Split(opts, "@"), ", ") + "]"
		}
		jobs = append(jobs, sampleLogJob{spec, &Loader{Dirs: []string{"/etc/fail2ban/filter.d"}, Location: time.UTC, MatchTimeout: time.Minute}, log})
	}
	return jobs
}

// TestGateChangesNoResult runs every sample log through its filter with the
// line gate and without it: every Result, in Examine and ExamineAll, must be
// the same (see sampleLogJobs for the logs).
func TestGateChangesNoResult(t *testing.T) {
	jobs := sampleLogJobs(t)
	gated := 0
	for _, j := range jobs {
		f, err := j.l.Load(j.spec)
		if err != nil {
			t.Fatalf("%s: %v", j.spec, err)
		}
		if f.lines == nil {
			continue
		}
		gated++
		bare, err := j.l.Load(j.spec)
		if err != nil {
			t.Fatal(err)
		}
		bare.lines = nil
		lines := readLinesAt(t, j.log)
		for _, all := range []bool{false, true} {
			s1, s2 := f.Stream(), bare.Stream()
			for n, line := range lines {
				var r1, r2 Result
				s1.examine(line, goldenRef, &r1, all)
				s2.examine(line, goldenRef, &r2, all)
				if !all {
					// Examine may skip a prefregex no failregex
					// can follow.
					r1.PrefMatched, r2.PrefMatched = false, false
				}
				if !reflect.DeepEqual(r1, r2) {
					t.Errorf("%s %s:%d (all=%v): with the gate %+v, without %+v", j.spec, j.log, n+1, all, r1, r2)
				}
			}
		}
		for n, line := range lines {
			if r1, r2 := f.Examine(line, goldenRef), bare.Examine(line, goldenRef); !reflect.DeepEqual(r1, r2) {
				t.Errorf("%s %s:%d Filter.Examine: with the gate %+v, without %+v", j.spec, j.log, n+1, r1, r2)
			}
		}
	}
	if gated < len(goldenCases) {
		t.Errorf("only %d of %d filters got a gate", gated, len(jobs))
	}
	t.Logf("%d of %d filters gated", gated, len(jobs))
}

// TestGatesKeepLinesIgnoredFirst: where fail2ban checks the ignoreregexes
// before the failregexes, a line an ignoreregex matches is counted
// ignored even when it lacks what every failregex needs; no gate may drop
// it first.
func TestGatesKeepLinesIgnoredFirst(t *testing.T) {
	f, err := (&Loader{Location: time.UTC}).Inline("t", []string{
		`^sshd: \S+ one from <HOST>$`, `^sshd: \S+ two from <HOST>$`,
		`^sshd: \S+ three from <HOST>$`, `^sshd: \S+ four from <HOST>$`,
	}, []string{`maintenance window`})
	if err != nil {
		t.Fatal(err)
	}
	if f.gate == nil {
		t.Fatal("want a common literal gate for the test to mean something")
	}
	line := "Nov 26 10:00:00 cron: maintenance window"
	if r := f.Examine(line, goldenRef); !r.Ignored {
		t.Errorf("Filter.Examine: %+v, want Ignored", r)
	}
	for _, all := range []bool{false, true} {
		var r Result
		f.Stream().examine(line, goldenRef, &r, all)
		if !r.Ignored {
			t.Errorf("Stream (all=%v): %+v, want Ignored", all, r)
		}
	}
}
