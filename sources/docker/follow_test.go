package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproj/moat/sources/follow"
)

// jsonFileWriter writes a json-file log the way Docker's json-file driver
// does: one JSON object per line, lines longer than 16 KiB split into pieces
// whose "log" does not end in "\n", and rotation (when the file passes
// maxSize, before the next entry) by removing <path>.<maxFile-1>, shifting
// <path>.N to <path>.N+1, renaming <path> to <path>.1 and creating a new
// <path>. Writes and rotation happen in the one writer goroutine, as in
// Docker, so nothing is written to a file after it was renamed.
type jsonFileWriter struct {
	path    string
	maxSize int64
	maxFile int
	f       *os.File
	size    int64
	now     time.Time
	rotated int
	// linesDone counts whole lines written; firstLine is linesDone when the
	// current file was created.
	linesDone, firstLine int
	// beforeRotate is called before each rotation (to let the follower open
	// the current file: a file rotated twice before it was ever opened is
	// lost to any follower).
	beforeRotate func() bool
}

func (w *jsonFileWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	w.f, w.size, w.firstLine = f, 0, w.linesDone
	return nil
}

func (w *jsonFileWriter) rotate() error {
	if w.beforeRotate != nil && !w.beforeRotate() {
		return fmt.Errorf("follower did not open %s in time", w.path)
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	last := w.path + "." + strconv.Itoa(w.maxFile-1)
	if err := os.Remove(last); err != nil && !os.IsNotExist(err) {
		return err
	}
	for i := w.maxFile - 2; i >= 1; i-- {
		from := w.path + "." + strconv.Itoa(i)
		if err := os.Rename(from, w.path+"."+strconv.Itoa(i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return err
	}
	w.rotated++
	return w.open()
}

// entry writes one json-file entry, rotating first if the file is full or
// force is set.
func (w *jsonFileWriter) entry(log, stream string, force bool) error {
	if force || w.size >= w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	w.now = w.now.Add(time.Millisecond)
	b, err := json.Marshal(struct {
		Log    string    `json:"log"`
		Stream string    `json:"stream"`
		Time   time.Time `json:"time"`
	}{log, stream, w.now})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	n, err := w.f.Write(b)
	w.size += int64(n)
	return err
}

// line writes one program line of stream, split in 16 KiB pieces as Docker
// does; rotateInside forces a rotation between its first two pieces.
func (w *jsonFileWriter) line(text, stream string, rotateInside bool) error {
	const piece = 16 << 10
	pieces := 0
	for len(text) > piece {
		if err := w.entry(text[:piece], stream, rotateInside && pieces == 1); err != nil {
			return err
		}
		text = text[piece:]
		pieces++
	}
	if err := w.entry(text+"\n", stream, rotateInside && pieces == 1); err != nil {
		return err
	}
	w.linesDone++
	return nil
}

// numbered is the text of line n; every 97th line is long (split by Docker).
func numbered(n int) string {
	s := fmt.Sprintf("line %06d from 192.0.2.%d", n, n%250+1)
	if n%97 == 5 {
		s += " " + strings.Repeat(strconv.Itoa(n%10), 40<<10)
	}
	return s
}

// TestFollowAcrossRotation follows a container's json-file log with
// sources/follow while a writer appends numbered lines (some split into
// pieces, some on stderr interleaved with a split stdout line) and rotates
// the file several times as Docker does; every line must arrive through the
// Decoder exactly once, whole, in order.
func TestFollowAcrossRotation(t *testing.T) {
	const total = 6000
	root := t.TempDir()
	id := writeContainer(t, root, fakeID("web"), spec{name: "web", driver: DriverJSONFile, running: true, started: true})
	cs, errs := Scan(root)
	if len(cs) != 1 || len(errs) != 0 {
		t.Fatalf("Scan = %v, %v", cs, errs)
	}
	path := JSONLogPath(root, cs[0])
	if path != filepath.Join(root, "containers", id, id+"-json.log") {
		t.Fatalf("JSONLogPath = %s", path)
	}

	var got atomic.Int64 // lines received
	w := &jsonFileWriter{path: path, maxSize: 96 << 10, maxFile: 3, now: time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC)}
	if err := w.open(); err != nil {
		t.Fatal(err)
	}
	w.beforeRotate = func() bool {
		deadline := time.Now().Add(20 * time.Second)
		for got.Load() <= int64(w.firstLine) {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
		return true
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan follow.Line, 64)
	fl := follow.New([]string{path}, nil, follow.Options{Poll: 50 * time.Millisecond, DrainQuiet: 300 * time.Millisecond, Logger: testLogger(t)})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fl.Run(ctx, out)
	}()

	// Consumer: decode every delivered line and check it is the next one.
	var problems []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		d := NewDecoder()
		next := 0
		last := time.Time{}
		for {
			var l follow.Line
			select {
			case l = <-out:
			case <-ctx.Done():
				return
			}
			text, tm, ok, err := d.Decode([]byte(l.Text))
			if err != nil {
				problems = append(problems, fmt.Sprintf("decode %q: %v", short(l.Text), err))
				continue
			}
			if !ok {
				continue
			}
			if text != numbered(next) {
				problems = append(problems, fmt.Sprintf("got %q (%d bytes), want line %d", short(text), len(text), next))
				if n, err := strconv.Atoi(strings.Fields(text + " x x")[1]); err == nil {
					next = n
				}
			}
			// A joined line has the time of its first piece, written before
			// the stderr line that completed first.
			if tm.IsZero() || tm.Before(last) && next%500 != 251 {
				problems = append(problems, fmt.Sprintf("line %d: time %v before %v", next, tm, last))
			}
			last = tm
			next++
			got.Store(int64(next))
			if next == total || len(problems) > 20 {
				return
			}
		}
	}()

	// Writer.
	werr := make(chan error, 1)
	go func() {
		werr <- func() error {
			for n := 0; n < total; n++ {
				if n%500 == 250 && n+1 < total {
					// A stdout line in two pieces with a whole stderr line
					// written between them, and (the first time) a rotation
					// before its last piece: the stderr line completes first,
					// so it is line n.
					text := numbered(n + 1)
					if err := w.entry(text[:len(text)/2], "stdout", false); err != nil {
						return err
					}
					if err := w.line(numbered(n), "stderr", false); err != nil {
						return err
					}
					if err := w.entry(text[len(text)/2:]+"\n", "stdout", n == 250); err != nil {
						return err
					}
					w.linesDone++
					n++
					continue
				}
				// The first long line has a rotation between its pieces.
				if err := w.line(numbered(n), "stdout", n == 5); err != nil {
					return err
				}
				if n%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			return w.f.Close()
		}()
	}()

	select {
	case <-done:
	case <-time.After(25 * time.Second):
		t.Errorf("timed out: %d of %d lines received", got.Load(), total)
	}
	cancel()
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if got.Load() != total {
		t.Errorf("received %d lines, want %d", got.Load(), total)
	}
	if w.rotated < 5 {
		t.Errorf("only %d rotations, want at least 5", w.rotated)
	}
	t.Logf("%d lines, %d rotations", got.Load(), w.rotated)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
