// Package journal reads the systemd journal: it owns running `journalctl
// --follow --output=json` as a supervised child (restarted with backoff
// when it exits, its stderr logged, killed when the context ends), the
// journalmatch syntax of fail2ban and its mapping to journalctl's match
// arguments, decoding journalctl's JSON entries, formatting each entry as
// fail2ban's systemd backend formats it for matching, and resuming after a
// saved cursor (or, with none, from a time before now, as fail2ban does).
//
// Like the other sources it hands entries over, formatted but not
// interpreted: it must not match lines (filters does) nor decide bans (jail
// does), and it imports no moat package but sources.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moatproj/moat/sources"
)

// Options configures a Follower. The zero value is usable.
type Options struct {
	// Since is how far back to start when no cursor was saved for the
	// stream: entries logged at or after now minus Since are read first,
	// then new ones. fail2ban's systemd backend starts at now minus the
	// jail's findtime (or at the time it saved, if later), so give the
	// jail's FindTime. 0 reads only entries logged from now on.
	Since time.Duration
	// Journalctl is the journalctl program. Default "journalctl", looked
	// up in PATH.
	Journalctl string
	// Logger receives the child's stderr (Warn), its exits and restarts
	// (Warn), and entries that cannot be decoded (Warn). Nil discards.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before journalctl is
	// started again after it exited: the wait doubles from MinBackoff with
	// each exit that comes soon after the start, and is back to MinBackoff
	// after a run that lasted 10s or delivered an entry. Defaults 100ms and
	// 30s.
	MinBackoff, MaxBackoff time.Duration
	// MaxEntry is the longest JSON line read from journalctl; a longer
	// entry is logged and skipped (the next entry's cursor moves past it).
	// Default 4 MiB.
	MaxEntry int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// stableRun is how long a journalctl run must last for its exit not to
// lengthen the backoff.
const stableRun = 10 * time.Second

// Follower follows the entries of the journal that a Match selects.
// Create it with New and call Run once; Position is safe for concurrent
// use.
type Follower struct {
	match  Match
	key    string
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	prog   string
	minBO  time.Duration
	maxBO  time.Duration
	maxEnt int

	mu     sync.Mutex
	cursor string    // the last entry delivered (or the saved one)
	since  time.Time // where to start while cursor is ""
	ran    bool
}

// New returns a Follower of the entries m selects. saved are the
// positions the jail engine kept: the one whose Path is m.Key() and that
// has a cursor is resumed after (its entry is not delivered again). A saved
// cursor that is not one (CheckCursor) is logged and dropped; the Follower
// then starts as with none.
func New(m Match, saved []sources.Position, opts Options) *Follower {
	f := &Follower{
		match: m, key: m.Key(), opts: opts, log: opts.Logger, now: opts.Now,
		prog: opts.Journalctl, minBO: opts.MinBackoff, maxBO: opts.MaxBackoff, maxEnt: opts.MaxEntry,
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.prog == "" {
		f.prog = "journalctl"
	}
	if f.minBO <= 0 {
		f.minBO = 100 * time.Millisecond
	}
	if f.maxBO < f.minBO {
		f.maxBO = max(30*time.Second, f.minBO)
	}
	if f.maxEnt <= 0 {
		f.maxEnt = 4 << 20
	}
	for _, p := range saved {
		if p.Path != f.key || p.Cursor == "" {
			continue
		}
		if err := CheckCursor(p.Cursor); err != nil {
			f.log.Warn("journal: dropping saved cursor", "key", f.key, "cursor", p.Cursor, "err", err)
			continue
		}
		f.cursor = p.Cursor
	}
	return f
}

// Key is the Path of the positions this Follower hands over (Match.Key).
func (f *Follower) Key() string { return f.key }

// Position is the position just past the last entry delivered (or the
// saved one Run resumes after); its Cursor is "" before there is one.
func (f *Follower) Position() sources.Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sources.Position{Path: f.key, Cursor: f.cursor}
}

// Run starts journalctl and sends each entry it reads to out, in journal
// order, each once: when journalctl exits (or is killed) it is started
// again after a backoff, from the last entry sent. It returns nil when ctx
// ends, after journalctl has been killed and reaped; journalctl also dies
// with moat (Pdeathsig). Run does not close out, and must be called at
// most once.
//
// journalctl runs as `journalctl --follow --output=json --all --no-pager
// --no-tail --system` with --cursor=C or --since=@T and, after "--", the
// match terms. --all gives fields longer than 4096 bytes whole (fail2ban's
// reader has them whole) instead of null; --system reads the system
// journal only, as fail2ban's default journalflags (SD_JOURNAL_SYSTEM) do.
func (f *Follower) Run(ctx context.Context, out chan<- Entry) error {
	f.mu.Lock()
	if f.ran {
		f.mu.Unlock()
		return errors.New("journal: run called twice")
	}
	f.ran = true
	if f.cursor == "" {
		f.since = f.now().Add(-f.opts.Since)
	}
	f.mu.Unlock()

	backoff := f.minBO
	for {
		start := f.now()
		n, err := f.runOnce(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 || f.now().Sub(start) >= stableRun {
			backoff = f.minBO
		}
		f.log.Warn("journal: journalctl exited, starting it again", "key", f.key, "err", err, "entries", n, "after", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, f.maxBO)
	}
}

// args are journalctl's arguments for the next start: from the last
// entry delivered, or from the start time. skip is that entry's cursor,
// which the run must not deliver again.
//
// --cursor, not --after-cursor: journalctl skips two entries after seeking
// to an --after-cursor, taking the first for the cursor's own, so when the
// cursor's entry is gone (vacuumed) or the seek lands elsewhere, the entry
// after it would be lost. With --cursor the first entry is the cursor's
// own if it is still there, and is dropped only when its cursor is the
// same.
func (f *Follower) args() (a []string, skip string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a = []string{"--follow", "--output=json", "--all", "--no-pager", "--no-tail", "--system"}
	if f.cursor != "" {
		a = append(a, "--cursor="+f.cursor)
		skip = f.cursor
	} else {
		us := f.since.UnixMicro()
		a = append(a, fmt.Sprintf("--since=@%d.%06d", us/1e6, us%1e6))
	}
	if len(f.match) > 0 {
		a = append(a, "--")
		a = append(a, f.match.Args()...)
	}
	return a, skip
}

// runOnce runs journalctl until it exits or ctx ends, and returns how
// many entries it delivered.
func (f *Follower) runOnce(ctx context.Context, out chan<- Entry) (int, error) {
	args, skip := f.args()
	cmd := exec.CommandContext(ctx, f.prog, args...)
	// Die with moat, even by kill -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	var lastErr string
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			line := sc.Text()
			lastErr = line
			f.log.Warn("journal: journalctl says", "key", f.key, "stderr", line)
		}
		io.Copy(io.Discard, stderr)
	})
	n, readErr := f.read(ctx, stdout, out, skip)
	if readErr != nil {
		// Stop reading: kill it so Wait returns.
		cmd.Process.Kill()
	}
	io.Copy(io.Discard, stdout)
	wg.Wait()
	err = cmd.Wait()
	if err == nil {
		err = errors.New("exited")
	}
	if lastErr != "" {
		err = fmt.Errorf("%w: %s", err, lastErr)
	}
	return n, err
}

// read delivers the entries of one journalctl run; its first entry is
// dropped if its cursor is skip.
func (f *Follower) read(ctx context.Context, r io.Reader, out chan<- Entry, skip string) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // the start of a line longer than br's buffer
	tooLong := false
	n := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !tooLong && len(long)+len(chunk) > f.maxEnt {
				tooLong, long = true, nil
			}
			if !tooLong {
				long = append(long, chunk...)
			}
			continue
		}
		if err != nil {
			return n, nil // journalctl exited; a partial last line is read again after the restart
		}
		line := chunk
		if tooLong || long != nil {
			if tooLong || len(long)+len(chunk) > f.maxEnt {
				f.log.Warn("journal: skipping an entry longer than MaxEntry", "key", f.key, "max", f.maxEnt)
				tooLong, long = false, nil
				continue
			}
			line, long = append(long, chunk...), nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		e, err := DecodeEntry(line, f.key)
		if err != nil {
			f.log.Warn("journal: skipping an entry that cannot be decoded", "key", f.key, "err", err)
			continue
		}
		first := skip
		skip = ""
		if e.Cursor == first {
			continue
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return n, ctx.Err()
		}
		n++
		f.mu.Lock()
		f.cursor = e.Cursor
		f.mu.Unlock()
	}
}

// CheckCursor reports whether c has the form of a journal cursor that
// journalctl can seek to: ";"-separated k=v items with s and b 128-bit
// hex IDs and i, m, t, x hex numbers, enough of them to locate an entry
// (s and i, b and m, or t). Unknown items are allowed, as journald
// ignores them.
func CheckCursor(c string) error {
	if c == "" {
		return errors.New("empty cursor")
	}
	have := map[byte]bool{}
	for item := range strings.SplitSeq(c, ";") {
		if len(item) < 2 || item[1] != '=' {
			return fmt.Errorf("cursor item %q is not k=v", item)
		}
		k, v := item[0], item[2:]
		switch k {
		case 's', 'b':
			if len(v) != 32 || !isHex(v) {
				return fmt.Errorf("cursor item %q: not a 128-bit ID", item)
			}
		case 'i', 'm', 't', 'x':
			if _, err := strconv.ParseUint(v, 16, 64); err != nil {
				return fmt.Errorf("cursor item %q: not a hex number", item)
			}
		default:
			continue
		}
		have[k] = true
	}
	if !(have['s'] && have['i'] || have['b'] && have['m'] || have['t']) {
		return errors.New("cursor locates no entry (needs s and i, b and m, or t)")
	}
	return nil
}

func isHex(s string) bool {
	return !slices.ContainsFunc([]byte(s), func(c byte) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
	})
}

// Dump reads once, in journal order, the entries of the system journal
// that m selects, from the journal's start to its current end (no
// following), and calls each with every one; an error from each stops the
// reading and is returned. It runs `journalctl --output=json --all
// --no-pager --system` with the match terms after "--" (Options:
// Journalctl, MaxEntry and Logger, which also receives the entries that
// cannot be decoded; the other fields are unused). This is how
// fail2ban-regex reads systemd-journal.
func Dump(ctx context.Context, m Match, opts Options, each func(Entry) error) error {
	f := New(m, nil, opts)
	a := []string{"--output=json", "--all", "--no-pager", "--system"}
	if len(m) > 0 {
		a = append(a, "--")
		a = append(a, m.Args()...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.prog, a...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	entries := make(chan Entry)
	var eachErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range entries {
			if eachErr = each(e); eachErr != nil {
				cancel()
				break
			}
		}
		for range entries {
		}
	}()
	_, readErr := f.read(ctx, stdout, entries, "")
	close(entries)
	<-done
	if readErr != nil || eachErr != nil {
		cmd.Process.Kill()
	}
	io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	switch {
	case eachErr != nil:
		return eachErr
	case ctx.Err() != nil && readErr != nil:
		return readErr
	case waitErr != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("journal: journalctl: %w: %s", waitErr, msg)
		}
		return fmt.Errorf("journal: journalctl: %w", waitErr)
	}
	return nil
}
