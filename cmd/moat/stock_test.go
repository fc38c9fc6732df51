package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// stockConfDir is where Debian's fail2ban package installs its filters.
const stockConfDir = "/etc/fail2ban"

// stockSpec turns a sample log's name into the filter it is for: the base
// name is the filter, and each "@key=value" after it is a filter option, so
// "sshd@mode=aggressive.log" is "sshd[mode=aggressive]".
func stockSpec(logName string) string {
	base := strings.TrimSuffix(filepath.Base(logName), ".log")
	name, opts, ok := strings.Cut(base, "@")
	if !ok {
		return name
	}
	return name + "[" + strings.Join(strings.Split(opts, "@"), ", ") + "]"
}

func TestStockSpec(t *testing.T) {
	cases := []struct{ name, log, want string }{
		{"plain", "testdata/stock/sshd.log", "sshd"},
		{"one option", "sshd@mode=aggressive.log", "sshd[mode=aggressive]"},
		{"two options", "x@a=1@b=2.log", "x[a=1, b=2]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := stockSpec(c.log); got != c.want {
				t.Errorf("stockSpec(%q) = %q, want %q", c.log, got, c.want)
			}
		})
	}
}

// linesSummary is the "Lines: ..." line of a regex report.
var linesSummary = regexp.MustCompile(`(?m)^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed$`)

// regexHits matches one failregex row of fail2ban-regex -v's Results block:
// "|   3) [2] ^regex...".
var regexHits = regexp.MustCompile(`^\|\s+(\d+)\) \[(\d+)\] `)

// failregexHits reads the hit count of every failregex from the Results
// block of fail2ban-regex -v (which lists regexes without hits too).
func failregexHits(report string) map[int]int {
	hits := map[int]int{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(report))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "Failregex: "):
			in = true
		case in && l == "`-":
			return hits
		case in:
			if m := regexHits.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[1])
				h, _ := strconv.Atoi(m[2])
				hits[n] = h
			}
		}
	}
	return hits
}

// unreachedRegexes reads the "# unreached: 3, 7" comment lines of a sample
// log: failregexes of the stock filter the log deliberately does not hit
// (the comment should say why). fail2ban-regex and moat both skip comment
// lines.
func unreachedRegexes(log []byte) map[int]bool {
	out := map[int]bool{}
	for _, l := range strings.Split(string(log), "\n") {
		rest, ok := strings.CutPrefix(l, "# unreached:")
		if !ok {
			continue
		}
		for _, f := range strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == ' ' }) {
			if n, err := strconv.Atoi(f); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// TestStockFiltersAgainstFail2banRegex runs the real fail2ban-regex and moat
// regex on every sample log under testdata/stock with the stock filter of
// Debian's fail2ban the log is named after, and requires the same
// -o '<fid>\t<time>' output and the same Lines: summary. Each log must
// have matched and missed lines, and must hit every failregex of its filter
// unless a "# unreached: N" comment line in the log names it.
func TestStockFiltersAgainstFail2banRegex(t *testing.T) {
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban-regex not installed (CI installs Debian's fail2ban): comparison skipped")
	}
	if testing.Short() {
		t.Skip("short: runs two Python processes per sample log")
	}
	logs, err := filepath.Glob(filepath.Join("testdata", "stock", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Skip("no sample logs in testdata/stock")
	}
	sort.Strings(logs)
	// fail2ban-regex takes most of a second to start; -parallel bounds the
	// subtests already, this bounds the Python processes should it be high.
	sem := make(chan struct{}, 4)
	for _, log := range logs {
		spec := stockSpec(log)
		t.Run(strings.TrimSuffix(filepath.Base(log), ".log"), func(t *testing.T) {
			t.Parallel()
			name, _, _ := strings.Cut(spec, "[")
			if _, err := os.Stat(filepath.Join(stockConfDir, "filter.d", name+".conf")); err != nil {
				t.Fatalf("no stock filter for %s: %v", log, err)
			}
			text, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			f2b := func(args ...string) string {
				sem <- struct{}{}
				defer func() { <-sem }()
				cmd := exec.Command(bin, append([]string{"-c", stockConfDir}, args...)...)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					t.Fatalf("fail2ban-regex %q: %v: %s%s", args, err, out.String(), errb.String())
				}
				return out.String()
			}
			moat := func(args ...string) string {
				r := cli(t, nil, append([]string{"regex", "-c", stockConfDir}, args...)...)
				if r.code != 0 {
					t.Fatalf("moat regex %q: exit %d: %s", args, r.code, r.stderr)
				}
				return r.stdout
			}
			const tmpl = `<fid>\t<time>`
			if want, got := f2b("-o", tmpl, log, spec), moat("-o", tmpl, log, spec); got != want {
				t.Errorf("-o %s differs:\nmoat:\n%s\nfail2ban-regex:\n%s", tmpl, got, want)
			}

			report := f2b("-v", log, spec)
			want := linesSummary.FindStringSubmatch(report)
			if want == nil {
				t.Fatalf("fail2ban-regex printed no Lines: summary:\n%s", report)
			}
			got := linesSummary.FindString(moat(log, spec))
			if got != want[0] {
				t.Errorf("summary differs:\nmoat:           %s\nfail2ban-regex: %s", got, want[0])
			}
			if want[3] == "0" {
				t.Errorf("no line matches %s: the log exercises nothing (%s)", spec, want[0])
			}
			if want[4] == "0" {
				t.Errorf("no line of the log is missed: add lines %s must not match (%s)", spec, want[0])
			}
			hits := failregexHits(report)
			if len(hits) == 0 {
				t.Fatalf("no failregex rows in fail2ban-regex -v's Results:\n%s", report)
			}
			skip := unreachedRegexes(text)
			for n := 1; n <= len(hits); n++ {
				switch {
				case hits[n] == 0 && !skip[n]:
					t.Errorf("failregex %d of %s has no hit: add a line for it, or a line \"# unreached: %d\" saying why", n, spec, n)
				case hits[n] > 0 && skip[n]:
					t.Errorf("failregex %d of %s is marked unreached but has %d hits", n, spec, hits[n])
				}
			}
		})
	}
}
