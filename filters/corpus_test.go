package filters

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// fail2banCorpus is where Debian's fail2ban package keeps the sample logs
// of its own test suite, one per stock filter.
const fail2banCorpus = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"

// minAgreeingStockFilters is a ratchet: how many stock filters must give
// exactly fail2ban-regex's failures on fail2ban's own sample logs (88 of
// 93 with fail2ban 1.0.2, matched through a Stream).
const minAgreeingStockFilters = 88

// TestStockFiltersOnFail2banCorpus runs every stock filter on fail2ban's
// own sample log, in moat and in fail2ban-regex, and compares. It takes
// about 30 s, so it runs only with MOAT_FAIL2BAN_CORPUS=1, and in CI.
func TestStockFiltersOnFail2banCorpus(t *testing.T) {
	if testkit.Race() {
		// Matching under the race detector passes the match timeout on
		// some lines; the comparison runs in the plain run.
		t.Skip("the fail2ban comparison runs without -race")
	}
	if os.Getenv("MOAT_FAIL2BAN_CORPUS") == "" && !testkit.CI() {
		t.Skip("set MOAT_FAIL2BAN_CORPUS=1 to compare every stock filter with fail2ban-regex (about 30 s)")
	}
	testkit.Fail2banRegex(t)
	logs := fail2banCorpus
	ents, err := os.ReadDir(logs)
	if err != nil {
		testkit.Missing(t, "no fail2ban corpus: %v", err)
	}
	stock := &Loader{Dirs: []string{stockFilterDir}, Location: time.Local}
	same, diff, skip := 0, 0, 0
	for _, e := range ents {
		name := e.Name()
		if _, err := os.Stat(filepath.Join(stockFilterDir, name+".conf")); err != nil || e.IsDir() {
			skip++
			continue
		}
		logPath := filepath.Join(logs, name)
		// A line without a date of its own is dated now, by each tool
		// at its own moment: such times are compared as "now".
		start := time.Now()
		out, err := exec.Command("fail2ban-regex", "-o", "<ip>\t<time>\t<F-USER>", logPath, filepath.Join(stockFilterDir, name+".conf")).CombinedOutput()
		if err != nil {
			t.Logf("%s: fail2ban-regex: %v %s", name, err, strings.SplitN(string(out), "\n", 2)[0])
			skip++
			continue
		}
		want := parseOracle(t, out)
		ref := time.Now()
		f, err := stock.Load(name)
		if err != nil {
			t.Logf("%s: moat: %v", name, err)
			diff++
			continue
		}
		var got []string
		st := f.Stream()
		for _, line := range readCompleteLines(t, logPath) {
			if line == "" || strings.HasPrefix(line, "#") {
				continue // fail2ban-regex skips them (they matter to maxlines)
			}
			if m, ok := st.Match(line, ref); ok {
				got = append(got, fmt.Sprintf("%s\t%d\t%s", m.Addr, m.Time.Unix(), m.User))
			}
		}
		got, want = nearNow(got, start), nearNow(want, start)
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			same++
			continue
		}
		diff++
		gs := map[string]int{}
		for _, g := range got {
			gs[g]++
		}
		ws := map[string]int{}
		for _, w := range want {
			ws[w]++
		}
		var onlyMoat, onlyF2b []string
		for k, v := range gs {
			if ws[k] < v {
				onlyMoat = append(onlyMoat, k)
			}
		}
		for k, v := range ws {
			if gs[k] < v {
				onlyF2b = append(onlyF2b, k)
			}
		}
		t.Logf("%s: moat %d fail2ban %d; only moat %d %q; only f2b %d %q", name, len(got), len(want), len(onlyMoat), first(onlyMoat), len(onlyF2b), first(onlyF2b))
	}
	t.Logf("same %d, differ %d, skipped %d", same, diff, skip)
	if same < minAgreeingStockFilters {
		t.Errorf("%d stock filters agree with fail2ban-regex, want at least %d", same, minAgreeingStockFilters)
	}
}

func first(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}

// readCompleteLines reads path's lines as fail2ban does: a last line without
// its newline is still being written, so it is not read.
func readCompleteLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.LastIndexByte(string(data), '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(data) == 0 {
		lines = nil
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// nearNow writes the times of entries ("addr\ttime\tuser") from start
// until a few seconds from now as "now".
func nearNow(entries []string, start time.Time) []string {
	lo, hi := start.Add(-2*time.Second).Unix(), time.Now().Add(2*time.Second).Unix()
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e
		f := strings.SplitN(e, "\t", 3)
		if len(f) == 3 {
			if sec, err := strconv.ParseInt(f[1], 10, 64); err == nil && sec >= lo && sec <= hi {
				out[i] = f[0] + "\tnow\t" + f[2]
			}
		}
	}
	return out
}
