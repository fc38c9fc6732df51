package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Entry is one request in the access log.
type Entry struct {
	// Time is when the request arrived; it is written in UTC.
	Time time.Time
	// Client is the resolved client address (written unmapped and without
	// a zone; "" when invalid).
	Client netip.Addr
	Host   string
	Method string
	Path   string
	Status int
	// Bytes is the size of the response body sent.
	Bytes    int64
	Duration time.Duration
	// Upstream is the upstream that served the request ("" for none).
	Upstream    string
	RateLimited bool
}

// Access log tuning.
const (
	// accessFlushEvery is how often buffered entries reach the file.
	accessFlushEvery = 100 * time.Millisecond
	// accessCheckEvery is how often the path is compared with the open
	// file, to follow a rotation by rename or removal.
	accessCheckEvery = time.Second
	accessBufSize    = 64 << 10
	accessFileMode   = 0o640
)

// AccessLog writes Entries as JSON lines to a file. Entries are buffered
// and reach the file at least every 100 ms, on Reopen and on Close. It
// notices by itself (about every second) when its path was renamed or
// removed, and reopens it. All methods are safe for concurrent use.
type AccessLog struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	f      *os.File
	fi     os.FileInfo // of f when opened, for os.SameFile
	w      *bufio.Writer
	closed bool
	// failing is set after a write error was logged, so a broken disk
	// gives one message until a write succeeds again.
	failing bool

	// checkFailing is set after a failed rotation check was logged.
	checkFailing atomic.Bool

	stop chan struct{}
	done chan struct{}
}

// OpenAccessLog opens path for appending, creating it with mode 0640 when
// it does not exist, and starts the goroutine that flushes it and watches
// for rotation; Close stops it. log receives write and reopen errors.
func OpenAccessLog(path string, log *slog.Logger) (*AccessLog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, fi, err := openAppend(path)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	a := &AccessLog{
		path: path,
		log:  log,
		f:    f,
		fi:   fi,
		w:    bufio.NewWriterSize(f, accessBufSize),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go a.run()
	return a, nil
}

// openAppend opens path for appending; a file it creates gets mode 0640
// whatever the umask.
func openAppend(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, accessFileMode)
	switch {
	case err == nil:
		if err := f.Chmod(accessFileMode); err != nil {
			f.Close()
			return nil, nil, err
		}
	case errors.Is(err, fs.ErrExist):
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

var entryBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Write appends e to the log. It encodes outside the lock and only copies
// into the buffer under it. After Close it drops e. An I/O error is logged
// (once until writes succeed again), never returned.
func (a *AccessLog) Write(e Entry) {
	bp := entryBufs.Get().(*[]byte)
	b := appendEntry((*bp)[:0], e)
	a.mu.Lock()
	if !a.closed {
		_, err := a.w.Write(b)
		a.noteErr(err)
	}
	a.mu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b
		entryBufs.Put(bp)
	}
}

// noteErr logs a write error once and clears bufio's sticky error (the
// buffered entries are lost: the file could not take them). Called with mu.
func (a *AccessLog) noteErr(err error) {
	if err == nil {
		a.failing = false
		return
	}
	if !a.failing {
		a.log.Error("write access log", "path", a.path, "err", err)
		a.failing = true
	}
	a.w.Reset(a.f)
}

// flush writes the buffered entries to the file.
func (a *AccessLog) flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	if err := a.w.Flush(); err != nil {
		a.noteErr(err)
		return fmt.Errorf("flush access log: %w", err)
	}
	return nil
}

// Reopen flushes what is buffered to the file open now, then opens the path
// again (creating it), so that a log rotated by rename continues in a new
// file. When the path cannot be opened, the old file stays in use and the
// error is returned. No entry is lost or written twice.
func (a *AccessLog) Reopen() error {
	f, fi, err := openAppend(a.path)
	if err != nil {
		return fmt.Errorf("reopen access log: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		f.Close()
		return nil
	}
	ferr := a.w.Flush()
	cerr := a.f.Close()
	a.f, a.fi = f, fi
	a.w.Reset(f)
	if err := errors.Join(ferr, cerr); err != nil {
		return fmt.Errorf("reopen access log: finish old file: %w", err)
	}
	return nil
}

// Close flushes the buffered entries, stops the background goroutine and
// closes the file. Writes after Close are dropped. Close may be called more
// than once; later calls return nil.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	ferr := a.w.Flush()
	cerr := a.f.Close()
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	if err := errors.Join(ferr, cerr); err != nil {
		return fmt.Errorf("close access log: %w", err)
	}
	return nil
}

// run flushes every accessFlushEvery and checks for rotation every
// accessCheckEvery, until Close.
func (a *AccessLog) run() {
	defer close(a.done)
	t := time.NewTicker(accessFlushEvery)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.flush()
		if n++; n%int(accessCheckEvery/accessFlushEvery) == 0 {
			a.checkRotated()
		}
	}
}

// checkRotated reopens the log when its path no longer names the open file
// (renamed away or removed). A failure is logged once until a check
// succeeds again.
func (a *AccessLog) checkRotated() {
	fi, err := os.Stat(a.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.checkFailed(fmt.Errorf("check access log: %w", err))
		return
	}
	a.mu.Lock()
	same := err == nil && os.SameFile(fi, a.fi)
	a.mu.Unlock()
	if !same {
		if err := a.Reopen(); err != nil {
			a.checkFailed(err)
			return
		}
		a.log.Info("access log reopened", "path", a.path)
	}
	a.checkFailing.Store(false)
}

func (a *AccessLog) checkFailed(err error) {
	if !a.checkFailing.Swap(true) {
		a.log.Error("follow access log rotation", "path", a.path, "err", err)
	}
}

// appendEntry appends e as one JSON line (with its newline) to b. Keys come
// in a fixed order: time, client, host, method, path, status, bytes,
// duration, upstream, rate_limited. Strings are escaped so that no value can
// end the line, the string or the object: quotes, backslashes and control
// characters are escaped, invalid UTF-8 becomes U+FFFD. It does not
// allocate when b has room.
func appendEntry(b []byte, e Entry) []byte {
	b = append(b, `{"time":"`...)
	b = appendTime(b, e.Time)
	b = append(b, `","client":"`...)
	if e.Client.IsValid() {
		b = e.Client.Unmap().WithZone("").AppendTo(b)
	}
	b = append(b, `","host":`...)
	b = appendString(b, e.Host)
	b = append(b, `,"method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = appendSeconds(b, e.Duration)
	b = append(b, `,"upstream":`...)
	b = appendString(b, e.Upstream)
	if e.RateLimited {
		b = append(b, `,"rate_limited":true}`+"\n"...)
	} else {
		b = append(b, `,"rate_limited":false}`+"\n"...)
	}
	return b
}

// appendTime writes t in UTC as RFC 3339 with microseconds:
// 2006-01-02T15:04:05.000000Z (the fixed width fail2ban's %f reads).
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, mon, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	h, m, s := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mon), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, m, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits writes the n low decimal digits of v, zero padded.
func appendDigits(b []byte, v, n int) []byte {
	var d [9]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:n]...)
}

// appendSeconds writes d as seconds with six decimals (negative as 0).
func appendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	us := int64(d / time.Microsecond)
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	return appendDigits(b, int(us%1e6), 6)
}

const hexDigits = "0123456789abcdef"

// plainASCII marks the bytes appendString copies as they are.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString writes s as a quoted JSON string, escaping what could break
// a line or the object: '"', '\\', control characters (and DEL), U+2028 and
// U+2029; each byte of invalid UTF-8 becomes \ufffd, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainASCII[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
