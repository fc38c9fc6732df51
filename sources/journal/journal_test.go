package journal

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
	"github.com/moatproj/moat/sources"
)

// run is a Follower running in the background, its entries collected.
type run struct {
	t      *testing.T
	f      *Follower
	out    chan Entry
	cancel context.CancelFunc
	done   chan error
	logs   *testkit.Buffer
}

func start(t *testing.T, match string, saved []sources.Position, opts Options) *run {
	t.Helper()
	m, err := ParseMatch(match)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	r := &run{t: t, f: New(m, saved, opts), out: make(chan Entry, 1000), done: make(chan error, 1), logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.f.Run(ctx, r.out) }()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it.
func (r *run) stop() {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run = %v", err)
		}
		r.done <- nil // for a second stop
	case <-time.After(10 * time.Second):
		r.t.Fatalf("Run did not return 10s after cancel")
	}
}

// next returns the next n entries, failing after within.
func (r *run) next(n int, within time.Duration) []Entry {
	r.t.Helper()
	var got []Entry
	deadline := time.After(within)
	for len(got) < n {
		select {
		case e := <-r.out:
			got = append(got, e)
		case <-deadline:
			r.t.Fatalf("got %d of %d entries in %s; log:\n%s", len(got), n, within, r.logs.String())
		}
	}
	return got
}

// none checks that no entry arrives for a while.
func (r *run) none(wait time.Duration) {
	r.t.Helper()
	select {
	case e := <-r.out:
		r.t.Fatalf("unexpected entry %q", e.Line)
	case <-time.After(wait):
	}
}

// messages are the entries' MESSAGE fields.
func messages(es []Entry) []string {
	var ms []string
	for _, e := range es {
		ms = append(ms, e.Fields["MESSAGE"])
	}
	return ms
}

func numbered(from, to int) []string {
	var ms []string
	for i := from; i <= to; i++ {
		ms = append(ms, "entry "+strconv.Itoa(i))
	}
	return ms
}

// children are the journalctl processes this test process started whose
// command line holds ident.
func children(t *testing.T, ident string) []int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(journalctl") {
			continue
		}
		fs := strings.Fields(s[i+1:])
		if len(fs) < 2 || fs[0] == "Z" || fs[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile(d + "/cmdline")
		if !strings.Contains(string(cmdline), ident) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		pids = append(pids, pid)
	}
	return pids
}

// TestFollowDelivers: entries written to the real journald come in order,
// each with its cursor, its time and the line fail2ban would match.
func TestFollowDelivers(t *testing.T) {
	j := testkit.Journal(t)
	before := time.Now()
	j.Lines(numbered(1, 20)...)
	after := time.Now()
	r := start(t, j.Match(), nil, Options{Since: time.Minute})
	got := r.next(20, 10*time.Second)
	if ms := messages(got); !slices.Equal(ms, numbered(1, 20)) {
		t.Fatalf("messages = %q", ms)
	}
	host, _ := os.Hostname()
	seen := map[string]bool{}
	for i, e := range got {
		if e.Cursor == "" || seen[e.Cursor] || e.Pos != (sources.Position{Path: r.f.Key(), Cursor: e.Cursor}) {
			t.Errorf("entry %d: cursor %q, position %+v", i, e.Cursor, e.Pos)
		}
		seen[e.Cursor] = true
		if e.Realtime.Before(before.Add(-time.Second)) || e.Realtime.After(after.Add(time.Second)) {
			t.Errorf("entry %d: realtime %v, written between %v and %v", i, e.Realtime, before, after)
		}
		if i > 0 && e.Realtime.Before(got[i-1].Realtime) {
			t.Errorf("entry %d: realtime %v before the previous %v", i, e.Realtime, got[i-1].Realtime)
		}
		if !strings.HasPrefix(e.Line, host+" "+j.Ident+"[") || !strings.HasSuffix(e.Line, "]: entry "+strconv.Itoa(i+1)) {
			t.Errorf("entry %d: line %q", i, e.Line)
		}
		if e.Fields["SYSLOG_IDENTIFIER"] != j.Ident {
			t.Errorf("entry %d: fields %v", i, e.Fields)
		}
	}
	if p := r.f.Position(); p.Cursor != got[19].Cursor {
		t.Errorf("Position = %+v, want the last entry's cursor", p)
	}
	// New entries follow.
	j.Lines("late")
	if late := r.next(1, 10*time.Second); late[0].Fields["MESSAGE"] != "late" {
		t.Errorf("then %q", late[0].Line)
	}
	r.none(300 * time.Millisecond)
}

// TestFollowSinceZero: with no cursor and Since 0, only entries logged
// after the start are read.
func TestFollowSinceZero(t *testing.T) {
	j := testkit.Journal(t)
	j.Lines("old")
	// journald stamps a stream's line when it reads it: wait until "old"
	// is in the journal, so that it is older than the start.
	testkit.WaitFor(t, 10*time.Second, `"old" in the journal`, func() bool {
		out, _ := exec.Command(j.Journalctl, "--system", "--output=cat", j.Match()).Output()
		return strings.Contains(string(out), "old")
	})
	r := start(t, j.Match(), nil, Options{})
	testkit.WaitFor(t, 10*time.Second, "journalctl", func() bool { return len(children(t, j.Ident)) == 1 })
	j.Lines("new")
	if got := messages(r.next(1, 10*time.Second)); !slices.Equal(got, []string{"new"}) {
		t.Errorf("got %q", got)
	}
	r.none(300 * time.Millisecond)
}

// TestFollowSurvivesKill: journalctl killed (kill -9) while entries are
// being written is started again and goes on after the last entry
// delivered: no entry lost, none repeated.
func TestFollowSurvivesKill(t *testing.T) {
	j := testkit.Journal(t)
	r := start(t, j.Match(), nil, Options{Since: time.Minute})
	const batches, per = 6, 50
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for b := range batches {
			j.Lines(numbered(b*per+1, (b+1)*per)...)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var got []Entry
	kills := 0
	for len(got) < batches*per {
		got = append(got, r.next(1, 20*time.Second)...)
		if len(got)%70 == 0 && kills < 4 {
			pids := children(t, j.Ident)
			if len(pids) != 1 {
				t.Fatalf("journalctl children: %v", pids)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			kills++
			// Take entries only after the old child is gone, so that what
			// follows comes from the new one.
			testkit.WaitFor(t, 10*time.Second, "a new journalctl", func() bool {
				ps := children(t, j.Ident)
				return len(ps) == 1 && ps[0] != pids[0]
			})
		}
	}
	<-writer
	if kills != 4 {
		t.Fatalf("killed journalctl %d times, want 4", kills)
	}
	if ms := messages(got); !slices.Equal(ms, numbered(1, batches*per)) {
		t.Fatalf("after %d kills, messages = %q", kills, ms)
	}
	r.none(500 * time.Millisecond)
	if !strings.Contains(r.logs.String(), "journalctl exited") {
		t.Errorf("the exits were not logged:\n%s", r.logs.String())
	}
}

// TestFollowResumes: a Follower given a saved cursor delivers exactly the
// entries after it; a saved position of another stream, or a cursor that
// is not one, is not taken.
func TestFollowResumes(t *testing.T) {
	j := testkit.Journal(t)
	j.Lines(numbered(1, 10)...)
	first := start(t, j.Match(), nil, Options{Since: time.Minute})
	all := first.next(10, 10*time.Second)
	first.stop()

	saved := []sources.Position{
		{Path: "journal:SYSLOG_IDENTIFIER=other", Cursor: all[1].Cursor},
		all[3].Pos,
		{Path: "/var/log/auth.log", Inode: 1, Offset: 4},
	}
	r := start(t, j.Match(), saved, Options{Since: time.Minute})
	if p := r.f.Position(); p != all[3].Pos {
		t.Errorf("Position before any entry = %+v, want the saved %+v", p, all[3].Pos)
	}
	if ms := messages(r.next(6, 10*time.Second)); !slices.Equal(ms, numbered(5, 10)) {
		t.Fatalf("resumed with %q", ms)
	}
	j.Lines(numbered(11, 12)...)
	if ms := messages(r.next(2, 10*time.Second)); !slices.Equal(ms, numbered(11, 12)) {
		t.Fatalf("then %q", ms)
	}
	r.none(300 * time.Millisecond)
	r.stop()

	// Resuming after the last entry delivers only new ones.
	last := r.f.Position()
	r2 := start(t, j.Match(), []sources.Position{last}, Options{Since: time.Minute})
	r2.none(500 * time.Millisecond)
	j.Lines("13")
	if ms := messages(r2.next(1, 10*time.Second)); !slices.Equal(ms, []string{"13"}) {
		t.Fatalf("after the last: %q", ms)
	}
	r2.stop()

	// A damaged cursor is logged and dropped: the Follower starts from
	// Since.
	r3 := start(t, j.Match(), []sources.Position{{Path: last.Path, Cursor: "garbage"}}, Options{Since: time.Minute})
	if ms := messages(r3.next(13, 10*time.Second)); !slices.Equal(ms, append(numbered(1, 12), "13")) {
		t.Fatalf("from a damaged cursor: %q", ms)
	}
	if !strings.Contains(r3.logs.String(), "dropping saved cursor") {
		t.Errorf("the damaged cursor was not logged:\n%s", r3.logs.String())
	}
}

// TestFollowMatch: the journalmatch selects the entries journald's own
// matching would (groups ORed, terms ANDed, one field's terms ORed).
func TestFollowMatch(t *testing.T) {
	j := testkit.Journal(t)
	id := "SYSLOG_IDENTIFIER=" + j.Ident
	write := []struct {
		name   string
		fields []string
	}{
		{"a1", []string{"MOAT_T=a", "MOAT_U=1"}},
		{"a2", []string{"MOAT_T=a", "MOAT_U=2"}},
		{"b1", []string{"MOAT_T=b", "MOAT_U=1"}},
		{"c2", []string{"MOAT_T=c", "MOAT_U=2"}},
		{"sp", []string{"MOAT_T=with space", "MOAT_U=3"}},
		{"end", []string{"MOAT_T=end"}},
	}
	for _, w := range write {
		j.Entry(append(w.fields, "MESSAGE="+w.name)...)
	}
	for _, tc := range []struct {
		match string
		want  []string
	}{
		{id, []string{"a1", "a2", "b1", "c2", "sp", "end"}},
		{id + " MOAT_T=a + " + id + " MOAT_T=end", []string{"a1", "a2", "end"}},
		{id + " MOAT_U=1 MOAT_T=b + " + id + " MOAT_T=end", []string{"b1", "end"}},
		{id + " MOAT_T=a MOAT_T=c MOAT_U=2\n" + id + " MOAT_T=end", []string{"a2", "c2", "end"}},
		{id + ` MOAT_T="with space" + ` + id + " MOAT_T=end", []string{"sp", "end"}},
		{id + " MOAT_T=A + " + id + " MOAT_T=end", []string{"end"}},
	} {
		r := start(t, tc.match, nil, Options{Since: time.Minute})
		got := r.next(len(tc.want), 10*time.Second)
		if ms := messages(got); !slices.Equal(ms, tc.want) {
			t.Errorf("match %q selected %q, want %q", tc.match, ms, tc.want)
		}
		r.none(200 * time.Millisecond)
		r.stop()
	}
}

// TestFollowFormatsAsFail2ban: entries with a binary MESSAGE, control
// characters, no MESSAGE, odd PIDs and a long MESSAGE, written to the real
// journald, come out as the lines fail2ban makes of the same entries read
// through python-systemd.
func TestFollowFormatsAsFail2ban(t *testing.T) {
	j := testkit.Journal(t)
	entries := [][]string{
		{"MESSAGE=binary \xff\xfe and \xe2\x82 cut"},
		{"MESSAGE=colour \x1b[31mred\x1b[0m\rback"},
		{"MOAT_NO_MESSAGE=1"},
		{"SYSLOG_PID=0x1f", "MESSAGE=hex pid"},
		{"SYSLOG_PID=abc'", "MESSAGE=text pid"},
		{"SYSLOG_PID=0", "MESSAGE=zero pid"},
		{"MESSAGE=" + strings.Repeat("long-", 2000)},
		{"MESSAGE=last"},
	}
	for _, e := range entries {
		j.Entry(e...)
	}
	r := start(t, j.Match(), nil, Options{Since: time.Minute})
	got := r.next(len(entries), 10*time.Second)
	refs := fail2banFormat(t, nil, "journal", j.Match())
	if len(refs) != len(got) {
		t.Fatalf("fail2ban read %d entries, moat %d", len(refs), len(got))
	}
	for i, e := range got {
		if e.Cursor != refs[i].Cursor || e.Line != refs[i].Line {
			t.Errorf("entry %d:\n got  %q %q\n want %q %q", i, e.Cursor, e.Line, refs[i].Cursor, refs[i].Line)
		}
	}
	if m := got[6].Fields["MESSAGE"]; len(m) != 10000 {
		t.Errorf("the long MESSAGE has %d bytes, want all 10000", len(m))
	}
	if _, ok := got[2].Fields["MESSAGE"]; ok || !strings.HasSuffix(got[2].Line, ": ") {
		t.Errorf("no MESSAGE: line %q", got[2].Line)
	}
}

// TestFollowCancelStops: when the context ends Run returns and no
// journalctl is left running; a journalctl that cannot start is retried
// with backoff, and logged.
func TestFollowCancelStops(t *testing.T) {
	j := testkit.Journal(t)
	r := start(t, j.Match(), nil, Options{})
	var pid int
	testkit.WaitFor(t, 10*time.Second, "journalctl", func() bool {
		ps := children(t, j.Ident)
		if len(ps) == 1 {
			pid = ps[0]
		}
		return pid != 0
	})
	r.stop()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("journalctl %d still exists after Run returned", pid)
	}
	if ps := children(t, j.Ident); len(ps) != 0 {
		t.Errorf("journalctl children left: %v", ps)
	}

	missing := start(t, "", nil, Options{Journalctl: filepath.Join(t.TempDir(), "no-journalctl"), MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	testkit.WaitFor(t, 10*time.Second, "three failed starts logged", func() bool {
		return strings.Count(missing.logs.String(), "journalctl exited") >= 3
	})
	missing.stop()
	if !strings.Contains(missing.logs.String(), "no-journalctl") {
		t.Errorf("the start error was not logged:\n%s", missing.logs.String())
	}
}
