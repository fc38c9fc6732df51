package emulate

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// TestStockReadTimeLogs covers what TestStockFiltersAgainstFail2banRegex
// must excuse: lines whose failure has no date of its own, so that
// fail2ban-regex prints the time it read them, which no second run
// reproduces (ejabberd's old two-line "=INFO REPORT====" format). Each log
// under testdata/stock/readtime is named like the stock sample logs; for it
// fail2ban-regex and moat regex must print the same -o '<fid>', the same
// Lines: summary and the same hit count for every failregex, and every
// failregex that the sample log of the same name in testdata/stock marks
// "# unreached" must have a hit here.
func TestStockReadTimeLogs(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: runs fail2ban-regex on sample logs")
	}
	logs, err := filepath.Glob(filepath.Join("testdata", "stock", "readtime", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatal("no sample logs in testdata/stock/readtime")
	}
	sort.Strings(logs)
	var jobs [][]string
	for _, log := range logs {
		spec := stockSpec(log)
		jobs = append(jobs,
			[]string{"-c", stockConfDir, "-o", "<fid>", log, spec},
			[]string{"-c", stockConfDir, "-v", log, spec})
	}
	runs := runF2bBatch(t, bin, jobs)
	for i, r := range runs {
		if r.Code != 0 {
			t.Fatalf("fail2ban-regex %q: exit %d: %s", jobs[i], r.Code, r.Stdout)
		}
	}
	for i, log := range logs {
		spec := stockSpec(log)
		withO, report := runs[2*i].Stdout, runs[2*i+1].Stdout
		t.Run(strings.TrimSuffix(filepath.Base(log), ".log"), func(t *testing.T) {
			moat := func(args ...string) string {
				r := moatRegex(t, nil, append([]string{"-c", stockConfDir}, args...)...)
				if r.code != 0 {
					t.Fatalf("moat regex %q: exit %d: %s", args, r.code, r.stderr)
				}
				return r.stdout
			}
			if withO == "" {
				t.Fatalf("fail2ban-regex -o '<fid>' found no failure in %s", log)
			}
			if got := moat("-o", "<fid>", log, spec); got != withO {
				t.Errorf("-o <fid> differs:\nmoat:\n%s\nfail2ban-regex:\n%s", got, withO)
			}
			mreport := moat("-v", log, spec)
			want := linesSummary.FindString(report)
			if want == "" {
				t.Fatalf("fail2ban-regex printed no Lines: summary:\n%s", report)
			}
			if got := linesSummary.FindString(mreport); got != want {
				t.Errorf("summary differs:\nmoat:           %s\nfail2ban-regex: %s", got, want)
			}
			hits, mhits := failregexHits(report), failregexHits(mreport)
			if len(hits) == 0 {
				t.Fatalf("no failregex rows in fail2ban-regex -v's Results:\n%s", report)
			}
			for n := 1; n <= len(hits); n++ {
				if mhits[n] != hits[n] {
					t.Errorf("failregex %d: moat counts %d hits, fail2ban-regex %d", n, mhits[n], hits[n])
				}
			}
			main, err := os.ReadFile(filepath.Join("testdata", "stock", filepath.Base(log)))
			if err != nil {
				t.Fatalf("no sample log of the same name in testdata/stock: %v", err)
			}
			for n := range unreachedRegexes(main) {
				if hits[n] == 0 {
					t.Errorf("failregex %d is unreached in testdata/stock/%s and has no hit here either", n, filepath.Base(log))
				}
			}
		})
	}
}
