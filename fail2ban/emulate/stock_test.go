package emulate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
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

// f2bBatch is a Python program that runs fail2ban-regex's own command line
// (fail2ban.client.fail2banregex.exec_command_line) once per argument list
// read as JSON from stdin, and writes what each printed and its exit code:
// one interpreter start for every sample log instead of two each (Python
// and fail2ban's imports take most of a second; a run takes milliseconds).
const f2bBatch = `import contextlib, io, json, logging, sys
from fail2ban.client import fail2banregex
out = []
for argv in json.load(sys.stdin):
    buf, code = io.StringIO(), 0
    log = logging.getLogger("fail2ban")
    had = list(log.handlers)
    with contextlib.redirect_stdout(buf):
        try:
            fail2banregex.exec_command_line(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    for h in log.handlers[:]:
        if h not in had:
            log.removeHandler(h)
    out.append({"stdout": buf.getvalue(), "code": code})
json.dump(out, sys.stdout)
`

// f2bRun is what one fail2ban-regex run printed and returned.
type f2bRun struct {
	Stdout string `json:"stdout"`
	Code   int    `json:"code"`
}

// runF2bBatch runs every argument list through fail2ban-regex's command
// line in one Python process: the interpreter named on bin's #! line.
func runF2bBatch(t *testing.T, bin string, jobs [][]string) []f2bRun {
	t.Helper()
	script, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(script), "\n")
	python, ok := strings.CutPrefix(first, "#!")
	if !ok {
		t.Fatalf("%s: no #! line naming its Python", bin)
	}
	prog := filepath.Join(t.TempDir(), "batch.py")
	if err := os.WriteFile(prog, []byte(f2bBatch), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(python)
	cmd := exec.Command(fields[0], append(fields[1:], prog)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("run fail2ban-regex's command line in %s: %v: %s", python, err, errb.String())
	}
	var runs []f2bRun
	if err := json.Unmarshal(out.Bytes(), &runs); err != nil || len(runs) != len(jobs) {
		t.Fatalf("fail2ban-regex batch: %d results for %d runs (%v): %s", len(runs), len(jobs), err, errb.String())
	}
	return runs
}

// processedIn is fail2ban-regex's timing line, which differs run to run.
var processedIn = regexp.MustCompile(`(?m)^\[processed in .*\]$`)

// TestStockFiltersAgainstFail2banRegex runs fail2ban-regex and moat regex on
// every sample log under testdata/stock with the stock filter of Debian's
// fail2ban the log is named after, and requires the same
// -o '<fid>\t<time>' output and the same whole report, plain, with -v and
// with -v --print-all-matched --print-all-missed (but for the
// "[processed in …]" timing line). Each log must have matched
// and missed lines, and must hit every failregex of its filter unless a
// "# unreached: N" comment line in the log names it.
//
// fail2ban-regex runs in one Python process for all logs (see f2bBatch);
// one log is also run through the real fail2ban-regex program, and both
// must print the same, so the batch stands for the program.
func TestStockFiltersAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs fail2ban-regex on every sample log")
	}
	logs, err := filepath.Glob(filepath.Join("testdata", "stock", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		testkit.Missing(t, "no sample logs in testdata/stock")
	}
	sort.Strings(logs)
	const tmpl = `<fid>\t<time>`
	var jobs [][]string
	for _, log := range logs {
		spec := stockSpec(log)
		jobs = append(jobs,
			[]string{"-c", stockConfDir, "-o", tmpl, log, spec},
			[]string{"-c", stockConfDir, "-v", log, spec},
			[]string{"-c", stockConfDir, log, spec},
			[]string{"-c", stockConfDir, "-v", "--print-all-matched", "--print-all-missed", log, spec},
			[]string{"-c", stockConfDir, "-o", "msg", log, spec},
			[]string{"-c", stockConfDir, "-o", "row", log, spec})
	}
	runs := runF2bBatch(t, bin, jobs)
	for i, r := range runs {
		if r.Code != 0 {
			t.Fatalf("fail2ban-regex %q: exit %d: %s", jobs[i], r.Code, r.Stdout)
		}
	}
	// The batch must print what the program prints.
	cmd := exec.Command(bin, jobs[1]...)
	real, err := cmd.Output()
	if err != nil {
		t.Fatalf("fail2ban-regex %q: %v", jobs[1], err)
	}
	if got, want := processedIn.ReplaceAllString(runs[1].Stdout, ""), processedIn.ReplaceAllString(string(real), ""); got != want {
		t.Fatalf("fail2ban-regex's command line run in one process printed\n%s\nthe program printed\n%s", got, want)
	}

	// moat names the log's encoding from the locale, as Python does: give
	// it the locale the batch ran in.
	locale := map[string]string{}
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		locale[k] = os.Getenv(k)
	}
	for i, log := range logs {
		spec := stockSpec(log)
		const perLog = 6
		withO, report, plain, all, msg, row := runs[perLog*i].Stdout, runs[perLog*i+1].Stdout, runs[perLog*i+2].Stdout, runs[perLog*i+3].Stdout, runs[perLog*i+4].Stdout, runs[perLog*i+5].Stdout
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
			moat := func(args ...string) string {
				r := moatRegex(t, locale, append([]string{"-c", stockConfDir}, args...)...)
				if r.code != 0 {
					t.Fatalf("moat regex %q: exit %d: %s", args, r.code, r.stderr)
				}
				return r.stdout
			}
			if got := moat("-o", tmpl, log, spec); got != withO {
				t.Errorf("-o %s differs:\nmoat:\n%s\nfail2ban-regex:\n%s", tmpl, got, withO)
			}
			// -o msg lists every line of a failure, those of its
			// connection group and of a multi-line match included.
			if d := reportDiff(msg, moat("-o", "msg", log, spec)); d != "" {
				t.Errorf("-o msg differs (- fail2ban-regex, + moat):\n%s", d)
			}
			// -o row prints fail2ban's dictionary of each failure; the
			// order of a set in it is Python's hash order, which changes
			// run to run.
			if d := reportDiff(sortedSets(row), sortedSets(moat("-o", "row", log, spec))); d != "" {
				t.Errorf("-o row differs (- fail2ban-regex, + moat):\n%s", d)
			}
			want := linesSummary.FindStringSubmatch(report)
			if want == nil {
				t.Fatalf("fail2ban-regex printed no Lines: summary:\n%s", report)
			}
			if d := reportDiff(plain, moat(log, spec)); d != "" {
				t.Errorf("moat regex %s %s differs from fail2ban-regex (- fail2ban-regex, + moat):\n%s", log, spec, d)
			}
			if d := reportDiff(report, moat("-v", log, spec)); d != "" {
				t.Errorf("moat regex -v %s %s differs from fail2ban-regex (- fail2ban-regex, + moat):\n%s", log, spec, d)
			}
			if d := reportDiff(all, moat("-v", "--print-all-matched", "--print-all-missed", log, spec)); d != "" {
				t.Errorf("moat regex -v --print-all-matched --print-all-missed %s %s differs from fail2ban-regex (- fail2ban-regex, + moat):\n%s", log, spec, d)
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

// reportDiff compares two regex reports line by line, without their
// timing lines, and returns the lines that differ ("" if none): each
// differing line number with fail2ban-regex's line (-) and moat's (+).
func reportDiff(want, got string) string {
	w := strings.Split(processedIn.ReplaceAllString(want, ""), "\n")
	g := strings.Split(processedIn.ReplaceAllString(got, ""), "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 12; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || (i < len(w)) != (i < len(g)) {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

// TestRegexReportOptionsAgainstFail2banRegex compares moat regex's whole
// report with fail2ban-regex's (in one Python batch) for what the sample
// logs do not reach: several failregexes hitting one line ("multiple regex
// matched"), ignoreregexes counted per failregex hit or checked up front,
// -L and -d given on the command line, an ignoreregex argument, a line
// given as text to a multi-line filter, and dates in many formats without
// a datepattern (fail2ban's whole template list, reordered as it goes).
func TestRegexReportOptionsAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs fail2ban-regex")
	}
	dir := t.TempDir()
	writeFile(t, dir, "filter.d/multi.conf", `[Definition]
failregex = ^\s*fail from <HOST>
            ^\s*fail from <ADDR>
            ^\s*<F-NOFAIL>fail</F-NOFAIL> from <HOST>
            ^\s*fail \S+ <HOST>$
ignoreregex = ^\s*fail from 192\.0\.2\.9$
              ^never
`)
	writeFile(t, dir, "filter.d/upfront.conf", `[Definition]
failregex = ^\s*fail from <HOST>
            ^\s*fail from <ADDR>
            ^\s*<F-NOFAIL>fail</F-NOFAIL> from <HOST>
            ^\s*fail \S+ <HOST>$
            ^x <HOST>
ignoreregex = 192\.0\.2\.9
              fail
`)
	log := writeFile(t, dir, "multi.log", "Nov 26 21:00:01 fail from 192.0.2.1\nNov 26 21:00:02 fail from 192.0.2.9\nNov 26 21:00:03 other\nNov 26 21:00:04 fail from 198.51.100.7\n")
	dates := writeFile(t, dir, "dates.log", strings.Join([]string{
		"Nov 26 21:00:01 host sshd[1]: fail from 192.0.2.1",
		"2026-11-26 21:00:02 fail from 192.0.2.2",
		"2026-11-26T21:00:03.123+01:00 fail from 192.0.2.3",
		"[26/Nov/2026:21:00:04 +0000] fail from 192.0.2.4",
		"Thu Nov 26 21:00:05 2026 fail from 192.0.2.5",
		"1764190806 fail from 192.0.2.6",
		"[1764190807] fail from 192.0.2.7",
		"host: 26-Nov-2026 21:00:08 fail from 192.0.2.8",
		"x 2026/11/26 21:00:09 fail from 192.0.2.9",
		"261126 21:00:10 fail from 192.0.2.10",
		"Nov 26 2026 21:00:11 fail from 192.0.2.11",
		"PDT Nov 26 21:00:13 fail from 192.0.2.13",
		"@4000000069277c8000000000 fail from 192.0.2.14",
		"Nov 26 21:00:15 host sshd[1]: fail from 192.0.2.15",
		"client 192.0.2.16 at 2026-11-26 21:00:16 fail from 192.0.2.16",
		"Nov 26 21:00:24 host sshd[1]: fail from 192.0.2.24",
		"2026-11-26 21:00:25 fail from 192.0.2.25",
		"11/26/2026:21:00:26 fail from 192.0.2.26",
		"11-26-2026 21:00:27.5 fail from 192.0.2.27",
		"Nov 26, 2026 9:00:28 PM fail from 192.0.2.28",
		"<11/26/26@21:00:29> fail from 192.0.2.29",
		"Nov-26-26 21:00:30 fail from 192.0.2.30",
		"20261126T210031 fail from 192.0.2.31",
		"+0100 Nov 26 21:00:32 fail from 192.0.2.32",
		"Nov 26 21:00:33 host sshd[1]: fail from 192.0.2.33",
	}, "\n")+"\n")
	sshd := filepath.Join("testdata", "stock", "sshd.log")
	line := "Nov 26 21:00:01 srv sshd[1]: Invalid user x from 192.0.2.1 port 1"
	ids := writeFile(t, dir, "ids.log", "Nov 26 21:00:01 app: login failed id=abc42\nNov 26 21:00:02 app: login failed id=192.0.2.5\nNov 26 21:00:03 app: login ok id=abc42\n")
	const idRegex = `login failed id=<F-ID>\S+</F-ID>`
	cases := []struct {
		name string
		args []string
	}{
		{"several regexes hit a line", []string{"-c", dir, log, "multi"}},
		{"an id for an address -o fid", []string{"-o", "<fid>", ids, idRegex}},
		{"an id for an address -o row", []string{"-o", "row", ids, idRegex}},
		{"an id for an address", []string{"-v", ids, idRegex}},
		{"several regexes hit a line -v", []string{"-c", dir, "-v", log, "multi"}},
		{"ignoreregexes first", []string{"-c", dir, "-v", log, "upfront"}},
		{"ignoreregex argument", []string{"-c", stockConfDir, "-v", sshd, "sshd", "Connection from"}},
		{"maxlines option", []string{"-c", stockConfDir, "-L", "2", sshd, "sshd"}},
		{"datepattern option", []string{"-c", stockConfDir, "-v", "-d", "{^LN-BEG}%b %d %H:%M:%S", sshd, "sshd"}},
		{"regex argument", []string{"-v", "--print-all-missed", sshd, `^\S+ \S+ \S+ \S+ \S+ from <HOST>`}},
		{"default date templates", []string{"-v", dates, "fail from <HOST>"}},
		{"line to a multi-line filter", []string{"-c", stockConfDir, "-L", "2", line, "sshd"}},
		{"single line", []string{"-c", stockConfDir, line, "sshd"}},
	}
	var jobs [][]string
	for _, c := range cases {
		jobs = append(jobs, c.args)
	}
	runs := runF2bBatch(t, bin, jobs)
	locale := map[string]string{}
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		locale[k] = os.Getenv(k)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if runs[i].Code != 0 {
				t.Fatalf("fail2ban-regex %q: exit %d: %s", c.args, runs[i].Code, runs[i].Stdout)
			}
			r := moatRegex(t, locale, c.args...)
			if r.code != 0 {
				t.Fatalf("moat regex %q: exit %d: %s", c.args, r.code, r.stderr)
			}
			if d := reportDiff(runs[i].Stdout, r.stdout); d != "" {
				t.Errorf("moat regex %q differs from fail2ban-regex (- fail2ban-regex, + moat):\n%s", c.args, d)
			}
		})
	}
}

// pySet is a Python set of strings as repr prints it in a -o row line.
var pySet = regexp.MustCompile(`': \{('[^{}]*')\}`)

// sortedSets sorts the elements of every set in -o row output.
func sortedSets(s string) string {
	return pySet.ReplaceAllStringFunc(s, func(m string) string {
		inner := strings.TrimSuffix(strings.TrimPrefix(m, "': {"), "}")
		items := strings.Split(inner, ", ")
		sort.Strings(items)
		return "': {" + strings.Join(items, ", ") + "}"
	})
}

func TestSortedSets(t *testing.T) {
	in := "['192.0.2.1',\t1.0,\t{'user': 'b', 'users': {'b', 'a'}}],"
	want := "['192.0.2.1',\t1.0,\t{'user': 'b', 'users': {'a', 'b'}}],"
	if got := sortedSets(in); got != want {
		t.Errorf("sortedSets(%q) = %q, want %q", in, got, want)
	}
}
