package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
	"github.com/moatproj/moat/sources/journal"
)

var fastJournal = journal.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}

// distinct counts failures by jail and address, and fails the test when
// one was counted twice.
func distinct(t *testing.T, e *fakeEngine) int {
	t.Helper()
	seen := map[string]int{}
	for _, f := range e.failures() {
		seen[f.Jail+" "+f.Addr.String()]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("failure %s counted %d times", k, n)
		}
	}
	return len(seen)
}

// TestJournalJail: a jail reading the real journal counts the entries its
// match selects, dated by the journal, with their cursor handed over; a set
// with another stream restarts the readers from the handed-over cursors and
// no entry is counted twice.
func TestJournalJail(t *testing.T) {
	tj := testkit.Journal(t)
	other := testkit.Journal(t)
	m, err := journal.ParseMatch(tj.Match())
	if err != nil {
		t.Fatal(err)
	}
	m2, err := journal.ParseMatch(other.Match())
	if err != nil {
		t.Fatal(err)
	}
	ssh := Jail{Name: "ssh", Journal: true, JournalMatch: m, FindTime: time.Hour, Filter: inline(t, `fail from <HOST>$`)}
	set, err := Compile("", []Jail{ssh})
	if err != nil {
		t.Fatal(err)
	}
	// Logged before the start, within findtime: read.
	tj.Lines("fail from 192.0.2.1", "all well", "fail from 192.0.2.2")
	e := newFakeEngine()
	p := New(set, Options{Engine: e, Journal: fastJournal})
	start(t, p)
	testkit.WaitFor(t, 10*time.Second, "the two failures logged before the start", func() bool { return len(e.failures()) == 2 })
	// Each failure is dated by its entry, as the journal gives it.
	times := map[time.Time]bool{}
	if err := journal.Dump(context.Background(), m, journal.Options{}, func(e journal.Entry) error {
		if strings.HasPrefix(e.Fields["MESSAGE"], "fail from") {
			times[e.Time] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range e.failures() {
		if !times[f.Time] {
			t.Errorf("failure of %s dated %v: not the time of an entry (%v)", f.Addr, f.Time, times)
		}
	}
	if pos := e.position(m.Key()); pos.Cursor == "" {
		t.Errorf("no cursor handed over for %s: %+v", m.Key(), pos)
	}
	if files := p.Files("ssh"); len(files) != 0 {
		t.Errorf("Files(ssh) = %q for a journal jail", files)
	}

	set2, err := Compile("", []Jail{ssh, {Name: "other", Journal: true, JournalMatch: m2, FindTime: time.Hour, Filter: inline(t, `denied <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p.Use(set2)
	for i := range 20 {
		tj.Lines(fmt.Sprintf("fail from 192.0.2.%d", 10+i))
	}
	other.Lines("denied 198.51.100.1", "fail from 198.51.100.2")
	testkit.WaitFor(t, 10*time.Second, "23 failures", func() bool { return len(e.failures()) >= 23 })
	if n := distinct(t, e); n != 23 {
		t.Errorf("%d distinct failures, want 23", n)
	}
	if pos := e.position(m2.Key()); pos.Cursor == "" {
		t.Errorf("no cursor handed over for %s", m2.Key())
	}
}

// TestJournaldContainer: a container with the journald log driver is
// followed through the journal by its id once it appears in Docker's data
// root, and its entries are matched as the program wrote them (MESSAGE).
func TestJournaldContainer(t *testing.T) {
	tj := testkit.Journal(t)
	root := t.TempDir()
	e := newFakeEngine()
	set, err := Compile(root, []Jail{{Name: "web", Containers: []string{"web"}, FindTime: time.Hour, Filter: inline(t, `^login failed from <HOST>$`)}})
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{Engine: e, Journal: fastJournal, WatchEvery: 20 * time.Millisecond})
	start(t, p)

	// An id of its own: the journal keeps the entries of earlier runs.
	id := fmt.Sprintf("%016x", time.Now().UnixNano()) + strings.Repeat("5c6d", 12)
	cdir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(cdir, 0o710); err != nil {
		t.Fatal(err)
	}
	for name, data := range containerFiles(t, id, "web", "journald") {
		if err := os.WriteFile(filepath.Join(cdir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The fields Docker's journald driver writes with each line.
	docker := func(msg string) {
		tj.Entry("MESSAGE="+msg, "CONTAINER_ID="+id[:12], "CONTAINER_ID_FULL="+id, "CONTAINER_NAME=web",
			"CONTAINER_TAG="+id[:12], "IMAGE_NAME=moat-test", "SYSLOG_IDENTIFIER="+id[:12])
	}
	docker("login failed from 192.0.2.60")
	docker("login ok for 192.0.2.61")
	docker("login failed from 192.0.2.62")
	// Another container's entry, and the same words from a host service.
	tj.Entry("MESSAGE=login failed from 192.0.2.63", "CONTAINER_ID_FULL="+id[:63]+"0", "CONTAINER_NAME=db")
	tj.Lines("login failed from 192.0.2.64")
	testkit.WaitFor(t, 10*time.Second, "the container's two failures", func() bool { return len(e.failures()) >= 2 })
	m := journal.Match{{"CONTAINER_ID_FULL=" + id}}
	testkit.WaitFor(t, 10*time.Second, "the container's cursor", func() bool { return e.position(m.Key()).Cursor != "" })
	if n := distinct(t, e); n != 2 {
		t.Errorf("%d distinct failures, want 2 (the container's): %v", n, e.failures())
	}
	for _, f := range e.failures() {
		if a := f.Addr.String(); a != "192.0.2.60" && a != "192.0.2.62" {
			t.Errorf("failure from %s, which is not the container's", a)
		}
	}
}
