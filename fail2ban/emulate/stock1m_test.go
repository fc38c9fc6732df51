package emulate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moatproj/moat/filters/testgen"

	"github.com/moatproj/moat/internal/testkit"
)

// sshdModeKey is a "mdre-<mode> =" line of the stock sshd filter: the
// failregexes each value of its mode parameter adds ("mdre-<mode>-other"
// lines do not match: a mode name has no dash).
var sshdModeKey = regexp.MustCompile(`(?m)^mdre-([A-Za-z0-9_]+)[ \t]*=`)

// sshdModes returns the modes an sshd filter file defines, in file order.
func sshdModes(conf []byte) []string {
	var modes []string
	for _, m := range sshdModeKey.FindAllSubmatch(conf, -1) {
		modes = append(modes, string(m[1]))
	}
	return modes
}

func TestSSHDModes(t *testing.T) {
	cases := []struct {
		name, conf string
		want       []string
	}{
		{"stock layout", "mdre-normal =\nmdre-normal-other = ^x\nmdre-ddos = ^a\n  ^b\nmdre-ddos-other = ^c\n# mdre-commented = x\nmode = normal\n", []string{"normal", "ddos"}},
		{"no modes", "failregex = ^x\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := sshdModes([]byte(c.conf)); strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("sshdModes = %q, want %q", got, c.want)
			}
		})
	}
}

func TestDescribeDiff(t *testing.T) {
	cases := []struct {
		name, got, want string
		has             []string
	}{
		{"equal", "192.0.2.1\n192.0.2.2\n", "192.0.2.1\n192.0.2.2\n", nil},
		{"one missing", "192.0.2.1\n192.0.2.3\n", "192.0.2.1\n192.0.2.2\n192.0.2.3\n", []string{
			"moat printed 2 lines, fail2ban-regex 3", "first difference at line 2",
			"192.0.2.2: moat printed it 0 times, fail2ban-regex 1"}},
		{"one extra at the end", "192.0.2.1\n2001:db8::1\n", "192.0.2.1\n", []string{
			"first difference at line 2", `"(none)"`, "2001:db8::1: moat printed it 1 times, fail2ban-regex 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := describeDiff([]byte(c.got), []byte(c.want))
			if (d == "") != (c.has == nil) {
				t.Fatalf("describeDiff = %q", d)
			}
			for _, h := range c.has {
				if !strings.Contains(d, h) {
					t.Errorf("describeDiff does not say %q:\n%s", h, d)
				}
			}
		})
	}
}

// stock1MLines is the size of the generated log: the acceptance criterion of
// moat regex is stated on a 1M-line auth.log.
const stock1MLines = 1_000_000

// stock1MPrefix is how many of its first lines also get fail2ban-regex's
// Lines: summary, to show that each mode matches, ignores and misses lines,
// and to compare moat's summary with it (-o ip shows only the matches; the
// summary of the whole log would double the test's time).
const stock1MPrefix = 50_000

// TestSSHD1MLineEquality runs the real fail2ban-regex program
// and moat regex with -o ip on a generated 1M-line auth.log
// (testgen.GenerateSSHDLog: interleaved multi-line sshd connections among
// other programs' lines) with Debian's stock sshd.conf in every mode the
// file defines, and requires byte-identical output; on the log's first 50k
// lines it also requires the same Lines: summary. Each mode must print a
// substantial number of addresses and a different list than every other
// mode, and fail2ban-regex's summary of the log's first lines must show
// matched, ignored and missed lines in each mode. fail2ban-regex (about 20k
// lines/s here) runs for two modes at a time.
func TestSSHD1MLineEquality(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs fail2ban-regex on a 1M-line log in every sshd mode (about two minutes)")
	}
	conf := filepath.Join(stockConfDir, "filter.d", "sshd.conf")
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatalf("fail2ban-regex is installed but its sshd filter is not readable: %v", err)
	}
	modes := sshdModes(text)
	if len(modes) < 2 {
		t.Fatalf("%s defines modes %q: want normal and at least one more (mdre-<mode> = lines)", conf, modes)
	}

	dir := t.TempDir()
	log := filepath.Join(dir, "auth.log")
	prefix := filepath.Join(dir, "auth-prefix.log")
	writeGenerated(t, log, stock1MLines)
	writeGenerated(t, prefix, stock1MPrefix)

	slots := make(chan struct{}, 2) // fail2ban-regex runs at once
	outs := make([][]byte, len(modes))
	t.Run("mode", func(t *testing.T) {
		for i, mode := range modes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				spec := conf + "[mode=" + mode + "]"
				slots <- struct{}{}
				want := runF2bProgram(t, bin, "-o", "ip", log, spec)
				summary := runF2bProgram(t, bin, prefix, spec)
				<-slots
				outs[i] = want

				r := moatRegex(t, nil, "-o", "ip", log, spec)
				if r.code != 0 {
					t.Fatalf("moat regex -o ip %s: exit %d: %s", spec, r.code, r.stderr)
				}
				if d := describeDiff([]byte(r.stdout), want); d != "" {
					t.Errorf("moat regex -o ip and fail2ban-regex -o ip differ on the 1M-line log with %s:\n%s", spec, d)
				}

				if n := bytes.Count(want, []byte("\n")); n < stock1MLines/100 {
					t.Errorf("%s: fail2ban-regex printed %d addresses for %d lines: the log exercises too little", spec, n, stock1MLines)
				}
				m := linesSummary.FindSubmatch(summary)
				if m == nil {
					t.Fatalf("fail2ban-regex %s printed no Lines: summary:\n%s", spec, summary)
				}
				if got := linesSummary.FindString(moatRegex(t, nil, prefix, spec).stdout); got != string(m[0]) {
					t.Errorf("summary of the first %d lines with %s differs:\nmoat:           %s\nfail2ban-regex: %s", stock1MPrefix, spec, got, m[0])
				}
				for k, what := range []string{"ignored", "matched", "missed"} {
					if n, _ := strconv.Atoi(string(m[2+k])); n < stock1MPrefix/100 {
						t.Errorf("%s: only %d of the first %d lines %s (%s): the log must exercise every outcome", spec, n, stock1MPrefix, what, m[0])
					}
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	for i := range modes {
		for j := i + 1; j < len(modes); j++ {
			if bytes.Equal(outs[i], outs[j]) {
				t.Errorf("modes %s and %s print the same addresses: the log has no line that tells them apart", modes[i], modes[j])
			}
		}
	}
}

// writeGenerated writes testgen.GenerateSSHDLog's first n lines (seed 42)
// to path.
func writeGenerated(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := testgen.GenerateSSHDLog(f, n, 42); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// runF2bProgram runs the fail2ban-regex program and returns its standard
// output.
func runF2bProgram(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("fail2ban-regex %q: %v: %s", args, err, errb.String())
	}
	return out.Bytes()
}

// describeDiff says how got (moat's output) differs from want
// (fail2ban-regex's): the line counts, the first differing line with some
// context, and the addresses whose number of lines differs. It returns ""
// when they are equal.
func describeDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	g, w := splitLines(got), splitLines(want)
	var b strings.Builder
	fmt.Fprintf(&b, "moat printed %d lines, fail2ban-regex %d\n", len(g), len(w))
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	fmt.Fprintf(&b, "first difference at line %d:\n", i+1)
	for k := max(0, i-3); k < i+4 && (k < len(g) || k < len(w)); k++ {
		fmt.Fprintf(&b, "  %7d  moat %-40q fail2ban-regex %q\n", k+1, at(g, k), at(w, k))
	}
	// Addresses whose number of lines differs, in fail2ban-regex's order
	// and then moat's.
	inG, inW := map[string]int{}, map[string]int{}
	for _, l := range g {
		inG[l]++
	}
	for _, l := range w {
		inW[l]++
	}
	shown := map[string]bool{}
	for _, l := range slices.Concat(w, g) {
		if inG[l] != inW[l] && !shown[l] && len(shown) < 10 {
			shown[l] = true
			fmt.Fprintf(&b, "  %s: moat printed it %d times, fail2ban-regex %d\n", l, inG[l], inW[l])
		}
	}
	return b.String()
}

func splitLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// at is line k of lines, or "(none)" past the end.
func at(lines []string, k int) string {
	if k < len(lines) {
		return lines[k]
	}
	return "(none)"
}
