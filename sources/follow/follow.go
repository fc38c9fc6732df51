// Package follow follows log files by path and glob across rotations,
// delivering whole lines exactly once, and resumes from saved positions.
// It must not interpret the lines it delivers.
//
// A Follower watches the directories of its patterns with fsnotify and also
// polls (every Options.Poll), so it keeps working where inotify is missing or
// out of watches. It survives the rotations seen on real hosts:
//
//   - rename + create (logrotate's default): the renamed file is kept open and
//     read to its end while the new file is read from its start;
//   - a writer that keeps appending to the renamed file until it reopens (nginx):
//     the old file stays open until it has been unchanged for Options.DrainQuiet;
//   - copytruncate: a file that shrank below the read offset, or whose bytes just
//     before the offset changed (truncated and grown again), is read from 0;
//   - delete + recreate;
//   - a restart: saved positions resume reading, and a saved inode now found
//     under another name in the same directory is read to its end first.
//
// Lines are delivered as they are (no decoding, NUL and invalid UTF-8 kept),
// without the trailing '\n'. A line longer than MaxLine bytes is delivered
// truncated to its first MaxLine bytes, so memory stays bounded. A partial
// last line is held until its newline arrives, or delivered when its file has
// been rotated away and stayed quiet.
//
// What no follower can recover, and this one does not: lines that logrotate's
// copytruncate writes between its copy and its truncate (they are in neither
// file); a file rotated twice before it was ever opened; writes to a rotated
// file after it stayed quiet for DrainQuiet. A glob that also matches rotated
// names (auth.log*) is safe: a file already open under one path is not opened
// under another, and a drained file is taken up at its end under its new name.
package follow

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/moatproj/moat/sources"
)

// Position is sources.Position: how far a file has been read.
type Position = sources.Position

// Line is one whole line read from a file, without its trailing newline.
// Pos is the position just past this line.
//
// Pos.Path is the logical path the file was found at (for example
// /var/log/auth.log), also while the follower is still draining the old file
// that was renamed to /var/log/auth.log.1.
type Line struct {
	Text string
	Pos  Position
	// Read is when the line was read from the file (for latency figures).
	Read time.Time
}

// MaxLine is the longest line delivered. The bytes of a longer line past the
// first MaxLine are read and dropped; the line is delivered when its newline
// arrives, with Pos just past that newline.
const MaxLine = 64 << 10

const (
	defaultPoll       = 250 * time.Millisecond
	defaultDrainQuiet = 10 * time.Second
	// fpSize is how many bytes before the read offset are remembered to notice
	// a file that was truncated and grew again past the offset.
	fpSize = 64
	// readChunk is the size of one read.
	readChunk = 64 << 10
	// cycleBudget caps the bytes read from one file in one pass, so that one
	// busy file does not starve the others.
	cycleBudget = 4 << 20
	// errEvery is how often the same error on the same path is logged again.
	errEvery = 10 * time.Minute
	// retiredMax bounds the memory of files that were fully read and closed.
	retiredMax = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Log attribute keys.
const (
	keyPath    = "path"
	keyFile    = "file"
	keyInode   = "inode"
	keyOffset  = "offset"
	keySize    = "size"
	keyErr     = "err"
	keyPattern = "pattern"
)

// Options configures a Follower. The zero value is usable.
type Options struct {
	// Logger receives Info events (file appeared, rotated, truncated, saved
	// position dropped) and rate-limited Warn events for errors. Nil discards.
	Logger *slog.Logger
	// Poll is how often every path is checked even without an fsnotify event.
	// Default 250ms.
	Poll time.Duration
	// DrainQuiet is how long a rotated-away file must stay unchanged before
	// it is closed. Default 10s.
	DrainQuiet time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Follower follows files matching a set of paths and globs. Create it with
// New; call Run once. Files and Positions are safe for concurrent use.
type Follower struct {
	patterns []string
	saved    []Position
	log      *slog.Logger
	poll     time.Duration
	quiet    time.Duration
	now      func() time.Time

	mu       sync.Mutex
	files    []string   // snapshot for Files
	posSnap  []Position // snapshot for Positions
	runState bool

	// Owned by the Run goroutine.
	paths    map[string]*tracked // by logical path
	start    map[fileID]int64    // saved offsets for files found at their path
	buf      []byte
	errSeen  map[string]errNote
	waiting  map[string]bool // explicit paths logged as missing
	watched  map[string]bool
	watcher  *fsnotify.Watcher
	retired  map[fileID]retiredFile
	retOrder []fileID
	badGlob  map[string]bool
	names    map[string]bool // paths and current names of open files, for events
	passes   atomic.Int64    // for tests: passes over the files
	noNotify bool            // for tests: poll only, as without inotify
}

type fileID struct{ dev, ino uint64 }

type errNote struct {
	msg string
	at  time.Time
}

type retiredFile struct {
	off int64
	sum uint32
}

// tracked is one logical path: the file found there now, and files that were
// found there before and are still being drained.
type tracked struct {
	cur *reader
	old []*reader
}

// reader reads one open file.
type reader struct {
	path    string // logical path
	name    string // where the file is: where it was opened, then its rotated name once known
	f       *os.File
	id      fileID
	off     int64 // next byte to read
	lineOff int64 // just past the last delivered line
	lineSum uint32
	partial []byte
	fp      [fpSize]byte
	fpn     int
	changed time.Time // last time bytes were read or the file was opened
	nlink   uint64
}

// New returns a Follower for patterns (paths, or globs in filepath.Match
// syntax). saved are positions from an earlier run, typically Positions()
// after Run returned, or the Pos of the last line received for each (Path,
// Inode); a file with no saved position is read from its start.
func New(patterns []string, saved []Position, opts Options) *Follower {
	f := &Follower{
		patterns: slices.Clone(patterns),
		saved:    slices.Clone(saved),
		log:      opts.Logger,
		poll:     opts.Poll,
		quiet:    opts.DrainQuiet,
		now:      opts.Now,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.poll <= 0 {
		f.poll = defaultPoll
	}
	if f.quiet <= 0 {
		f.quiet = defaultDrainQuiet
	}
	if f.now == nil {
		f.now = time.Now
	}
	f.paths = map[string]*tracked{}
	f.start = map[fileID]int64{}
	f.buf = make([]byte, readChunk)
	f.errSeen = map[string]errNote{}
	f.waiting = map[string]bool{}
	f.watched = map[string]bool{}
	f.retired = map[fileID]retiredFile{}
	f.badGlob = map[string]bool{}
	f.names = map[string]bool{}
	return f
}

// Files returns the logical paths of the files currently open, sorted.
func (f *Follower) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.files)
}

// Positions returns, for every open file (including rotated files still being
// drained), the position just past its last delivered line. After Run has
// returned, and once the caller has handled every line it received, this is
// what to save and pass to New on the next start. While Run is running it
// reflects the last completed pass, which may be ahead of what the consumer
// has handled if out is buffered: to save while running, keep instead the Pos
// of the last line handled for each (Path, Inode).
func (f *Follower) Positions() []Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.posSnap)
}

// Run follows the files until ctx is done, sending each whole line to out
// exactly once and in file order. It returns nil on cancellation; errors on
// single files (permission denied, vanished directories) are logged,
// rate-limited, and retried at each poll. Run does not close out. Run must be
// called at most once.
func (f *Follower) Run(ctx context.Context, out chan<- Line) error {
	f.mu.Lock()
	if f.runState {
		f.mu.Unlock()
		return errors.New("follow: run called twice")
	}
	f.runState = true
	f.mu.Unlock()

	w, err := fsnotify.NewWatcher()
	if f.noNotify && err == nil {
		w.Close()
		err = errors.New("disabled")
	}
	if err != nil {
		f.log.Warn("fsnotify unavailable, polling only", keyErr, err)
	} else {
		f.watcher = w
		defer w.Close()
	}
	defer f.closeAll()

	f.resume()
	ticker := time.NewTicker(f.poll)
	defer ticker.Stop()
	full := true
	for {
		more, err := f.cycle(ctx, out, full)
		if err != nil {
			return nil // only ctx errors come back from cycle
		}
		if more {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-ticker.C:
				full = true
			default:
				full = false
			}
			continue
		}
		full, err = f.wait(ctx, ticker.C)
		if err != nil {
			return nil
		}
	}
}

// wait blocks until the next pass is due: a poll tick (full), or an fsnotify
// event about one of our files (full if it may change which file is at a
// path). Events about other files in the watched directories are skipped.
func (f *Follower) wait(ctx context.Context, tick <-chan time.Time) (full bool, err error) {
	woken := false
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		if f.watcher != nil {
			events, errs = f.watcher.Events, f.watcher.Errors
		}
		if woken {
			// Coalesce whatever else is already queued, then pass.
			select {
			case ev, ok := <-events:
				if ok {
					full = full || f.structural(ev)
				} else {
					f.watcher = nil
				}
				continue
			default:
				return full, nil
			}
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick:
			return true, nil
		case ev, ok := <-events:
			if !ok {
				f.watcher = nil
				return true, nil
			}
			if f.relevant(ev) {
				woken = true
				full = f.structural(ev)
			}
		case err, ok := <-errs:
			if !ok {
				f.watcher = nil
				return true, nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Missed events only mean a full pass is due.
				f.log.Debug("fsnotify queue overflow")
			} else {
				f.logErr("fsnotify", "watch error", err)
			}
			return true, nil
		}
	}
}

// relevant reports whether ev is about a file we follow or might follow.
func (f *Follower) relevant(ev fsnotify.Event) bool {
	return f.names[ev.Name] || f.matches(ev.Name)
}

// structural reports whether ev may change which file is found at a path.
func (f *Follower) structural(ev fsnotify.Event) bool {
	return f.relevant(ev) && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename))
}

func (f *Follower) closeAll() {
	f.snapshot()
	for _, t := range f.paths {
		if t.cur != nil {
			t.cur.f.Close()
		}
		for _, r := range t.old {
			r.f.Close()
		}
	}
}

// snapshot publishes Files and Positions.
func (f *Follower) snapshot() {
	var files []string
	var pos []Position
	clear(f.names)
	for p, t := range f.paths {
		f.names[p] = true
		if t.cur == nil && len(t.old) == 0 {
			continue
		}
		files = append(files, p)
		for _, r := range t.old {
			f.names[r.name] = true
			pos = append(pos, Position{Path: p, Inode: r.id.ino, Offset: r.lineOff, Sum: r.lineSum})
		}
		if t.cur != nil {
			pos = append(pos, Position{Path: p, Inode: t.cur.id.ino, Offset: t.cur.lineOff, Sum: t.cur.lineSum})
		}
	}
	sort.Strings(files)
	sort.SliceStable(pos, func(i, j int) bool { return pos[i].Path < pos[j].Path })
	f.mu.Lock()
	f.files, f.posSnap = files, pos
	f.mu.Unlock()
}

// matches reports whether path is named by one of the patterns.
func (f *Follower) matches(path string) bool {
	for _, p := range f.patterns {
		if p == path {
			return true
		}
		if ok, err := filepath.Match(p, path); err == nil && ok {
			return true
		}
	}
	return false
}

// resume applies saved positions: an offset for a file still found at its
// path, or a rotated file found under another name in the same directory,
// opened for draining.
func (f *Follower) resume() {
	seen := map[uint64]bool{}
	for _, s := range f.saved {
		if !f.matches(s.Path) {
			f.log.Info("saved position for a path no longer followed, dropped", keyPath, s.Path)
			continue
		}
		if seen[s.Inode] {
			continue
		}
		seen[s.Inode] = true
		if fi, err := os.Stat(s.Path); err == nil {
			if id, _ := statID(fi); id.ino == s.Inode {
				if sameFile(s.Path, s) {
					f.start[id] = s.Offset
				} else {
					f.log.Info("file changed while stopped, reading from start",
						keyPath, s.Path, keyInode, s.Inode, keyOffset, s.Offset)
					f.start[id] = 0
				}
				continue
			}
		}
		name, ok := findInode(filepath.Dir(s.Path), s.Inode)
		if ok && !sameFile(name, s) {
			ok = false // the inode number was reused by another file
		}
		if !ok {
			f.log.Info("saved file not found anymore, position dropped",
				keyPath, s.Path, keyInode, s.Inode, keyOffset, s.Offset)
			continue
		}
		r, err := f.open(s.Path, name, s.Offset)
		if err != nil {
			f.logErr(name, "open rotated file", err)
			continue
		}
		f.log.Info("draining file rotated while stopped", keyPath, s.Path, keyFile, name, keyOffset, r.off)
		f.track(s.Path).old = append(f.track(s.Path).old, r)
	}
}

// sameFile reports whether the file at name still holds, just before
// s.Offset, the bytes s.Sum was computed from. A shorter file is not the same
// file; a position without Sum is trusted.
func sameFile(name string, s Position) bool {
	if s.Sum == 0 || s.Offset == 0 {
		return true
	}
	fh, err := os.Open(name)
	if err != nil {
		return true // let open report the error
	}
	defer fh.Close()
	n := min(s.Offset, fpSize)
	var b [fpSize]byte
	if _, err := fh.ReadAt(b[:n], s.Offset-n); err != nil {
		return false
	}
	return crc32.Checksum(b[:n], castagnoli) == s.Sum
}

func (f *Follower) track(path string) *tracked {
	t := f.paths[path]
	if t == nil {
		t = &tracked{}
		f.paths[path] = t
	}
	return t
}

// findInode looks in dir for a regular file with inode ino.
func findInode(dir string, ino uint64) (string, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if id, ok := statID(fi); ok && id.ino == ino {
			return filepath.Join(dir, e.Name()), true
		}
	}
	return "", false
}

func statID(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// open opens name as a reader for logical path, at offset off (0 if the file
// is shorter than off).
func (f *Follower) open(path, name string, off int64) (*reader, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	id, _ := statID(fi)
	r := &reader{path: path, name: name, f: fh, id: id, changed: f.now()}
	if off > fi.Size() {
		f.log.Info("saved offset beyond end of file, reading from start",
			keyPath, path, keyFile, name, keyOffset, off, keySize, fi.Size())
		off = 0
	}
	if off > 0 {
		n := min(off, fpSize)
		if _, err := fh.ReadAt(r.fp[:n], off-n); err != nil {
			fh.Close()
			return nil, err
		}
		r.fpn = int(n)
	}
	r.off, r.lineOff, r.lineSum = off, off, r.sum()
	return r, nil
}

// expand returns the paths named by the patterns now, and the directories to
// watch.
func (f *Follower) expand() (paths []string, dirs []string) {
	set := map[string]bool{}
	dset := map[string]bool{}
	for _, p := range f.patterns {
		dir := filepath.Dir(p)
		if hasMeta(dir) {
			ds, _ := filepath.Glob(dir)
			for _, d := range ds {
				dset[d] = true
			}
		} else {
			dset[dir] = true
		}
		if !hasMeta(p) {
			set[p] = true
			continue
		}
		ms, err := filepath.Glob(p)
		if err != nil {
			if !f.badGlob[p] {
				f.badGlob[p] = true
				f.log.Warn("bad glob pattern", keyPattern, p, keyErr, err)
			}
			continue
		}
		for _, m := range ms {
			set[m] = true
		}
	}
	for p := range f.paths {
		set[p] = true
	}
	for p := range set {
		paths = append(paths, p)
	}
	for d := range dset {
		dirs = append(dirs, d)
	}
	sort.Strings(paths)
	return paths, dirs
}

func hasMeta(p string) bool {
	return bytes.ContainsAny([]byte(p), `*?[\`)
}

// cycle does one pass: on full passes, find which file is at each path; then
// read every open file. more reports that some file had more to read than one
// pass allows.
func (f *Follower) cycle(ctx context.Context, out chan<- Line, full bool) (more bool, err error) {
	f.passes.Add(1)
	if full {
		f.scan()
	}
	keys := make([]string, 0, len(f.paths))
	for p := range f.paths {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		t := f.paths[p]
		// Old files first: their lines were written before the new file's.
		kept := t.old[:0]
		for _, r := range t.old {
			m, done, err := f.drain(ctx, r, out)
			if err != nil {
				return false, err
			}
			more = more || m
			if done {
				f.retire(r)
				continue
			}
			kept = append(kept, r)
		}
		clear(t.old[len(kept):])
		t.old = kept
		if t.cur != nil {
			m, err := f.read(ctx, t.cur, out)
			if err != nil {
				return false, err
			}
			more = more || m
		}
		if t.cur == nil && len(t.old) == 0 && !f.matchesLiteral(p) {
			delete(f.paths, p)
		}
	}
	f.snapshot()
	return more, nil
}

func (f *Follower) matchesLiteral(p string) bool {
	return slices.Contains(f.patterns, p)
}

// scan finds the file at each path and reacts to rotation, deletion and new
// files.
func (f *Follower) scan() {
	paths, dirs := f.expand()
	if f.watcher != nil {
		for _, d := range dirs {
			if f.watched[d] {
				continue
			}
			if err := f.watcher.Add(d); err == nil {
				f.watched[d] = true
			} else if !errors.Is(err, fs.ErrNotExist) {
				// Out of inotify watches, say: polling still covers it.
				f.logErr(d, "watch directory", err)
			}
		}
	}
	held := map[fileID]bool{}
	for _, t := range f.paths {
		if t.cur != nil {
			held[t.cur.id] = true
		}
		for _, r := range t.old {
			held[r.id] = true
		}
	}
	for _, p := range paths {
		t := f.paths[p]
		fi, err := os.Stat(p)
		if err != nil {
			if t != nil && t.cur != nil {
				f.toOld(t)
			}
			if errors.Is(err, fs.ErrNotExist) {
				if f.matchesLiteral(p) && !f.waiting[p] && (t == nil || t.cur == nil) {
					f.waiting[p] = true
					f.log.Info("file does not exist yet, waiting for it", keyPath, p)
				}
			} else {
				f.logErr(p, "stat", err)
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		id, _ := statID(fi)
		if t != nil && t.cur != nil && t.cur.id == id {
			continue
		}
		if t != nil && t.cur != nil {
			f.toOld(t)
		}
		// The same file back at its path (moved away and back): keep reading it.
		if t != nil {
			if i := slices.IndexFunc(t.old, func(r *reader) bool { return r.id == id }); i >= 0 {
				t.cur = t.old[i]
				t.old = slices.Delete(t.old, i, i+1)
				continue
			}
		}
		if held[id] {
			// Already read under another path (a glob that also matches rotated
			// names): reading it twice would duplicate lines.
			continue
		}
		off, fromSaved := f.start[id]
		if fromSaved {
			delete(f.start, id)
		} else if rf, ok := f.retired[id]; ok {
			off = rf.off
		}
		r, err := f.open(p, p, off)
		if err != nil {
			f.logErr(p, "open", err)
			continue
		}
		if !fromSaved && off > 0 && r.sum() != f.retired[id].sum {
			// Inode reused by a new file: read it from the start.
			r.reset()
		}
		delete(f.retired, id)
		delete(f.errSeen, p)
		held[id] = true
		f.track(p).cur = r
		f.log.Info("following file", keyPath, p, keyInode, id.ino, keyOffset, r.off)
	}
}

// toOld moves the file at t's path to the drained files, and learns its new
// name (logrotate's path.1) so that writes to it wake the follower.
func (f *Follower) toOld(t *tracked) {
	r := t.cur
	t.cur = nil
	r.changed = f.now()
	if name, ok := findInode(filepath.Dir(r.path), r.id.ino); ok {
		r.name = name
	}
	f.log.Info("file rotated or removed, draining the old one", keyPath, r.path, keyInode, r.id.ino, keyFile, r.name)
	t.old = append(t.old, r)
}

// retire closes a fully drained reader and remembers how far it was read, so
// that a glob matching its new name does not read it again.
func (f *Follower) retire(r *reader) {
	r.f.Close()
	f.log.Info("finished draining rotated file", keyPath, r.path, keyInode, r.id.ino, keyOffset, r.off)
	if r.nlink == 0 {
		return // removed: no path can lead to it again, and its inode may be reused
	}
	if _, ok := f.retired[r.id]; !ok {
		f.retOrder = append(f.retOrder, r.id)
	}
	f.retired[r.id] = retiredFile{off: r.off, sum: r.sum()}
	for len(f.retOrder) > retiredMax {
		delete(f.retired, f.retOrder[0])
		f.retOrder = f.retOrder[1:]
	}
}

// drain reads a rotated-away file. done reports that it is finished: read to
// its end, and either removed or unchanged for DrainQuiet. A partial last line
// is delivered then.
func (f *Follower) drain(ctx context.Context, r *reader, out chan<- Line) (more, done bool, err error) {
	more, err = f.read(ctx, r, out)
	if err != nil || more {
		return more, false, err
	}
	if r.nlink > 0 && f.now().Sub(r.changed) < f.quiet {
		return false, false, nil
	}
	if len(r.partial) > 0 {
		if err := send(ctx, out, Line{Text: string(r.partial), Pos: Position{Path: r.path, Inode: r.id.ino, Offset: r.off, Sum: r.sum()}, Read: f.now()}); err != nil {
			return false, false, err
		}
		r.partial = r.partial[:0]
		r.lineOff, r.lineSum = r.off, r.sum()
	}
	return false, true, nil
}

// read reads r from its offset, up to cycleBudget bytes, sending whole lines.
func (f *Follower) read(ctx context.Context, r *reader, out chan<- Line) (more bool, err error) {
	fi, err := r.f.Stat()
	if err != nil {
		f.logErr(r.name, "stat open file", err)
		return false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		r.nlink = uint64(st.Nlink)
	}
	if size := fi.Size(); size < r.off {
		f.log.Info("file truncated, reading from start", keyPath, r.path, keyInode, r.id.ino, keyOffset, r.off, keySize, size)
		r.reset()
	} else if r.fpn > 0 {
		var now [fpSize]byte
		n, err := r.f.ReadAt(now[:r.fpn], r.off-int64(r.fpn))
		if err != nil && !errors.Is(err, io.EOF) {
			f.logErr(r.name, "read", err)
			return false, nil
		}
		if n != r.fpn || !bytes.Equal(now[:n], r.fp[:r.fpn]) {
			f.log.Info("file truncated and rewritten, reading from start", keyPath, r.path, keyInode, r.id.ino, keyOffset, r.off)
			r.reset()
		}
	}
	budget := cycleBudget
	for budget > 0 {
		n, err := r.f.ReadAt(f.buf, r.off)
		if n > 0 {
			r.changed = f.now()
			if err := r.lines(ctx, f.buf[:n], f.now(), out); err != nil {
				return false, err
			}
			budget -= n
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.logErr(r.name, "read", err)
			}
			return false, nil
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}

// sum is the CRC-32C of the remembered bytes before r.off.
func (r *reader) sum() uint32 {
	if r.fpn == 0 {
		return 0
	}
	return crc32.Checksum(r.fp[:r.fpn], castagnoli)
}

func (r *reader) reset() {
	r.off, r.lineOff, r.lineSum, r.fpn = 0, 0, 0, 0
	r.partial = r.partial[:0]
}

// lines splits chunk, read at r.off at time read, into lines and sends the
// whole ones.
func (r *reader) lines(ctx context.Context, chunk []byte, read time.Time, out chan<- Line) error {
	base := r.off
	start := 0
	for {
		i := bytes.IndexByte(chunk[start:], '\n')
		if i < 0 {
			r.addPartial(chunk[start:])
			break
		}
		end := start + i
		var text string
		if len(r.partial) == 0 {
			seg := chunk[start:end]
			if len(seg) > MaxLine {
				seg = seg[:MaxLine]
			}
			text = string(seg)
		} else {
			r.addPartial(chunk[start:end])
			text = string(r.partial)
			r.partial = r.partial[:0]
		}
		off := base + int64(end) + 1
		// CRC-32C of the up to fpSize bytes ending with this newline: from the
		// chunk, preceded if needed by the remembered bytes before it.
		var sum uint32
		if end+1 >= fpSize {
			sum = crc32.Checksum(chunk[end+1-fpSize:end+1], castagnoli)
		} else {
			need := min(fpSize-(end+1), r.fpn)
			sum = crc32.Update(crc32.Checksum(r.fp[r.fpn-need:r.fpn], castagnoli), castagnoli, chunk[:end+1])
		}
		if err := send(ctx, out, Line{Text: text, Pos: Position{Path: r.path, Inode: r.id.ino, Offset: off, Sum: sum}, Read: read}); err != nil {
			return err
		}
		r.lineOff, r.lineSum = off, sum
		start = end + 1
	}
	n := len(chunk)
	r.off += int64(n)
	if n >= fpSize {
		copy(r.fp[:], chunk[n-fpSize:])
		r.fpn = fpSize
	} else {
		keep := min(r.fpn, fpSize-n)
		copy(r.fp[:keep], r.fp[r.fpn-keep:r.fpn])
		copy(r.fp[keep:], chunk)
		r.fpn = keep + n
	}
	return nil
}

// addPartial keeps up to MaxLine bytes of the pending line.
func (r *reader) addPartial(b []byte) {
	if room := MaxLine - len(r.partial); len(b) > room {
		b = b[:room]
	}
	r.partial = append(r.partial, b...)
}

func send(ctx context.Context, out chan<- Line, l Line) error {
	select {
	case out <- l:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logErr logs err for key once, then again only if it changes or errEvery
// has passed.
func (f *Follower) logErr(key, op string, err error) {
	now := f.now()
	msg := op + ": " + err.Error()
	if n, ok := f.errSeen[key]; ok && n.msg == msg && now.Sub(n.at) < errEvery {
		return
	}
	f.errSeen[key] = errNote{msg: msg, at: now}
	f.log.Warn("cannot read file, will retry", keyPath, key, keyErr, msg)
}
