package follow

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive one pass at a time (cycle) on real files, so what the
// follower sees between two passes is exact.

// fakeClock is the only fake: the drain timer.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type stepper struct {
	t   *testing.T
	f   *Follower
	out chan Line
	clk *fakeClock
}

func newStepper(t *testing.T, patterns []string, saved []Position) (*stepper, *logBuf) {
	logs, log := newLog()
	clk := &fakeClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f := New(patterns, saved, Options{Logger: log, Poll: time.Hour, DrainQuiet: 10 * time.Second, Now: clk.Now})
	f.resume()
	t.Cleanup(f.closeAll)
	return &stepper{t: t, f: f, out: make(chan Line, 1<<16), clk: clk}, logs
}

// step runs one full pass and returns the lines it delivered.
func (s *stepper) step() []Line {
	s.t.Helper()
	for {
		more, err := s.f.cycle(context.Background(), s.out, true)
		if err != nil {
			s.t.Fatal(err)
		}
		if !more {
			break
		}
	}
	var got []Line
	for {
		select {
		case l := <-s.out:
			got = append(got, l)
		default:
			return got
		}
	}
}

func texts(ls []Line) []string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Text)
	}
	return s
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	must(t, err)
	_, err = f.WriteString(s)
	must(t, err)
	must(t, f.Close())
}

func TestPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	appendFile(t, path, "one\ntw")
	s, _ := newStepper(t, []string{path}, nil)
	if got := texts(s.step()); strings.Join(got, "|") != "one" {
		t.Fatalf("first pass = %q, want [one]: a half-written line must wait", got)
	}
	appendFile(t, path, "o\nthr")
	got := s.step()
	if strings.Join(texts(got), "|") != "two" {
		t.Fatalf("second pass = %q, want [two]", texts(got))
	}
	if got[0].Pos.Offset != int64(len("one\ntwo\n")) {
		t.Errorf("offset = %d, want %d", got[0].Pos.Offset, len("one\ntwo\n"))
	}

	// Rotated away with a partial last line: held while the file may still
	// grow, delivered when it has been quiet for DrainQuiet.
	must(t, os.Rename(path, path+".1"))
	appendFile(t, path, "new\n")
	if got := texts(s.step()); strings.Join(got, "|") != "new" {
		t.Fatalf("after rotation = %q, want [new]", got)
	}
	appendFile(t, path+".1", "ee")
	s.clk.add(9 * time.Second)
	if got := texts(s.step()); len(got) != 0 {
		t.Fatalf("before DrainQuiet = %q, want nothing", got)
	}
	s.clk.add(9 * time.Second) // 9s since the last growth
	if got := texts(s.step()); len(got) != 0 {
		t.Fatalf("9s after the last growth = %q, want nothing", got)
	}
	s.clk.add(2 * time.Second)
	got = s.step()
	if strings.Join(texts(got), "|") != "three" {
		t.Fatalf("at drain end = %q, want [three]", texts(got))
	}
	if got[0].Pos.Path != path || got[0].Pos.Offset != int64(len("one\ntwo\nthree")) {
		t.Errorf("partial line pos = %+v, want logical path and offset at end of file", got[0].Pos)
	}
	if files := s.f.Files(); len(files) != 1 {
		t.Errorf("Files() = %v, want only %s", files, path)
	}
}

func TestLongLineAndBytes(t *testing.T) {
	long := strings.Repeat("y", 3*MaxLine+17)
	odd := "nul\x00here\xff\xfe\xc3(invalid)\r"
	path := filepath.Join(t.TempDir(), "a.log")
	appendFile(t, path, long[:MaxLine/2]) // arrives in pieces
	s, _ := newStepper(t, []string{path}, nil)
	if got := s.step(); len(got) != 0 {
		t.Fatalf("got %d lines before the newline", len(got))
	}
	appendFile(t, path, long[MaxLine/2:]+"\n"+odd+"\n"+long+"\nend\n")
	got := s.step()
	want := []struct {
		text string
		off  int
	}{
		{long[:MaxLine], len(long) + 1},
		{odd, len(long) + 1 + len(odd) + 1},
		{long[:MaxLine], 2*(len(long)+1) + len(odd) + 1},
		{"end", 2*(len(long)+1) + len(odd) + 1 + 4},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Text != w.text {
			t.Errorf("line %d: text %.30q (len %d), want %.30q (len %d)", i, got[i].Text, len(got[i].Text), w.text, len(w.text))
		}
		if got[i].Pos.Offset != int64(w.off) {
			t.Errorf("line %d: offset %d, want %d", i, got[i].Pos.Offset, w.off)
		}
	}
	r := s.f.paths[path].cur
	if cap(r.partial) > 2*MaxLine {
		t.Errorf("pending line buffer grew to %d bytes", cap(r.partial))
	}
}

// TestTruncatedAndRegrown: copytruncate, then the file grows past the old
// offset before the follower looks. Size alone cannot tell; the bytes before
// the offset changed.
func TestTruncatedAndRegrown(t *testing.T) {
	cases := []struct {
		name   string
		before string
		after  string
		want   []string
	}{
		{"shorter", "aaaa\nbbbb\n", "c\n", []string{"c"}},
		{"regrown past offset", "aaaa\nbbbb\n", "cccccc\ndddddd\neeee\n", []string{"cccccc", "dddddd", "eeee"}},
		{"regrown to the same size", "aaaa\nbbbb\n", "cccc\ndddd\n", []string{"cccc", "dddd"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.log")
			appendFile(t, path, tc.before)
			s, logs := newStepper(t, []string{path}, nil)
			if got := texts(s.step()); len(got) != 2 {
				t.Fatalf("first pass = %q", got)
			}
			must(t, os.Truncate(path, 0))
			appendFile(t, path, tc.after)
			got := texts(s.step())
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("after truncation = %q, want %q", got, tc.want)
			}
			if logs.count("truncated") != 1 {
				t.Errorf("want one truncation log:\n%s", logs)
			}
		})
	}
}

// TestSumMatchesFile: Pos.Sum is the CRC of the bytes before Pos.Offset, so a
// resume on it is exact; checked against sameFile on the real file, for
// lines split across reads.
func TestSumMatchesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	s, _ := newStepper(t, []string{path}, nil)
	var all []Line
	for _, piece := range []string{"a\n", "bb\nccc", "c\n" + strings.Repeat("d", 100) + "\n", "e\nf\n", strings.Repeat("g\n", 50)} {
		appendFile(t, path, piece)
		all = append(all, s.step()...)
	}
	if len(all) != 56 {
		t.Fatalf("got %d lines, want 56", len(all))
	}
	for _, l := range all {
		if l.Pos.Sum == 0 {
			t.Fatalf("line %q has no Sum", l.Text)
		}
		if !sameFile(path, l.Pos) {
			t.Errorf("line %q: Sum does not match the file at offset %d", l.Text, l.Pos.Offset)
		}
	}
	if p := s.f.Positions(); len(p) != 1 || p[0] != all[len(all)-1].Pos {
		t.Errorf("Positions() = %+v, want the last line's %+v", p, all[len(all)-1].Pos)
	}
}

// TestErrorLoggedOnce: a path that cannot be read (a symlink loop here, since
// root reads any file; permission denied when not root) is logged once over
// many passes, and the other files are still followed.
func TestErrorLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.log")
	must(t, os.Symlink(bad, bad))
	good := filepath.Join(dir, "good.log")
	patterns := []string{bad, good}
	denied := filepath.Join(dir, "denied.log")
	if os.Geteuid() != 0 {
		appendFile(t, denied, "secret\n")
		must(t, os.Chmod(denied, 0))
		patterns = append(patterns, denied)
	}
	s, logs := newStepper(t, patterns, nil)
	for i := range 50 {
		appendFile(t, good, "x\n")
		if got := texts(s.step()); strings.Join(got, "|") != "x" {
			t.Fatalf("pass %d: %q, want [x]", i, got)
		}
		s.clk.add(time.Second)
	}
	if n := logs.count("level=WARN", "bad.log"); n != 1 {
		t.Errorf("bad.log: %d warnings over 50 passes, want 1:\n%s", n, logs)
	}
	if os.Geteuid() != 0 {
		if n := logs.count("level=WARN", "denied.log"); n != 1 {
			t.Errorf("denied.log: %d warnings, want 1:\n%s", n, logs)
		}
	}
	s.clk.add(errEvery)
	s.step()
	if n := logs.count("level=WARN", "bad.log"); n != 2 {
		t.Errorf("bad.log: %d warnings after %v, want 2 (rate-limited, not silenced)", n, errEvery)
	}
}
