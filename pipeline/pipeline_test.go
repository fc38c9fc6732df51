package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/internal/testkit"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/sources"
	"github.com/moatproj/moat/sources/docker"
	"github.com/moatproj/moat/sources/follow"
)

// event is one call the pipeline made to the engine, in order.
type event struct {
	fails []jail.Failure // nil: an Advance
	pos   sources.Position
}

// fakeEngine records what the pipeline hands over, and keeps the latest
// position per path as the jail engine does.
type fakeEngine struct {
	mu     sync.Mutex
	events []event
	pos    map[string]sources.Position
	// refuse makes Failures fail with this error (the position is not kept).
	refuse error
	// findTime, when set, makes Failures drop the failures older than it
	// as the jail engine does.
	findTime time.Duration
}

func newFakeEngine(saved ...sources.Position) *fakeEngine {
	e := &fakeEngine{pos: map[string]sources.Position{}}
	for _, p := range saved {
		e.pos[p.Path] = p
	}
	return e
}

func (e *fakeEngine) Failures(_ context.Context, fs []jail.Failure, pos sources.Position) ([]jail.Ban, []jail.TooOld, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refuse != nil {
		return nil, nil, e.refuse
	}
	e.events = append(e.events, event{fails: slices.Clone(fs), pos: pos})
	e.pos[pos.Path] = pos
	var old []jail.TooOld
	for _, f := range fs {
		if e.findTime > 0 && f.Time.Before(time.Now().Add(-e.findTime)) {
			old = append(old, jail.TooOld{Failure: f, FindTime: e.findTime})
		}
	}
	return nil, old, nil
}

func (e *fakeEngine) Advance(pos sources.Position) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, event{pos: pos})
	e.pos[pos.Path] = pos
}

func (e *fakeEngine) Positions() []sources.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sources.Position
	for _, p := range e.pos {
		out = append(out, p)
	}
	return out
}

func (e *fakeEngine) ForgetPositions(stale func(string) bool) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var gone []string
	for p := range e.pos {
		if stale(p) {
			delete(e.pos, p)
			gone = append(gone, p)
		}
	}
	return gone
}

// failures is every failure recorded, in order.
func (e *fakeEngine) failures() []jail.Failure {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []jail.Failure
	for _, ev := range e.events {
		out = append(out, ev.fails...)
	}
	return out
}

func (e *fakeEngine) position(path string) sources.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pos[path]
}

func inline(t *testing.T, regex ...string) *filters.Filter {
	t.Helper()
	f, err := (&filters.Loader{}).Inline("t", regex, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// count is a Counter.
type count struct {
	mu sync.Mutex
	n  int
}

func (c *count) Inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *count) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

// TestDispatchHandsPositionsOverInOrder: a failure goes to the engine with
// its line's position, in one call for all jails of the line; the positions
// of other lines are handed over in batches, never ahead of a failure
// before them, and the last one at the end.
func TestDispatchHandsPositionsOverInOrder(t *testing.T) {
	var linesA, failsA, linesB count
	set, err := Compile("", []Jail{
		{Name: "a", LogPath: []string{"/log/*.log"}, Filter: inline(t, `fail from <HOST>$`), Metrics: Metrics{Lines: &linesA, Failures: &failsA}},
		{Name: "b", LogPath: []string{"/log/x.log"}, Filter: inline(t, `from <HOST>$`), Metrics: Metrics{Lines: &linesB}},
		{Name: "proxy"}, // no log: reads nothing
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newFakeEngine()
	p := New(set, Options{Engine: e})
	const n = 3000
	lines := make(chan follow.Line, n)
	var offset [2]int64
	var wantA, wantB []jail.Failure
	for i := range n {
		path := []string{"/log/x.log", "/log/y.log"}[i%2]
		text := fmt.Sprintf("line %d ok", i)
		if i%97 == 0 {
			text = fmt.Sprintf("fail from %s", addr(i%250))
		}
		offset[i%2] += int64(len(text) + 1)
		lines <- follow.Line{Text: text, Pos: sources.Position{Path: path, Inode: uint64(1 + i%2), Offset: offset[i%2]}, Read: time.Now()}
		if i%97 == 0 {
			f := jail.Failure{Jail: "a", Addr: addr(i % 250)}
			wantA = append(wantA, f)
			if path == "/log/x.log" {
				wantB = append(wantB, jail.Failure{Jail: "b", Addr: f.Addr})
			}
		}
	}
	close(lines)
	p.dispatch(context.Background(), lines)

	var got []jail.Failure
	last := map[string]int64{}
	advances := 0
	for _, ev := range e.events {
		if ev.pos.Offset < last[ev.pos.Path] {
			t.Fatalf("position of %s handed over going back: %d after %d", ev.pos.Path, ev.pos.Offset, last[ev.pos.Path])
		}
		last[ev.pos.Path] = ev.pos.Offset
		if ev.fails == nil {
			advances++
			continue
		}
		if len(ev.fails) == 0 || ev.fails[0].Jail != "a" {
			t.Fatalf("failures of one line %v: want jail a first", ev.fails)
		}
		if ev.pos.Path == "/log/x.log" && len(ev.fails) != 2 {
			t.Fatalf("a failure line of x.log gave %d failures in one call, want 2 (jails a and b)", len(ev.fails))
		}
		for _, f := range ev.fails {
			got = append(got, jail.Failure{Jail: f.Jail, Addr: f.Addr})
		}
	}
	var gotA, gotB []jail.Failure
	for _, f := range got {
		if f.Jail == "a" {
			gotA = append(gotA, f)
		} else {
			gotB = append(gotB, f)
		}
	}
	if !slices.Equal(gotA, wantA) || !slices.Equal(gotB, wantB) {
		t.Fatalf("failures: jail a %d (want %d), jail b %d (want %d)", len(gotA), len(wantA), len(gotB), len(wantB))
	}
	for i, path := range []string{"/log/x.log", "/log/y.log"} {
		if last[path] != offset[i] {
			t.Errorf("last position of %s handed over: %d, want the end %d", path, last[path], offset[i])
		}
	}
	// The queue was full: positions go in batches of advanceEvery lines
	// (two files each time), plus the queue running dry at the end.
	if max := 2*(n/advanceEvery) + 4; advances > max {
		t.Errorf("%d Advance calls for %d lines, want at most %d (batched)", advances, n, max)
	}
	if linesA.get() != n || linesB.get() != n/2 || failsA.get() != len(wantA) {
		t.Errorf("metrics: lines a %d b %d, failures a %d; want %d, %d, %d", linesA.get(), linesB.get(), failsA.get(), n, n/2, len(wantA))
	}
}

// TestDispatchEngineRefusal: a failure the engine refuses (a jail removed
// by a reload) is logged, and lines after it are still handed over.
func TestDispatchEngineRefusal(t *testing.T) {
	set, err := Compile("", []Jail{{Name: "a", LogPath: []string{"/l"}, Filter: inline(t, `fail from <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	e := newFakeEngine()
	e.refuse = fmt.Errorf("%w: a", jail.ErrUnknownJail)
	lines := make(chan follow.Line, 2)
	lines <- follow.Line{Text: "fail from 192.0.2.1", Pos: sources.Position{Path: "/l", Offset: 20}}
	lines <- follow.Line{Text: "ok", Pos: sources.Position{Path: "/l", Offset: 23}}
	close(lines)
	New(set, Options{Engine: e}).dispatch(context.Background(), lines)
	if got := e.position("/l").Offset; got != 23 {
		t.Fatalf("position after a refused failure: %d, want 23", got)
	}
	if len(e.failures()) != 0 {
		t.Fatalf("refused failures recorded: %v", e.failures())
	}
}

// TestCompileRefuses: a bad selector, or logs without a filter.
func TestCompileRefuses(t *testing.T) {
	for _, j := range []Jail{
		{Name: "a", Containers: []string{"label:"}, Filter: inline(t, `<HOST>`)},
		{Name: "a", LogPath: []string{"/l"}},
	} {
		if _, err := Compile("", []Jail{j}); err == nil || !strings.Contains(err.Error(), "jail a") {
			t.Errorf("Compile(%+v) = %v, want an error naming jail a", j, err)
		}
	}
}

func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// start runs p until the test ends.
func start(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

var fastFollow = follow.Options{Poll: 20 * time.Millisecond, DrainQuiet: 200 * time.Millisecond}

// TestSwapCountsEachLineOnce: real files followed; a new set that adds a
// file restarts the follower from the engine's positions, and every failure
// line is counted exactly once across the restart. Files no jail reads and
// that are gone lose their saved position; a watched file keeps it.
func TestSwapCountsEachLineOnce(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	gone := sources.Position{Path: filepath.Join(dir, "gone.log"), Inode: 7, Offset: 10}
	waiting := sources.Position{Path: filepath.Join(dir, "later.log"), Inode: 8, Offset: 10}
	e := newFakeEngine(gone, waiting)
	jailA := Jail{Name: "a", LogPath: []string{a, waiting.Path}, Filter: inline(t, `fail from <HOST>$`)}
	set, err := Compile("", []Jail{jailA})
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{Engine: e, Follow: fastFollow})
	appendFile(t, a, "fail from 192.0.2.1", "ok")
	start(t, p)
	testkit.WaitFor(t, 10*time.Second, "the first failure", func() bool { return len(e.failures()) == 1 })
	if got := e.position(gone.Path); got.Path != "" {
		t.Errorf("position of a gone file no jail reads kept: %+v", got)
	}
	if got := e.position(waiting.Path); got != waiting {
		t.Errorf("position of a missing file a jail reads: %+v, want %+v kept", got, waiting)
	}
	testkit.WaitFor(t, 10*time.Second, "a.log read to its end", func() bool { return e.position(a).Offset == fileSize(t, a) })
	if files := p.Files("a"); !slices.Equal(files, []string{a}) {
		t.Errorf("Files(a) = %q, want %q", files, a)
	}

	appendFile(t, b, "fail from 192.0.2.2")
	set2, err := Compile("", []Jail{jailA, {Name: "b", LogPath: []string{b}, Filter: inline(t, `fail from <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p.Use(set2)
	for i := range 50 {
		appendFile(t, a, fmt.Sprintf("fail from 192.0.2.%d", 10+i))
	}
	testkit.WaitFor(t, 10*time.Second, "52 failures", func() bool { return len(e.failures()) >= 52 })
	testkit.WaitFor(t, 10*time.Second, "both files read to their end", func() bool {
		return e.position(a).Offset == fileSize(t, a) && e.position(b).Offset == fileSize(t, b)
	})
	seen := map[string]int{}
	for _, f := range e.failures() {
		seen[f.Jail+" "+f.Addr.String()]++
	}
	if len(seen) != 52 {
		t.Errorf("%d distinct failures, want 52: %v", len(seen), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("failure %s counted %d times across the follower's restart", k, n)
		}
	}
	if files := p.Files("b"); !slices.Equal(files, []string{b}) {
		t.Errorf("Files(b) = %q, want %q", files, b)
	}
}

// TestContainerFollowedWhenItAppears: a jail with a container selector
// follows the json-file log of a container created after the pipeline
// started, decodes Docker's entries (a line Docker split in two is counted
// once, whole, with Docker's time), and hands positions over.
func TestContainerFollowedWhenItAppears(t *testing.T) {
	root := t.TempDir()
	e := newFakeEngine()
	set, err := Compile(root, []Jail{{Name: "web", Containers: []string{"web"}, Filter: inline(t, `^fail from <HOST> user \S+$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{Engine: e, Follow: fastFollow, WatchEvery: 20 * time.Millisecond})
	start(t, p)

	const id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100"
	cdir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(cdir, 0o710); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(cdir, id+"-json.log")
	// Docker splits lines longer than 16 KiB: a piece without "\n" is
	// followed by the rest.
	long := strings.Repeat("x", 100)
	if err := os.WriteFile(logPath, []byte(
		`{"log":"fail from 192.0.2.7 user `+long[:50]+`","stream":"stdout","time":"2026-12-08T01:02:03.5Z"}`+"\n"+
			`{"log":"`+long[50:]+`\n","stream":"stdout","time":"2026-12-08T01:02:03.6Z"}`+"\n"+
			`{"log":"ok\n","stream":"stdout","time":"2026-12-08T01:02:04Z"}`+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for name, data := range containerFiles(t, id, "web", "json-file") {
		if err := os.WriteFile(filepath.Join(cdir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "the container's failure", func() bool { return len(e.failures()) > 0 })
	testkit.WaitFor(t, 10*time.Second, "the container's log read to its end", func() bool {
		return e.position(logPath).Offset == fileSize(t, logPath)
	})
	fs := e.failures()
	if len(fs) != 1 || fs[0].Addr != addr(7) || fs[0].Jail != "web" {
		t.Fatalf("failures %+v, want one from 192.0.2.7 in jail web", fs)
	}
	if want := time.Date(2026, 12, 8, 1, 2, 3, 5e8, time.UTC); !fs[0].Time.Equal(want) {
		t.Errorf("failure time %v, want Docker's stamp of the line's first piece %v", fs[0].Time, want)
	}
	// Every position handed over for this log ends a whole entry: the end
	// of the first piece of the split line is never one of them.
	firstPiece := int64(strings.Index(mustRead(t, logPath), "\n") + 1)
	e.mu.Lock()
	for _, ev := range e.events {
		if ev.pos.Path == logPath && ev.pos.Offset == firstPiece {
			t.Errorf("the position after the first piece of a split line was handed over: %+v", ev)
		}
	}
	e.mu.Unlock()
	if files := p.Files("web"); !slices.Equal(files, []string{logPath}) {
		t.Errorf("Files(web) = %q, want %q", files, logPath)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// containerFiles is config.v2.json and hostconfig.json of a running
// container with this log driver, from sources/docker's fixtures (Docker 26's files).
func containerFiles(t *testing.T, id, name, driver string) map[string]string {
	t.Helper()
	dir := filepath.Join("..", "sources", "docker", "testdata")
	cfg := strings.NewReplacer("@ID@", id, "@NAME@", "/"+name, "@LABELS@", "{}", "@RUNNING@", "true",
		"@LOGPATH@", "/var/lib/docker/containers/"+id+"/"+id+"-json.log").Replace(mustRead(t, filepath.Join(dir, "config.v2.json")))
	hc := strings.ReplaceAll(mustRead(t, filepath.Join(dir, "hostconfig.json")), "@DRIVER@", driver)
	return map[string]string{"config.v2.json": cfg, "hostconfig.json": hc}
}

// TestUseSamePathsNewFilter: a set with the same files but another filter
// is in force from the next line on, without the follower restarting.
func TestUseSamePathsNewFilter(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a.log")
	e := newFakeEngine()
	set, err := Compile("", []Jail{{Name: "a", LogPath: []string{a}, Filter: inline(t, `fail from <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{Engine: e, Follow: fastFollow})
	appendFile(t, a, "fail from 192.0.2.1")
	start(t, p)
	testkit.WaitFor(t, 10*time.Second, "the first failure", func() bool { return len(e.failures()) == 1 })
	set2, err := Compile("", []Jail{{Name: "a", LogPath: []string{a}, Filter: inline(t, `denied for <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p.Use(set2)
	appendFile(t, a, "fail from 192.0.2.2", "denied for 192.0.2.3")
	testkit.WaitFor(t, 10*time.Second, "a.log read to its end", func() bool { return e.position(a).Offset == fileSize(t, a) })
	var got []netip.Addr
	for _, f := range e.failures() {
		got = append(got, f.Addr)
	}
	if want := []netip.Addr{addr(1), addr(3)}; !slices.Equal(got, want) {
		t.Fatalf("failures from %v, want %v (the second filter in force after Use)", got, want)
	}
}

// TestDispatchSplitEntry: the first piece of a line Docker split is not
// counted and its position is not handed over, so that a restart reads the
// whole line again.
func TestDispatchSplitEntry(t *testing.T) {
	set, err := Compile("/docker", []Jail{{Name: "web", Containers: []string{"web"}, Filter: inline(t, `^fail from <HOST>`)}})
	if err != nil {
		t.Fatal(err)
	}
	const id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100"
	c := docker.Container{ID: id, Name: "web", LogDriver: docker.DriverJSONFile, Labels: map[string]string{}}
	set = set.withContainers([]docker.Container{c})
	path := docker.JSONLogPath("/docker", c)
	e := newFakeEngine()
	lines := make(chan follow.Line, 1)
	lines <- follow.Line{Text: `{"log":"fail from 192.0.2.9 and more","stream":"stdout","time":"2026-12-08T01:02:03Z"}`, Pos: sources.Position{Path: path, Offset: 80}}
	close(lines)
	New(set, Options{Engine: e}).dispatch(context.Background(), lines)
	if len(e.events) != 0 {
		t.Fatalf("the first piece of a split line gave %+v, want nothing handed over", e.events)
	}
}

// TestDispatchLogsOldFailures: failures the engine drops for being older
// than findtime are said, once per run of them in a file, with their
// count, the file and the reason.
func TestDispatchLogsOldFailures(t *testing.T) {
	set, err := Compile("", []Jail{{Name: "a", LogPath: []string{"/log/x.log"}, Filter: inline(t, `fail from <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	e := newFakeEngine()
	e.findTime = 10 * time.Minute
	var logs bytes.Buffer
	p := New(set, Options{Engine: e, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	lines := make(chan follow.Line, 16)
	send := func(text string) {
		lines <- follow.Line{Text: text, Pos: sources.Position{Path: "/log/x.log", Inode: 1, Offset: int64(len(lines) + 1)}, Read: time.Now()}
	}
	for range 5 {
		send("2020-01-02 03:04:05 fail from 192.0.2.1")
	}
	send("fail from 192.0.2.2") // no date: now
	for range 3 {
		send("2020-01-02 03:04:06 fail from 192.0.2.1")
	}
	close(lines)
	p.dispatch(context.Background(), lines)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "older than findtime") {
			got = append(got, l)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0], `msg="5 failures in /log/x.log older than findtime (10m0s) skipped: they cannot lead to a ban"`) ||
		!strings.Contains(got[0], "jail=a") || !strings.Contains(got[1], `msg="3 failures in /log/x.log`) {
		t.Errorf("logs about old failures:\n%s\nwant a line for the run of 5 and one for the run of 3", strings.Join(got, "\n"))
	}
}
