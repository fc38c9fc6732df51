package emulate

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/filters/testgen"

	"github.com/moatproj/moat/internal/testkit"
)

// regexLog is a small log with a failure, an ignored line and a missed one.
const regexLog = `2026-11-26 21:00:01 host app: login failed for alice from 192.0.2.7
2026-11-26 21:00:02 host app: login failed for bob from 198.51.100.9
# a comment: neither counted nor matched

2026-11-26 21:00:03 host app: login failed for probe from 203.0.113.5
2026-11-26 21:00:04 host app: all good
`

// localEpoch is how moat regex prints the time of a date read in time.Local.
func localEpoch(y int, mo time.Month, d, h, m, s int) string {
	return strconv.FormatInt(time.Date(y, mo, d, h, m, s, 0, time.Local).Unix(), 10) + ".0"
}

func TestRegexOutputs(t *testing.T) {
	dir := t.TempDir()
	log := writeFile(t, dir, "app.log", regexLog)
	const failre = `login failed for <F-USER>\S+</F-USER> from <HOST>$`
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"ip", []string{"-o", "ip", log, failre}, "192.0.2.7\n198.51.100.9\n203.0.113.5\n"},
		{"fid with ignoreregex", []string{"-o", "fid", log, failre, "for probe "}, "192.0.2.7\n198.51.100.9\n"},
		{"user tag", []string{"-o", "user", log, failre}, "alice\nbob\nprobe\n"},
		{"absent tag is None", []string{"-o", "ip6", log, failre}, "None\nNone\nNone\n"},
		{"msg", []string{"-o", "msg", log, failre, "probe|bob"},
			"2026-11-26 21:00:01 host app: login failed for alice from 192.0.2.7\n"},
		{"template", []string{"-o", `<fid>\t<time> <F-USER> <nosuch>`, log, failre, "bob|probe"},
			"192.0.2.7\\t" + localEpoch(2026, 11, 26, 21, 0, 1) + " alice <nosuch>\n"},
		{"single line", []string{"-o", "ip", "Nov 26 21:00:00 h app: login failed for x from 2001:db8::5", failre}, "2001:db8::5\n"},
		{"single line missed", []string{"-o", "ip", "Nov 26 21:00:00 h app: all good", failre}, ""},
		{"flags after positionals", []string{log, failre, "-o", "ip", "-r"}, "192.0.2.7\n198.51.100.9\n203.0.113.5\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := moatRegex(t, nil, c.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != c.want {
				t.Errorf("stdout:\n%q\nwant\n%q", r.stdout, c.want)
			}
		})
	}
}

func TestRegexResults(t *testing.T) {
	dir := t.TempDir()
	log := writeFile(t, dir, "app.log", regexLog)
	const failre = `login failed for \S+ from <HOST>$`
	r := moatRegex(t, nil, "--print-all-matched", log, failre, "for probe ")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"\nRunning tests\n=============\n\nUse   failregex line : login failed for \\S+ from <HOST>$\nUse ignoreregex line : for probe \nUse         log file : " + log + "\nUse         encoding : utf-8\n\n",
		"\nResults\n=======\n\nFailregex: 2 total\n|-  #) [# of hits] regular expression\n|   1) [2] " + failre + "\n`-\n",
		"\nIgnoreregex: 1 total\n|-  #) [# of hits] regular expression\n|   1) [1] for probe \n`-\n",
		"\nLines: 4 lines, 1 ignored, 2 matched, 1 missed\n[processed in ",
		"|- Matched line(s):\n|  2026-11-26 21:00:01 host app: login failed for alice from 192.0.2.7\n|  2026-11-26 21:00:02 host app: login failed for bob from 198.51.100.9\n`-\n",
		"|- Ignored line(s):\n|  2026-11-26 21:00:03 host app: login failed for probe from 203.0.113.5\n`-\n",
		"|- Missed line(s):\n|  2026-11-26 21:00:04 host app: all good\n`-\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks\n%s\n--- output:\n%s", want, r.stdout)
		}
	}
	// --print-no-missed/-ignored drop the lists; -L lowers the print limit.
	r = moatRegex(t, nil, "--print-no-missed", "--print-no-ignored", log, failre, "for probe ")
	if strings.Contains(r.stdout, "Missed line(s)") || strings.Contains(r.stdout, "Ignored line(s)") {
		t.Errorf("--print-no-*: still lists lines:\n%s", r.stdout)
	}
	r = moatRegex(t, nil, "-L", "1", log, failre)
	if !strings.Contains(r.stdout, "Use         maxlines : 1\n") ||
		!strings.Contains(r.stdout, "Missed line(s): too many to print.  Use --print-all-missed to print all 1 lines") {
		t.Errorf("-L 1:\n%s", r.stdout)
	}
	// -v lists every regex and the failures it found.
	r = moatRegex(t, nil, "-v", log, failre+"|never <HOST> here")
	if !strings.Contains(r.stdout, "    192.0.2.7  "+time.Date(2026, 11, 26, 21, 0, 1, 0, time.Local).Format("Mon Jan 02 15:04:05 2006")) {
		t.Errorf("-v lacks the failure list:\n%s", r.stdout)
	}
}

func TestRegexFilterLookup(t *testing.T) {
	cfg := t.TempDir()
	writeFile(t, cfg, "filter.d/myapp.conf", `[Init]
who = \S+
[Definition]
failregex = login failed for %(who)s from <HOST>$
`)
	log := writeFile(t, t.TempDir(), "app.log", regexLog)
	cases := []struct {
		name, spec string
		extra      []string
		header     string
		lines      string
	}{
		{"name in -c DIR", "myapp", nil, "Use   failregex filter file : myapp, basedir: " + cfg + "\n", "Lines: 4 lines, 0 ignored, 3 matched, 1 missed"},
		{"name with options", "myapp[who=alice]", nil, "Use   filter options : {'who': 'alice'}\n", "Lines: 4 lines, 0 ignored, 1 matched, 3 missed"},
		{"file path", filepath.Join(cfg, "filter.d", "myapp.conf"), nil, "Use   failregex filter file : myapp, basedir: " + cfg + "\n", "Lines: 4 lines, 0 ignored, 3 matched, 1 missed"},
		{"built-in", "sshd", nil, "Use   failregex filter file : built-in sshd (none in " + filepath.Join(cfg, "filter.d") + ")\n", "Lines: 4 lines, 0 ignored, 0 matched, 4 missed"},
		{"regex with a date pattern", `failed for \S+ from <HOST>`, []string{"-d", "^%Y-%m-%d %H:%M:%S"}, "Use   failregex line : failed for \\S+ from <HOST>\n", "Lines: 4 lines, 0 ignored, 3 matched, 1 missed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"-c", cfg}, c.extra...)
			r := moatRegex(t, nil, append(args, log, c.spec)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, c.header) || !strings.Contains(r.stdout, "\n"+c.lines+"\n") {
				t.Errorf("want %q and %q in:\n%s", c.header, c.lines, r.stdout)
			}
		})
	}
	// A name that is neither a filter nor a regex with a host is an error.
	if r := moatRegex(t, nil, "-c", cfg, log, "nosuchfilter"); r.code != 1 || !strings.Contains(r.stderr, "nosuchfilter") {
		t.Errorf("unknown filter: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := moatRegex(t, nil, log); r.code != 2 {
		t.Errorf("missing FILTER: exit %d, want 2", r.code)
	}
}

// TestRegexAgainstFail2banRegex runs the real fail2ban-regex on the sample
// logs, with moat's built-in filter files (copied into a filter.d) and with
// the stock ones, and requires moat regex to print the same -o ip and
// -o '<fid>\t<time>' output and the same Lines: summary.
func TestRegexAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs a Python process per case")
	}
	testdata := filepath.Join("..", "..", "filters", "testdata")
	builtin := t.TempDir()
	if err := os.MkdirAll(filepath.Join(builtin, "filter.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	confs, _ := filepath.Glob(filepath.Join("..", "..", "filters", "builtin", "*.conf"))
	for _, c := range confs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, builtin, filepath.Join("filter.d", filepath.Base(c)), string(b))
	}
	type tc struct {
		cfg, spec, log string
		extra          []string // options before LOG
	}
	var cases []tc
	for _, s := range []struct{ spec, log string }{
		{"sshd", "sshd.log"}, {"sshd[mode=aggressive]", "sshd.log"}, {"sshd[mode=ddos]", "sshd.log"},
		{"sshd[mode=extra]", "sshd.log"},
		{"nginx-http-auth", "nginx-http-auth.log"}, {"nginx-limit-req", "nginx-limit-req.log"},
		{"nginx-limit-req[zones=login]", "nginx-limit-req.log"}, {"nginx-botsearch", "nginx-botsearch.log"},
	} {
		if !strings.Contains(s.spec, "zones") && !strings.Contains(s.spec, "extra") {
			if _, err := os.Stat("/etc/fail2ban/filter.d/sshd.conf"); err == nil {
				cases = append(cases, tc{"/etc/fail2ban", s.spec, s.log, nil})
			}
		}
		if s.spec != "sshd[mode=extra]" {
			cases = append(cases, tc{builtin, s.spec, s.log, nil})
		}
	}
	if _, err := os.Stat("/etc/fail2ban/filter.d/sshd.conf"); err == nil {
		cases = append(cases, tc{"/etc/fail2ban", "sshd[mode=extra]", "sshd.log", nil},
			tc{"/etc/fail2ban", "nginx-limit-req", "nginx-limit-req.log", []string{"-d", "^%Y/%m/%d %H:%M:%S"}})
	}
	// A generated auth.log, larger and more varied than the sample, with
	// sshd in every mode.
	var gen bytes.Buffer
	if err := testgen.GenerateAuthLog(&gen, 3000, 7); err != nil {
		t.Fatal(err)
	}
	genLog := writeFile(t, t.TempDir(), "auth.log", gen.String())
	for _, mode := range []string{"normal", "ddos", "extra", "aggressive"} {
		if _, err := os.Stat("/etc/fail2ban/filter.d/sshd.conf"); err == nil {
			cases = append(cases, tc{"/etc/fail2ban", "sshd[mode=" + mode + "]", genLog, nil})
		}
		if mode != "extra" {
			cases = append(cases, tc{builtin, "sshd[mode=" + mode + "]", genLog, nil})
		}
	}
	for _, c := range cases {
		name := c.cfg + " " + c.spec
		if filepath.IsAbs(c.log) {
			name += " generated"
		}
		if c.extra != nil {
			name += " " + strings.Join(c.extra, " ")
		}
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			t.Parallel()
			log := c.log
			if !filepath.IsAbs(log) {
				log = filepath.Join(testdata, c.log)
			}
			f2b := func(args ...string) string {
				cmd := exec.Command(bin, append(append([]string{"-c", c.cfg}, c.extra...), args...)...)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					t.Fatalf("fail2ban-regex %q: %v: %s%s", args, err, out.String(), errb.String())
				}
				return out.String()
			}
			moat := func(args ...string) string {
				r := moatRegex(t, nil, append(append([]string{"-c", c.cfg}, c.extra...), args...)...)
				if r.code != 0 {
					t.Fatalf("moat regex %q: exit %d: %s", args, r.code, r.stderr)
				}
				return r.stdout
			}
			// fail2ban-regex prints the failure id for -o ip (its data
			// has no "ip" key), so the template covers -o ip on the
			// samples; the generated log checks -o ip itself.
			outs := []string{`<fid>\t<time>`}
			if filepath.IsAbs(c.log) {
				outs = []string{"ip"}
			}
			for _, o := range outs {
				want, got := f2b("-o", o, log, c.spec), moat("-o", o, log, c.spec)
				if want == "" {
					t.Errorf("-o %s: fail2ban-regex found nothing: the sample exercises nothing", o)
				}
				if got != want {
					t.Errorf("-o %s differs:\nmoat:\n%s\nfail2ban-regex:\n%s", o, got, want)
				}
			}
			summary := func(s string) string {
				for _, l := range strings.Split(s, "\n") {
					if strings.HasPrefix(l, "Lines: ") {
						return l
					}
				}
				return "(no Lines: line)"
			}
			want, got := summary(f2b(log, c.spec)), summary(moat(log, c.spec))
			if got != want {
				t.Errorf("summary differs:\nmoat:           %s\nfail2ban-regex: %s", got, want)
			}
		})
	}
}

// FuzzRegexLine runs moat regex on one arbitrary log line: it must not
// fail, must count the line once (unless it is blank or a comment), and
// -o must print at most one failure for it.
func FuzzRegexLine(f *testing.F) {
	for _, s := range []string{
		"2026-11-26 21:00:01 host app: login failed for alice from 192.0.2.7",
		"Nov 26 21:00:00 h app: login failed for x from 2001:db8::5",
		"login failed for 999.1.2.3 from 999.1.2.3",
		"login failed for a from ::",
		"# comment", "", "\x00\xff",
	} {
		f.Add(s)
	}
	const failre = `login failed for <F-USER>\S+</F-USER> from <HOST>$`
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n") {
			return // several lines: counted as such
		}
		if _, err := os.Stat(line); err == nil {
			return // LOG names a file
		}
		var out bytes.Buffer
		if err := runRegex(&out, regexOpts{out: `<fid> <time> <F-USER>`, printLimit: 20}, line, failre, nil, time.Now); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); n > 1 {
			t.Fatalf("-o printed %d lines for one line: %q", n, out.String())
		}
		out.Reset()
		if err := runRegex(&out, regexOpts{printLimit: 20}, line, failre, nil, time.Now); err != nil {
			t.Fatal(err)
		}
		want := "\nLines: 1 lines, "
		if trimmed := strings.TrimRight(line, "\r\n"); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			want = "\nLines: 0 lines, "
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("want %q in:\n%s", want, out.String())
		}
	})
}

// TestRegexResultsBlockAgainstFail2banRegex compares the whole output of
// moat regex with fail2ban-regex's for inline regexes, byte for byte but
// for the timing line.
func TestRegexResultsBlockAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs a Python process per case")
	}
	log := filepath.Join("..", "..", "filters", "testdata", "sshd.log")
	normalize := normalizeReport
	cases := []struct {
		name string
		args []string
	}{
		{"regex and ignoreregex", []string{log, `Failed \S+ for .* from <HOST>`, `for invalid user`}},
		{"print all", []string{"--print-all-matched", "--print-all-missed", log, `[iI]nvalid user <F-USER>\S+</F-USER> from <HOST>`}},
		{"print none", []string{"--print-no-missed", "--print-no-ignored", log, `from <HOST> port \d+`, `Accepted`}},
		{"single line", []string{"Nov 26 21:01:10 gw sshd[1010]: Failed password for invalid user admin from 192.0.2.10 port 40001 ssh2", `from <HOST> port`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			cmd := exec.Command(bin, c.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("fail2ban-regex: %v: %s", err, out.String())
			}
			r := moatRegex(t, nil, c.args...)
			if r.code != 0 {
				t.Fatalf("moat regex: exit %d: %s", r.code, r.stderr)
			}
			if got, want := normalize(r.stdout), normalize(out.String()); got != want {
				t.Errorf("output differs:\n--- moat:\n%s\n--- fail2ban-regex:\n%s", got, want)
			}
		})
	}
}

// TestRegexMultiLineSummary: lines a multi-line (maxlines) match used up
// count as matched, as in fail2ban-regex's summary.
func TestRegexMultiLineSummary(t *testing.T) {
	testkit.Fail2banRegex(t)
	dir := t.TempDir()
	filter := filepath.Join(dir, "twoline.conf")
	logf := filepath.Join(dir, "app.log")
	if err := os.WriteFile(filter, []byte("[Definition]\nfailregex = ^login attempt from <HOST>\\n.*access denied$\nmaxlines = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := "login attempt from 203.0.113.44\naccess denied\nunrelated\nlogin attempt from 203.0.113.45\naccess denied\n"
	if err := os.WriteFile(logf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	summary := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "Lines: ") {
				return l
			}
		}
		return ""
	}
	peer, err := exec.Command("fail2ban-regex", logf, filter).Output()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v", err)
	}
	r := moatRegex(t, nil, logf, filter)
	if got, want := summary(r.stdout), summary(string(peer)); got == "" || got != want {
		t.Errorf("moat regex summary %q, fail2ban-regex %q", got, want)
	}
}

func TestLocaleEncoding(t *testing.T) {
	for env, want := range map[string]string{
		"": "utf-8", "C": "utf-8", "POSIX": "utf-8", "C.UTF-8": "UTF-8", "en_US.utf8": "UTF-8", "de_DE.ISO-8859-1": "utf-8",
	} {
		if got := localeEncoding(func(k string) string {
			if k == "LANG" {
				return env
			}
			return ""
		}); got != want {
			t.Errorf("LANG=%q: localeEncoding = %q, want %q", env, got, want)
		}
	}
	if got := localeEncoding(func(k string) string { return map[string]string{"LC_ALL": "C", "LANG": "C.UTF-8"}[k] }); got != "utf-8" {
		t.Errorf("LC_ALL wins over LANG: got %q", got)
	}
}
