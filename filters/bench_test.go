package filters

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/filters/testgen"

	"github.com/moatproj/moat/internal/testkit"
)

var (
	authLogOnce  sync.Once
	authLogLines []string
)

// authLog returns a generated auth.log of a million lines, built once.
func authLog(b *testing.B) []string {
	authLogOnce.Do(func() {
		var buf bytes.Buffer
		if err := testgen.GenerateAuthLog(&buf, 1_000_000, 42); err != nil {
			b.Fatal(err)
		}
		authLogLines = strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	})
	return authLogLines
}

// BenchmarkSSHD1M matches the built-in sshd filter over a million mixed
// auth.log lines (about 15% failures) per iteration and reports lines/s.
func BenchmarkSSHD1M(b *testing.B) {
	lines := authLog(b)
	f, err := (&Loader{Location: time.UTC}).Load("sshd")
	if err != nil {
		b.Fatal(err)
	}
	benchLines(b, lines, func() func(string, time.Time) (Match, bool) { return f.Match })
}

// benchLines runs a matcher (a fresh one per pass, from next) over lines
// b.N times and reports lines/s and the share of failures.
func benchLines(b *testing.B, lines []string, next func() func(string, time.Time) (Match, bool)) {
	ref := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	matched := 0
	for i := 0; i < b.N; i++ {
		matched = 0
		match := next()
		for _, l := range lines {
			if _, ok := match(l, ref); ok {
				matched++
			}
		}
	}
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(len(lines)*b.N)/elapsed, "lines/s")
	b.ReportMetric(float64(matched)/float64(len(lines)), "failures/line")
}

// BenchmarkMatchNoFailure is the common case: a line no failregex matches.
func BenchmarkMatchNoFailure(b *testing.B) {
	f, err := (&Loader{Location: time.UTC}).Load("sshd")
	if err != nil {
		b.Fatal(err)
	}
	line := "Nov 26 21:07:00 gw CRON[2001]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
	ref := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		f.Match(line, ref)
	}
}

// BenchmarkMatchFailure is a line that is a failure.
func BenchmarkMatchFailure(b *testing.B) {
	f, err := (&Loader{Location: time.UTC}).Load("sshd")
	if err != nil {
		b.Fatal(err)
	}
	line := "Nov 26 21:01:14 gw sshd[1010]: Failed password for invalid user admin from 192.0.2.10 port 40001 ssh2"
	ref := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f.Match(line, ref); !ok {
			b.Fatal("no match")
		}
	}
}

// BenchmarkStreamSSHD1M is BenchmarkSSHD1M through a Stream: with moat's
// sshd filter, and with fail2ban's (<F-MLFID> groups per sshd pid) when it
// is installed.
func BenchmarkStreamSSHD1M(b *testing.B) {
	lines := authLog(b)
	for _, c := range []struct {
		name string
		l    *Loader
	}{
		{"moat", &Loader{Location: time.UTC}},
		{"fail2ban", &Loader{Dirs: []string{stockFilterDir}, Location: time.UTC}},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.name == "fail2ban" {
				if _, err := os.Stat(stockFilterDir + "/sshd.conf"); err != nil {
					testkit.Missing(b, "fail2ban's sshd.conf not installed")
				}
			}
			f, err := c.l.Load("sshd")
			if err != nil {
				b.Fatal(err)
			}
			benchLines(b, lines, func() func(string, time.Time) (Match, bool) { return f.Stream().Match })
		})
	}
}
