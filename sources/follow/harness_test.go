package follow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// Test timings: small, so the suite is fast; the clock is real because the
// files and the kernel's notifications are.
const (
	testPoll  = 20 * time.Millisecond
	testQuiet = 300 * time.Millisecond
	// waitMax only keeps a broken follower from hanging the suite.
	waitMax = 30 * time.Second
)

// lineText is the deterministic text of line n: a number, then a payload that
// is sometimes long (past MaxLine), sometimes holds NUL and invalid UTF-8.
func lineText(n int) string {
	head := fmt.Sprintf("L%07d ", n)
	switch {
	case n%1000 == 999:
		return head + strings.Repeat("x", 100<<10)
	case n%7 == 0:
		return head + "nul\x00 bad\xff\xfe utf8"
	default:
		return head + strings.Repeat("ab", n%13)
	}
}

// wantText is what the follower must deliver for line n.
func wantText(n int) string {
	s := lineText(n)
	if len(s) > MaxLine {
		s = s[:MaxLine]
	}
	return s
}

func lineNum(text string) (int, bool) {
	if len(text) < 9 || text[0] != 'L' {
		return 0, false
	}
	n, err := strconv.Atoi(text[1:8])
	return n, err == nil
}

// collector receives lines and checks each one as it comes: known text,
// per-file order, no duplicate.
type collector struct {
	mu       sync.Mutex
	count    map[int]int
	path     map[int]string // logical path each number was delivered with
	lastNum  map[uint64]int // by inode
	lastOff  map[uint64]int64
	lastPos  map[[2]string]Position
	problems []string
	total    int
}

func newCollector() *collector {
	return &collector{
		count:   map[int]int{},
		path:    map[int]string{},
		lastNum: map[uint64]int{},
		lastOff: map[uint64]int64{},
		lastPos: map[[2]string]Position{},
	}
}

func (c *collector) add(l Line) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	n, ok := lineNum(l.Text)
	if !ok {
		c.problem("unexpected line %.40q at %+v", l.Text, l.Pos)
		return
	}
	if l.Text != wantText(n) {
		c.problem("line %d: text %.60q, want %.60q", n, l.Text, wantText(n))
	}
	c.count[n]++
	if c.count[n] > 1 {
		c.problem("line %d delivered %d times (now at %+v)", n, c.count[n], l.Pos)
	}
	c.path[n] = l.Pos.Path
	// Within one inode, numbers must grow. Offsets grow too, except when a
	// new file reuses the inode number (ext4 does so at once) or the file was
	// truncated; a re-read would show as a duplicate number.
	if last, ok := c.lastNum[l.Pos.Inode]; ok && n <= last {
		c.problem("inode %d: line %d after line %d", l.Pos.Inode, n, last)
	}
	if last, ok := c.lastOff[l.Pos.Inode]; ok && l.Pos.Offset == last {
		c.problem("inode %d: offset %d twice", l.Pos.Inode, l.Pos.Offset)
	}
	c.lastNum[l.Pos.Inode] = n
	c.lastOff[l.Pos.Inode] = l.Pos.Offset
	c.lastPos[[2]string{l.Pos.Path, strconv.FormatUint(l.Pos.Inode, 10)}] = l.Pos
}

func (c *collector) problem(format string, args ...any) {
	if len(c.problems) < 20 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// has reports whether line n was delivered.
func (c *collector) has(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[n] > 0
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

// lastPositions returns the position of the last line delivered for each
// (path, inode): what a caller saving per line would save.
func (c *collector) lastPositions() []Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []Position
	for _, p := range c.lastPos {
		ps = append(ps, p)
	}
	return ps
}

// check asserts that exactly the numbers in want were delivered, once each,
// and that nothing else went wrong.
func (c *collector) check(t *testing.T, want func(int) bool, upto int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	lost := 0
	var firstLost []int
	for n := 0; n < upto; n++ {
		if want(n) && c.count[n] == 0 {
			lost++
			if len(firstLost) < 10 {
				firstLost = append(firstLost, n)
			}
		}
		if !want(n) && c.count[n] > 0 {
			c.problem("line %d delivered but not expected", n)
		}
	}
	for _, p := range c.problems {
		t.Error(p)
	}
	if lost > 0 {
		t.Errorf("%d lines lost, first %v", lost, firstLost)
	}
}

func all(int) bool { return true }

// running is a Follower running in the background, feeding a collector.
type running struct {
	f      *Follower
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, c *collector, patterns []string, saved []Position, log *slog.Logger, tweak ...func(*Follower)) *running {
	t.Helper()
	f := New(patterns, saved, Options{Logger: log, Poll: testPoll, DrainQuiet: testQuiet})
	for _, fn := range tweak {
		fn(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Line)
	r := &running{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx, out) }()
	go func() {
		for l := range out {
			c.add(l)
		}
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; lines already received stay received.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(waitMax):
		t.Fatal("Run did not return after cancel")
	}
}

// settle waits long enough for late duplicates to show: a rotated file is
// drained and closed within DrainQuiet plus a few polls.
func settle() { time.Sleep(testQuiet + 5*testPoll) }

// logBuf is a concurrency-safe log sink for asserting on log events.
type logBuf struct{ testkit.Buffer }

// countMsg counts log records whose text contains all of parts.
func (l *logBuf) count(parts ...string) int {
	n := 0
	for _, rec := range strings.Split(l.String(), "\n") {
		ok := rec != ""
		for _, p := range parts {
			ok = ok && strings.Contains(rec, p)
		}
		if ok {
			n++
		}
	}
	return n
}

func newLog() (*logBuf, *slog.Logger) {
	b := &logBuf{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer writes numbered lines to a log file the way daemons do: O_APPEND,
// one line in two writes so the follower sees half-written lines.
type writer struct {
	t    *testing.T
	path string
	f    *os.File
	next int
}

func newWriter(t *testing.T, path string, first int) *writer {
	w := &writer{t: t, path: path, next: first}
	w.reopen()
	return w
}

// reopen opens (creating) the file at w.path, as a daemon does after rotation.
func (w *writer) reopen() {
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Error(err)
		return
	}
	w.f = f
}

// lines writes k lines, each in two writes.
func (w *writer) lines(k int) {
	for range k {
		s := lineText(w.next) + "\n"
		cut := (w.next*7919)%len(s) + 1
		if cut >= len(s) {
			cut = len(s) / 2
		}
		if _, err := io.WriteString(w.f, s[:cut]); err != nil {
			w.t.Error(err)
		}
		if _, err := io.WriteString(w.f, s[cut:]); err != nil {
			w.t.Error(err)
		}
		w.next++
	}
}

func (w *writer) close() {
	if w.f != nil {
		w.f.Close()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
