package follow

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// TestRestart stops a follower in the middle of a stream, writes (and maybe
// rotates) while it is down, and starts a new one from the saved positions:
// every line is delivered once over the two runs.
func TestRestart(t *testing.T) {
	rotations := []struct {
		name   string
		rotate func(t *testing.T, path string, w *writer)
		// reopenLater: the writer goes on with the renamed file after the
		// restart, and creates the new file only then.
		reopenLater bool
	}{
		{"not rotated", func(*testing.T, string, *writer) {}, false},
		{"renamed to .1", func(t *testing.T, path string, w *writer) {
			must(t, os.Rename(path, path+".1"))
			w.lines(500) // still to the renamed file
			w.reopen()
		}, false},
		{"renamed to a dated name", func(t *testing.T, path string, w *writer) {
			must(t, os.Rename(path, path+"-20261126"))
			w.reopen()
		}, false},
		{"renamed, new file not created yet", func(t *testing.T, path string, w *writer) {
			must(t, os.Rename(path, path+".1"))
			w.lines(300)
		}, true},
	}
	saves := []struct {
		name string
		save func(r *running, c *collector) []Position
	}{
		{"Positions", func(r *running, _ *collector) []Position { return r.f.Positions() }},
		{"last line per file", func(_ *running, c *collector) []Position { return c.lastPositions() }},
	}
	for _, rot := range rotations {
		for _, sv := range saves {
			t.Run(rot.name+"/"+sv.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "auth.log")
				c := newCollector()
				w := newWriter(t, path, 0)
				defer w.close()
				w.lines(1000)
				r := start(t, c, []string{path}, nil, nil)
				// Stop mid-stream, while the writer is still writing.
				var wg sync.WaitGroup
				stopped := make(chan struct{})
				wg.Go(func() {
					w.lines(2000)
					<-stopped
					w.lines(2000)
				})
				testkit.WaitFor(t, waitMax, "half the lines", func() bool { return c.distinct() >= 2500 })
				r.stop(t)
				close(stopped)
				wg.Wait()
				saved := sv.save(r, c)
				if len(saved) == 0 {
					t.Fatal("nothing to save")
				}
				got := c.distinct()
				if got >= 5000 {
					t.Fatalf("follower read everything (%d lines) before it was stopped; the test needs it stopped mid-stream", got)
				}

				// Down: more lines, maybe a rotation.
				w.lines(1000)
				rot.rotate(t, path, w)
				w.lines(1000)

				logs, log := newLog()
				start(t, c, []string{path}, saved, log)
				wg.Go(func() {
					if rot.reopenLater {
						w.lines(200)
						w.reopen()
					}
					w.lines(total - w.next)
				})
				wg.Wait()
				finish(t, c, total)
				for n := range total {
					if c.path[n] != path {
						t.Fatalf("line %d delivered with path %q, want %q", n, c.path[n], path)
					}
				}
				if rot.name != "not rotated" && logs.count("rotated while stopped") != 1 {
					t.Errorf("want one 'rotated while stopped' log:\n%s", logs)
				}
			})
		}
	}
}

// TestRestartFileGone: the saved file was rotated and removed while the
// follower was down. Its position is dropped with an Info log, the new file is
// read from its start; the lines only the removed file held are gone.
func TestRestartFileGone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	defer w.close()
	w.lines(3000)
	r := start(t, c, []string{path}, nil, nil)
	testkit.WaitFor(t, waitMax, "first lines", func() bool { return c.distinct() >= 3000 })
	r.stop(t)
	saved := r.f.Positions()

	w.lines(500) // 3000..3499: only in the file about to be removed
	must(t, os.Rename(path, path+".1"))
	must(t, os.Remove(path+".1"))
	w.reopen()
	w.lines(total - w.next)

	logs, log := newLog()
	start(t, c, []string{path}, saved, log)
	finishExcept(t, c, func(n int) bool { return n < 3000 || n >= 3500 })
	// ext4 often gives the new file the removed file's inode number at once:
	// then the saved Sum no longer matches and the file is read from 0 too.
	if logs.count("level=INFO", "not found anymore", "auth.log")+logs.count("level=INFO", "changed while stopped") != 1 {
		t.Errorf("want one Info log about the dropped position:\n%s", logs)
	}
}

// TestRestartTruncated: the file was truncated while the follower was down
// and is now shorter than the saved offset: it is read from 0.
func TestRestartTruncated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	defer w.close()
	w.lines(5000)
	r := start(t, c, []string{path}, nil, nil)
	testkit.WaitFor(t, waitMax, "first lines", func() bool { return c.distinct() >= 5000 })
	r.stop(t)
	saved := r.f.Positions()

	must(t, os.Truncate(path, 0))
	w.lines(1000)
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Size() >= saved[0].Offset {
		t.Fatalf("file regrew to %d, past the saved offset %d: not the case under test", fi.Size(), saved[0].Offset)
	}
	logs, log := newLog()
	start(t, c, []string{path}, saved, log)
	var wg sync.WaitGroup
	wg.Go(func() { w.lines(total - w.next) })
	wg.Wait()
	finish(t, c, total)
	if logs.count("reading from start") != 1 {
		t.Errorf("want one log about reading from start:\n%s", logs)
	}
}

// TestRestartRewritten: truncated while down and regrown past the saved
// offset. Only the Sum in the saved position can tell; the file is read from
// 0.
func TestRestartRewritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	defer w.close()
	w.lines(2000)
	r := start(t, c, []string{path}, nil, nil)
	testkit.WaitFor(t, waitMax, "first lines", func() bool { return c.distinct() >= 2000 })
	r.stop(t)
	saved := r.f.Positions()

	must(t, os.Truncate(path, 0))
	w.lines(total - w.next)
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Size() <= saved[0].Offset {
		t.Fatalf("file is %d bytes, not past the saved offset %d: not the case under test", fi.Size(), saved[0].Offset)
	}
	logs, log := newLog()
	start(t, c, []string{path}, saved, log)
	finish(t, c, total)
	if logs.count("changed while stopped") != 1 {
		t.Errorf("want one 'changed while stopped' log:\n%s", logs)
	}
}

func finishExcept(t *testing.T, c *collector, want func(int) bool) {
	t.Helper()
	n := 0
	for i := range total {
		if want(i) {
			n++
		}
	}
	testkit.WaitFor(t, waitMax, "lines", func() bool { return c.distinct() >= n })
	settle()
	c.check(t, want, total)
}
