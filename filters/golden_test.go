package filters

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenRef is the reference time of the golden runs: the sample logs are
// from the day before.
var goldenRef = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

// goldenCases pairs each sample log with the filter spec it is read with.
var goldenCases = []struct{ spec, log, golden string }{
	{"sshd", "sshd.log", "sshd.golden"},
	{"sshd[mode=aggressive]", "sshd.log", "sshd-aggressive.golden"},
	{"sshd[mode=ddos]", "sshd.log", "sshd-ddos.golden"},
	{"nginx-http-auth", "nginx-http-auth.log", "nginx-http-auth.golden"},
	{"nginx-limit-req", "nginx-limit-req.log", "nginx-limit-req.golden"},
	{"nginx-limit-req[zones=login]", "nginx-limit-req.log", "nginx-limit-req-login.golden"},
	{"nginx-botsearch", "nginx-botsearch.log", "nginx-botsearch.golden"},
}

func readLines(t testing.TB, name string) []string {
	t.Helper()
	return readLinesAt(t, filepath.Join("testdata", name))
}

func readLinesAt(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// TestGolden checks each built-in filter against its sample log: the
// golden file (addr, time, user per failure) is the specification.
func TestGolden(t *testing.T) {
	l := &Loader{Location: time.UTC}
	for _, c := range goldenCases {
		t.Run(c.spec, func(t *testing.T) {
			f, err := l.Load(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, line := range readLines(t, c.log) {
				m, ok := f.Match(line, goldenRef)
				if !ok {
					continue
				}
				fmt.Fprintf(&b, "%s\t%s\t%s\n", m.Addr, m.Time.UTC().Format(time.RFC3339Nano), m.User)
			}
			path := filepath.Join("testdata", c.golden)
			if *update {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("Load(%q) on %s:\ngot:\n%s\nwant:\n%s", c.spec, c.log, got, want)
			}
		})
	}
}
