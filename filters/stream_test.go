package filters

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// connConf is a filter written for these tests: app logs one connection
// per pid, and <F-MLFID> groups its lines.
const connConf = `[Definition]
prefregex = ^\s*\S+ app\[<F-MLFID>\d+</F-MLFID>\]: <F-CONTENT>.+</F-CONTENT>$
failregex = ^<F-NOFAIL>connect from</F-NOFAIL> <HOST>$
            ^auth failed(?: for <F-USER>\S+</F-USER>)?$
            ^<F-NOFAIL>auth note</F-NOFAIL> user <F-USER>\S+</F-USER>$
            ^<F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL>$
            ^<F-MLFFORGET><F-MLFGAINED>login ok</F-MLFGAINED></F-MLFFORGET> for <F-USER>\S+</F-USER>$
`

// maxlinesConf is a multi-line filter written for these tests.
const maxlinesConf = `[Definition]
failregex = ^ app: conn (?P<c>\d+) open from <HOST><SKIPLINES> app: conn (?P=c) login failed$
            ^ app: two-line failure\n app: peer <HOST>$
maxlines = 3
`

// loadConf writes conf to a temp filter.d and loads it as name.
func loadConf(t testing.TB, name, conf string) *Filter {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name+".conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := (&Loader{Dirs: []string{dir}, Location: time.UTC}).Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// streamFailures runs lines through a new Stream of f and lists the
// failures as "ADDR HH:MM:SS USER".
func streamFailures(f *Filter, lines []string) []string {
	ref := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	st := f.Stream()
	var got []string
	for _, l := range lines {
		if m, ok := st.Match(l, ref); ok {
			got = append(got, strings.TrimSpace(fmt.Sprintf("%s %s %s", m.Addr, m.Time.Format("15:04:05"), m.User)))
		}
	}
	return got
}

// The wants below are what fail2ban-regex 1.0.2 prints for the same lines
// and an identical filter file.
func TestStreamMLFID(t *testing.T) {
	f := loadConf(t, "conn", connConf)
	cases := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"address from an earlier line", []string{
			"Nov 26 10:00:01 host app[1]: connect from 192.0.2.1",
			"Nov 26 10:00:02 host app[1]: auth failed for x",
		}, []string{"192.0.2.1 10:00:02 x"}},
		{"pending failure counts when the address comes", []string{
			"Nov 26 10:00:03 host app[2]: auth failed",
			"Nov 26 10:00:04 host app[2]: connect from 192.0.2.2",
		}, []string{"192.0.2.2 10:00:04"}},
		{"forget closes the group", []string{
			"Nov 26 10:00:05 host app[3]: connect from 192.0.2.3",
			"Nov 26 10:00:06 host app[3]: closed",
			"Nov 26 10:00:07 host app[3]: auth failed",
		}, nil},
		{"gained success forgets", []string{
			"Nov 26 10:00:08 host app[4]: connect from 192.0.2.4",
			"Nov 26 10:00:09 host app[4]: login ok for bob",
			"Nov 26 10:00:10 host app[4]: auth failed",
		}, nil},
		{"nofail lines of two users are a failure", []string{
			"Nov 26 10:00:11 host app[5]: auth note user a",
			"Nov 26 10:00:12 host app[5]: auth note user b",
			"Nov 26 10:00:13 host app[5]: connect from 192.0.2.5",
		}, []string{"192.0.2.5 10:00:13 b"}},
		{"each failure of an open group counts", []string{
			"Nov 26 10:00:14 host app[6]: connect from 192.0.2.6",
			"Nov 26 10:00:15 host app[6]: auth failed for y",
			"Nov 26 10:00:16 host app[6]: auth failed for z",
		}, []string{"192.0.2.6 10:00:15 y", "192.0.2.6 10:00:16 z"}},
		{"groups are kept apart", []string{
			"Nov 26 10:00:01 host app[7]: connect from 192.0.2.7",
			"Nov 26 10:00:01 host app[8]: connect from 192.0.2.8",
			"Nov 26 10:00:02 host app[8]: auth failed",
			"Nov 26 10:00:02 host app[9]: auth failed",
		}, []string{"192.0.2.8 10:00:02"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := streamFailures(f, c.lines)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("Stream failures = %q, want %q", got, c.want)
			}
		})
	}
	// Filter.Match stays stateless: a line without an address is no failure.
	if _, ok := f.Match("Nov 26 10:00:02 host app[1]: auth failed for x", time.Now()); ok {
		t.Error("Filter.Match found a failure in a line without an address")
	}
}

func TestStreamMaxLines(t *testing.T) {
	f := loadConf(t, "ml", maxlinesConf)
	if f.MaxLines() != 3 {
		t.Fatalf("MaxLines() = %d, want 3", f.MaxLines())
	}
	cases := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"skiplines spans another connection's line, which stays buffered", []string{
			"Nov 26 10:00:01 app: conn 1 open from 192.0.2.1",
			"Nov 26 10:00:02 app: conn 2 open from 192.0.2.2",
			"Nov 26 10:00:03 app: conn 1 login failed",
			"Nov 26 10:00:04 app: conn 2 login failed",
		}, []string{"192.0.2.1 10:00:03", "192.0.2.2 10:00:04"}},
		{"a start more than maxlines back is gone", []string{
			"Nov 26 10:00:05 app: conn 3 open from 192.0.2.3",
			"Nov 26 10:00:06 app: noise a",
			"Nov 26 10:00:07 app: noise b",
			"Nov 26 10:00:08 app: conn 3 login failed",
		}, nil},
		{"two adjacent lines; matched lines leave the buffer", []string{
			"Nov 26 10:00:09 app: two-line failure",
			"Nov 26 10:00:10 app: peer 192.0.2.9",
			"Nov 26 10:00:11 app: peer 192.0.2.10",
		}, []string{"192.0.2.9 10:00:10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := streamFailures(f, c.lines)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("Stream failures = %q, want %q", got, c.want)
			}
		})
	}
	t.Run("consumed lines", func(t *testing.T) {
		st := f.Stream()
		var consumed []int
		for _, l := range []string{
			"Nov 26 10:00:01 app: conn 1 open from 192.0.2.1",
			"Nov 26 10:00:02 app: conn 2 open from 192.0.2.2",
			"Nov 26 10:00:03 app: conn 1 login failed",
			"Nov 26 10:00:04 app: noise",
		} {
			consumed = append(consumed, len(st.Examine(l, time.Now()).Consumed))
		}
		// The third line's match takes conn 1's first line, not conn 2's.
		if fmt.Sprint(consumed) != "[0 0 1 0]" {
			t.Errorf("Consumed per line = %v, want [0 0 1 0]", consumed)
		}
	})
	t.Run("buffer stays at maxlines", func(t *testing.T) {
		st := f.Stream()
		for i := range 1000 {
			st.Match(fmt.Sprintf("Nov 26 10:00:01 app: noise %d", i), time.Now())
		}
		if len(st.lines) != 3 {
			t.Errorf("buffered %d lines, want 3", len(st.lines))
		}
	})
}

// TestStreamStockSSHD runs fail2ban's own sshd filter, when installed, on
// lines written for this test, in each mode.
func TestStreamStockSSHD(t *testing.T) {
	if _, err := os.Stat(filepath.Join(stockFilterDir, "sshd.conf")); err != nil {
		testkit.Missing(t, "fail2ban's sshd.conf not installed")
	}
	lines := []string{
		`Nov 26 10:00:01 host sshd[1001]: Connection from 192.0.2.10 port 50000 on 198.51.100.1 port 22 rdomain ""`,
		`Nov 26 10:00:02 host sshd[1001]: kex_exchange_identification: Connection closed by remote host`,
		`Nov 26 10:00:03 host sshd[1002]: kex_exchange_identification: read: Connection reset by peer`,
		`Nov 26 10:00:04 host sshd[1002]: Connection closed by 192.0.2.11 port 50001`,
		`Nov 26 10:00:05 host sshd[1003]: Connection from 192.0.2.12 port 50002 on 198.51.100.1 port 22 rdomain ""`,
		`Nov 26 10:00:06 host sshd[1003]: Accepted publickey for alice from 192.0.2.12 port 50002 ssh2: ED25519 SHA256:abc`,
		`Nov 26 10:00:07 host sshd[1004]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.14  user=root`,
		`Nov 26 10:00:08 host sshd[1004]: Accepted password for root from 192.0.2.14 port 50004 ssh2`,
		`Nov 26 10:00:09 host sshd[1005]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.15  user=alice`,
		`Nov 26 10:00:10 host sshd[1005]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.15  user=bob`,
		`Nov 26 10:00:11 host sshd[1006]: Connection from 192.0.2.16 port 50006 on 198.51.100.1 port 22 rdomain ""`,
		`Nov 26 10:00:12 host sshd[1006]: Connection closed by 192.0.2.16 port 50006 [preauth]`,
		`Nov 26 10:00:13 host sshd[1006]: kex_exchange_identification: Connection closed by remote host`,
		`Nov 26 10:00:14 host sshd[1007]: Connection from 192.0.2.17 port 50007 on 198.51.100.1 port 22 rdomain ""`,
		`Nov 26 10:00:15 host sshd[1007]: Connection closed by 192.0.2.17 port 50007`,
		`Nov 26 10:00:16 host sshd[1008]: Failed password for invalid user admin from 192.0.2.18 port 50008 ssh2`,
		`Nov 26 10:00:17 host sshd[1009]: Failed publickey for carol from 192.0.2.19 port 50009 ssh2: RSA SHA256:xyz`,
		`Nov 26 10:00:18 host sshd[1009]: Failed password for carol from 192.0.2.19 port 50009 ssh2`,
	}
	common := []string{"192.0.2.15 10:00:10 bob", "192.0.2.18 10:00:16 admin", "192.0.2.19 10:00:18 carol"}
	ddos := []string{"192.0.2.10 10:00:02", "192.0.2.11 10:00:04", "192.0.2.15 10:00:10 bob",
		"192.0.2.16 10:00:12", "192.0.2.18 10:00:16 admin", "192.0.2.19 10:00:18 carol"}
	stock := &Loader{Dirs: []string{stockFilterDir}, Location: time.UTC}
	for _, c := range []struct {
		spec string
		want []string
	}{
		{"sshd", common},
		{"sshd[mode=ddos]", ddos},
		{"sshd[mode=aggressive]", ddos},
	} {
		t.Run(c.spec, func(t *testing.T) {
			f, err := stock.Load(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := streamFailures(f, lines)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("Stream failures =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestStreamBounds(t *testing.T) {
	f := loadConf(t, "conn", connConf)
	ref := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	t.Run("oldest group evicted past MaxGroups", func(t *testing.T) {
		st := f.Stream()
		st.MaxGroups = 2
		for i := 1; i <= 3; i++ {
			st.Match(fmt.Sprintf("Nov 26 10:00:01 host app[%d]: connect from 192.0.2.%d", i, i), ref)
		}
		if n := st.OpenGroups(); n != 2 {
			t.Errorf("OpenGroups() = %d, want 2", n)
		}
		if _, ok := st.Match("Nov 26 10:00:02 host app[1]: auth failed", ref); ok {
			t.Error("the evicted group 1 still gave its address")
		}
		if m, ok := st.Match("Nov 26 10:00:02 host app[3]: auth failed", ref); !ok || m.Addr.String() != "192.0.2.3" {
			t.Errorf("group 3: Match = %v, %v; want 192.0.2.3", m.Addr, ok)
		}
	})
	t.Run("group expires after GroupAge", func(t *testing.T) {
		st := f.Stream()
		st.Match("Nov 26 10:00:01 host app[1]: connect from 192.0.2.1", ref)
		if _, ok := st.Match("Nov 26 10:00:02 host app[1]: auth failed", ref.Add(DefaultGroupAge)); ok {
			t.Error("an expired group still gave its address")
		}
	})
	t.Run("many connections stay bounded", func(t *testing.T) {
		st := f.Stream()
		for i := range 10000 {
			st.Match(fmt.Sprintf("Nov 26 10:00:01 host app[%d]: connect from 192.0.2.1", i), ref)
			if i%3 == 0 {
				st.Match(fmt.Sprintf("Nov 26 10:00:01 host app[%d]: closed", i), ref)
			}
		}
		if n := st.OpenGroups(); n > DefaultMaxGroups {
			t.Errorf("OpenGroups() = %d, want at most %d", n, DefaultMaxGroups)
		}
		if len(st.order) > 2*DefaultMaxGroups+16 {
			t.Errorf("eviction queue holds %d keys", len(st.order))
		}
	})
}

// FuzzStream feeds arbitrary lines to a Stream after the table's lines:
// it must not panic, and its state must stay bounded.
func FuzzStream(f *testing.F) {
	for _, s := range []string{
		"Nov 26 10:00:01 host app[1]: connect from 192.0.2.1",
		"Nov 26 10:00:02 host app[1]: auth failed for x",
		"Nov 26 10:00:06 host app[3]: closed",
		"Nov 26 10:00:09 host app[4]: login ok for bob",
		"Nov 26 10:00:01 app: conn 1 open from 192.0.2.1\nNov 26 10:00:03 app: conn 1 login failed",
	} {
		f.Add(s)
	}
	conn := loadConf(f, "conn", connConf)
	ml := loadConf(f, "ml", maxlinesConf)
	ref := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		for _, flt := range []*Filter{conn, ml} {
			st := flt.Stream()
			st.MaxGroups = 4
			for _, l := range strings.Split(s, "\n") {
				st.Match(l, ref)
				st.Examine(l, ref)
			}
			if st.OpenGroups() > 4 || len(st.lines) > flt.MaxLines() {
				t.Fatalf("state grew: %d groups, %d lines", st.OpenGroups(), len(st.lines))
			}
		}
	})
}

// TestExamineLinesSameAsOneByOne: ExamineLines, with the matching on
// several goroutines, gives what Examine and ExamineAll give line by line,
// for every sample log (each repeated so that it spans many scan blocks).
func TestExamineLinesSameAsOneByOne(t *testing.T) {
	for _, j := range sampleLogJobs(t) {
		f, err := j.l.Load(j.spec)
		if err != nil {
			t.Fatalf("%s: %v", j.spec, err)
		}
		var lines []string
		for len(lines) < 5*scanBlock {
			lines = append(lines, readLinesAt(t, j.log)...)
		}
		for _, all := range []bool{false, true} {
			one := f.Stream()
			want := make([]Result, len(lines))
			for i, l := range lines {
				if all {
					want[i] = one.ExamineAll(l, goldenRef)
				} else {
					want[i] = one.Examine(l, goldenRef)
				}
			}
			got := make([]Result, len(lines))
			batch := f.Stream()
			// Two batches, the second reusing the first's space.
			half := len(lines) / 2
			batch.ExamineLines(lines[:half], goldenRef, all, 3, got[:half])
			batch.ExamineLines(lines[half:], goldenRef, all, 3, got[half:])
			if n := f.Timeouts(); n > 0 {
				t.Fatalf("%s: %d regexp2 timeouts: the comparison means nothing", j.spec, n)
			}
			for i := range lines {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("%s %s line %d (all=%v): ExamineLines %+v, one by one %+v", j.spec, j.log, i+1, all, got[i], want[i])
					break
				}
			}
		}
	}
}

// TestFilterAndStreamShareTheLoop: Filter.Examine and a Stream run the
// same matching loop, so they agree on a line without connection state,
// also where a prefregex's content is empty: fail2ban then runs the
// failregexes on the whole line (`if repl:` in its filter.py).
func TestFilterAndStreamShareTheLoop(t *testing.T) {
	f := loadConf(t, "empty", "[Definition]\n"+
		"prefregex = ^svc: (?:bad from \\S+ )?<F-CONTENT>.*</F-CONTENT>$\n"+
		"failregex = bad from <HOST>\n")
	ref := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		line string
		want string
	}{
		{"svc: bad from 192.0.2.7 ", "192.0.2.7"},
		{"svc: x bad from 192.0.2.8", "192.0.2.8"},
		{"svc: nothing", ""},
	} {
		got := f.Examine(c.line, ref)
		st := f.Stream().Examine(c.line, ref)
		st.PrefMatched = false // only a Stream reports it
		if !reflect.DeepEqual(got, st) {
			t.Errorf("%q: Filter.Examine %+v, Stream.Examine %+v", c.line, got, st)
		}
		if addr := got.Match.Addr; got.Failure != (c.want != "") || got.Failure && addr.String() != c.want {
			t.Errorf("%q: failure %v %v, want %q", c.line, got.Failure, addr, c.want)
		}
	}
}
