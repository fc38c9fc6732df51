package follow

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// These tests run a real writer goroutine that writes numbered lines (each in
// two writes) while it rotates the file the way real tools do, and assert that
// every line is delivered exactly once, with its exact text, in order within
// each file.

const total = 12000

// until polls cond from a writer goroutine (which must not call t.Fatal).
func until(t *testing.T, what string, cond func() bool) bool {
	deadline := time.Now().Add(waitMax)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// seenGen writes the first line of a generation and waits until the follower
// delivered it: proof that it opened the file. Rotating a file twice before
// the follower ever opened it cannot be followed by anyone, and logrotate
// rotates hours apart.
func seenGen(t *testing.T, w *writer, c *collector) bool {
	n := w.next
	w.lines(1)
	return until(t, fmt.Sprintf("line %d", n), func() bool { return c.has(n) })
}

// finish waits for every line up to n, then a little longer to let any
// duplicate show, and checks.
func finish(t *testing.T, c *collector, n int) {
	t.Helper()
	testkit.WaitFor(t, waitMax, fmt.Sprintf("%d lines", n), func() bool { return c.distinct() >= n })
	settle()
	c.check(t, all, n)
}

// shift rotates like logrotate: path.2 → path.3, path.1 → path.2, path →
// path.1, with path.3 removed first.
func shift(path string) error {
	os.Remove(path + ".3")
	for i := 2; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return os.Rename(path, path+".1")
}

func TestRenameCreate(t *testing.T) {
	t.Run("fsnotify", func(t *testing.T) { testRenameCreate(t) })
	// Without inotify (exhausted watches, some network filesystems) polling
	// alone must lose nothing either.
	t.Run("poll only", func(t *testing.T) { testRenameCreate(t, func(f *Follower) { f.noNotify = true }) })
}

func testRenameCreate(t *testing.T, tweak ...func(*Follower)) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	logs, log := newLog()
	start(t, c, []string{path}, nil, log, tweak...)
	rotations := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for w.next < total {
			if !seenGen(t, w, c) {
				return
			}
			w.lines(min(1499, total-w.next))
			if err := shift(path); err != nil {
				t.Error(err)
				return
			}
			rotations++
			w.reopen() // create
		}
	})
	wg.Wait()
	finish(t, c, total)
	for n := range total {
		if c.path[n] != path {
			t.Fatalf("line %d delivered with path %q, want the logical path %q", n, c.path[n], path)
		}
	}
	if len(tweak) > 0 && logs.count("polling only") != 1 {
		t.Errorf("poll-only run did not run without fsnotify:\n%s", logs)
	}
	if got := logs.count("draining"); got < rotations {
		t.Errorf("%d draining events logged, want at least %d (one per rotation)", got, rotations)
	}
}

// TestWriterKeepsOldFile: logrotate renames and creates the new file at once,
// and the daemon (nginx) goes on writing to the renamed file until it
// reopens.
func TestWriterKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	logs, log := newLog()
	start(t, c, []string{path}, nil, log)
	afterSwitch := 0 // lines written to the old file after the follower moved on
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for gen := 1; w.next < total; gen++ {
			if !seenGen(t, w, c) {
				return
			}
			w.lines(999)
			os.Remove(path + ".1")
			if err := os.Rename(path, path+".1"); err != nil {
				t.Error(err)
				return
			}
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Error(err)
				return
			}
			w.lines(500) // still to the renamed file
			if !until(t, "follower to notice the rotation", func() bool { return logs.count("draining") >= gen }) {
				return
			}
			k := min(1000, total-w.next)
			w.lines(k) // the follower now reads the new file; these go to the old one
			afterSwitch += k
			w.reopen()
		}
	})
	wg.Wait()
	finish(t, c, total)
	if afterSwitch == 0 {
		t.Fatal("no line was written to a renamed file after the follower switched")
	}
	for n := range total {
		if c.path[n] != path {
			t.Fatalf("line %d delivered with path %q, want %q", n, c.path[n], path)
		}
	}
}

// TestCopyTruncate: logrotate copies the file then truncates it in place; the
// writer goes on at offset 0 (O_APPEND). Lines written between the copy and
// the truncate are lost by logrotate itself (they are in neither file the
// follower reads), so the fair test writes nothing in that window, and
// rotates only once the follower has delivered what was written (as logrotate
// runs hours apart). The bursts differ in size, so the file often grows past
// the old offset before the follower looks again: that is caught by the
// fingerprint, not by size.
func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	logs, log := newLog()
	start(t, c, []string{path}, nil, log)
	rng := rand.New(rand.NewPCG(1, 2))
	truncations := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for w.next < total {
			w.lines(min(200+rng.IntN(1800), total-w.next))
			last := w.next - 1
			if !until(t, "follower to catch up", func() bool { return c.has(last) }) {
				return
			}
			if err := copyFile(path, path+".1"); err != nil {
				t.Error(err)
				return
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Error(err)
				return
			}
			truncations++
		}
	})
	wg.Wait()
	finish(t, c, total)
	if got := logs.count("truncated"); got == 0 || got > truncations {
		t.Errorf("%d truncations logged, want 1..%d", got, truncations)
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func TestDeleteRecreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	start(t, c, []string{path}, nil, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for w.next < total {
			if !seenGen(t, w, c) {
				return
			}
			w.lines(min(1999, total-w.next))
			if err := os.Remove(path); err != nil {
				t.Error(err)
				return
			}
			w.reopen()
		}
	})
	wg.Wait()
	finish(t, c, total)
}

// TestPathsAndGlobs: a file that exists at start (read from its beginning), a
// path that does not exist yet, a glob whose files appear later, and a glob
// over directories that appear later.
func TestPathsAndGlobs(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	exists := filepath.Join(dir, "exists.log")
	later := filepath.Join(dir, "later.log")
	patterns := []string{exists, later, filepath.Join(dir, "sub", "*.log"), filepath.Join(dir, "svc-*", "app.log")}
	files := []string{exists, later, filepath.Join(dir, "sub", "a.log"), filepath.Join(dir, "sub", "b.log"), filepath.Join(dir, "svc-a", "app.log")}
	// Not matched: must never be read.
	must(t, os.WriteFile(filepath.Join(dir, "sub", "a.txt"), []byte("Lxxxxxxx not followed\n"), 0o644))

	first := newWriter(t, exists, 0)
	first.lines(1000)
	c := newCollector()
	logs, log := newLog()
	r := start(t, c, patterns, nil, log)
	// The first pass looks at every path before it reads: once line 0 is in,
	// later.log was seen missing.
	testkit.WaitFor(t, waitMax, "line 0", func() bool { return c.has(0) })
	wantPath := map[int]string{}
	var wg sync.WaitGroup
	wg.Go(func() {
		ws := []*writer{first}
		for n := range 1000 {
			wantPath[n] = exists
		}
		next := 1000
		for i := 0; next < total; i++ {
			if i%10 == 5 && len(ws) < len(files) {
				p := files[len(ws)]
				must2(t, os.MkdirAll(filepath.Dir(p), 0o755))
				ws = append(ws, newWriter(t, p, next))
			}
			w := ws[i%len(ws)]
			w.next = next
			k := min(100, total-next)
			w.lines(k)
			for n := next; n < next+k; n++ {
				wantPath[n] = w.path
			}
			next += k
		}
		for _, w := range ws {
			w.close()
		}
	})
	wg.Wait()
	finish(t, c, total)
	for n := range total {
		if c.path[n] != wantPath[n] {
			t.Fatalf("line %d delivered with path %q, want %q", n, c.path[n], wantPath[n])
		}
	}
	if got := logs.count("does not exist yet"); got != 1 {
		t.Errorf("%d 'does not exist yet' logs, want 1 (for %s only, once):\n%s", got, later, logs)
	}
	if got := logs.count("does not exist yet", "later.log"); got != 1 {
		t.Errorf("'does not exist yet' logged %d times for later.log, want 1", got)
	}
	if got, want := fmt.Sprint(r.f.Files()), fmt.Sprint(sorted(files)); got != want {
		t.Errorf("Files() = %v, want %v", got, want)
	}
}

func must2(t *testing.T, err error) {
	if err != nil {
		t.Error(err)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestGlobMatchesRotatedNames: a glob that also matches the rotated names
// (auth.log*) must not read a rotated file a second time under its new name.
func TestGlobMatchesRotatedNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	logs, log := newLog()
	start(t, c, []string{filepath.Join(dir, "auth.log*")}, nil, log)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for rotations := 1; w.next < total; rotations++ {
			if !seenGen(t, w, c) {
				return
			}
			w.lines(min(2999, total-w.next))
			if err := shift(path); err != nil {
				t.Error(err)
				return
			}
			w.reopen()
			// Wait until the file just renamed to auth.log.1 has drained
			// and been taken up under that name, where a naive follower
			// would read it again.
			if !until(t, "the rotated file followed as auth.log.1", func() bool {
				return logs.count("following file", "auth.log.1") >= rotations
			}) {
				return
			}
		}
	})
	wg.Wait()
	finish(t, c, total)
}
