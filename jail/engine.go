package jail

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/sources"
)

// Firewall is the subset of firewall.Backend the engine uses. The engine
// serialises its calls.
type Firewall interface {
	Sync(ctx context.Context, jails []firewall.Jail, bans []firewall.Ban, now time.Time) error
	Add(ctx context.Context, bans []firewall.Ban, now time.Time) error
	Delete(ctx context.Context, bans []firewall.Ban) error
	Check(ctx context.Context, now time.Time) (firewall.CheckReport, error)
}

// FirewallStatus is what the periodic firewall checks found, for `moat
// status` and the metrics.
type FirewallStatus struct {
	// Backend names the firewall backend ("nftables", "none"); the engine
	// leaves it empty for its caller to fill.
	Backend string
	// LastCheck is when the kernel was last compared with the bans (zero:
	// not yet); Matched says whether it held exactly what it should then,
	// and Full whether that check read every element back (otherwise the
	// ruleset's generation showed nothing had changed).
	LastCheck time.Time
	Matched   bool
	Full      bool
	// Err is the last check's error, if it failed.
	Err string
	// LastRepair is when a check last found and repaired a difference, and
	// LastRepairKinds what it repaired (kind: count).
	LastRepair      time.Time
	LastRepairKinds map[string]int
	// Repairs counts the repairs since start, by kind.
	Repairs map[string]int
}

// Event is one change of the active bans, reported to Options.Notify.
type Event struct {
	// Kind is "ban", "unban" or "expire".
	Kind   string
	Ban    Ban
	Reason string
}

// Options configure an Engine. StateDir and Firewall are required.
type Options struct {
	StateDir string
	Firewall Firewall
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SelfAddrs returns the host's own addresses (default: from
	// net.InterfaceAddrs). Loopback is always refused anyway.
	SelfAddrs func() []netip.Addr
	// MaxTracked caps the failure windows (one per jail and ban prefix)
	// held in memory across all jails (default 1_000_000). When it is
	// reached, the window whose last failure arrived longest ago is evicted
	// first (LRU by last failure, O(1) per failure); its failures are
	// forgotten.
	MaxTracked int
	// CheckEvery is how often Run sweeps expired bans and checks that the
	// firewall is intact (default 1s).
	CheckEvery time.Duration
	// Notify, when set, is called after each ban, unban or expiry is
	// durable and in the firewall. It is called with the engine's write
	// lock held: it must be quick; it may call Bans, Status, Jails and
	// Positions, but nothing that bans, unbans, configures or checkpoints.
	Notify func(Event)
	// Rand returns a number in [0, 1) for rndtime; default math/rand.
	Rand func() float64
}

// Attribute keys of the ban, unban and expiry log lines.
const (
	keyJail     = "jail"
	keyIP       = "ip"
	keyFailures = "failures"
	keyCount    = "count"
	keyUntil    = "until"
	keyReason   = "reason"
)

// errClosed is returned by calls on a closed engine.
var errClosed = errors.New("jail engine closed")

// never is the expiry index value of a ban without end.
const never = math.MaxInt64

// jailState is one configured jail and its counters since start.
type jailState struct {
	cfg         Config
	findtime    int64
	totalFailed int
	totalBanned int
	// tooOld counts failures dropped because they were older than
	// findtime when read (Status.TooOld).
	tooOld int
}

// pendingBan is a ban decided (window cleared, count taken) but not yet
// committed. Whoever commits next commits it, in the same transaction as
// the checkpoint that no longer holds its window.
type pendingBan struct {
	ban    Ban
	reason string
	// reban: a manual ban of a prefix actively banned (or pending) in the
	// jail when it was decided. It took no count; settleLocked gives it
	// the active ban's count and start.
	reban   bool
	once    sync.Once
	done    chan struct{}
	durable bool
	err     error
}

func (pb *pendingBan) finish(durable bool, err error) {
	pb.once.Do(func() {
		pb.durable, pb.err = durable, err
		close(pb.done)
	})
}

// banRow is a ban as go-memdb holds it. Rows are never modified once
// inserted.
type banRow struct {
	Jail    string
	Prefix  string
	Expires int64 // Unix nanoseconds; never (MaxInt64) for no end
	Ban     Ban
}

var schema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	"bans": {
		Name: "bans",
		Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				&memdb.StringFieldIndex{Field: "Jail"},
				&memdb.StringFieldIndex{Field: "Prefix"},
			}}},
			"jail":    {Name: "jail", Indexer: &memdb.StringFieldIndex{Field: "Jail"}},
			"prefix":  {Name: "prefix", Indexer: &memdb.StringFieldIndex{Field: "Prefix"}},
			"expires": {Name: "expires", Indexer: &memdb.IntFieldIndex{Field: "Expires"}},
		},
	},
}}

// Engine turns failures into bans. It is safe for concurrent use.
//
// Locks: wmu serialises everything durable or external (bbolt commits,
// firewall calls, go-memdb writes) and is always taken before mu. mu guards
// the in-memory state that Failure and Advance touch on every line (jails,
// windows, positions, counts, dirty marks, pending bans); it is never held
// across I/O.
//
// Durability and replay. The checkpoint argument:
//  1. Failure records a failure in its window and sets its file's position
//     to just past the line under one hold of mu; Advance sets a position
//     under mu too. So at any instant of mu, every failure at or before a
//     saved position is in the windows (or was consumed by a ban decided
//     under that same hold, or dropped by eviction/expiry), and no failure
//     after a position is.
//  2. A ban is decided under mu: its window is cleared and the ban is
//     queued as pending in the same hold. Every commit takes, under one
//     hold of mu, all pending bans plus the dirty windows, positions and
//     counts, and writes them in one bbolt transaction (fsynced). Commits
//     are serialised by wmu, and a dirty mark is only cleared by a commit
//     that carries the entry (or restored if that commit fails), so after
//     each commit the file equals memory at that commit's instant.
//  3. After kill -9 the file holds the last committed instant. Replaying
//     each file from its saved position re-reads exactly the lines after
//     it: none of their failures is in the saved windows, each is counted
//     once. A failure before the position is in a saved window or in a
//     saved ban, never re-read. A ban is acknowledged (returned, added to
//     the firewall, notified) only after its commit, so every acknowledged
//     ban is back after a restart.
type Engine struct {
	log        *slog.Logger
	now        func() time.Time
	rnd        func() float64
	selfFn     func() []netip.Addr
	notify     func(Event)
	checkEvery time.Duration
	fw         Firewall
	db         *memdb.MemDB

	wmu      sync.Mutex
	st       *store // nil once closed
	needSync bool
	fwJails  []firewall.Jail

	// fwStatus is what the firewall checks found; written under wmu, read
	// under fwMu.
	fwMu     sync.Mutex
	fwStatus FirewallStatus

	// mu guards the fields below; Blocks, on the proxy's per-request path,
	// only reads them.
	mu      sync.RWMutex
	jails   map[string]*jailState
	self    []netip.Addr
	tr      *tracker
	blocked map[winKey]int64 // active bans: expiry in Unix nanoseconds
	// wide holds, per jail, the active bans that no failure's ban prefix
	// equals (a /24 banned by hand, a /48 in a /64 jail): a failure inside
	// one is ignored too. Usually empty or short.
	wide        map[string][]wideBan
	pendingKeys map[winKey]int // keys with a pending ban
	pending     []*pendingBan
	counts      map[winKey]countRec
	positions   map[string][]inodePos
	dirtyPos    map[string]struct{}
	dirtyCounts map[winKey]struct{}
	// refusedLogs remembers, per jail, the addresses whose refused
	// failures were logged (logRefusedLocked); made on first use.
	refusedLogs map[string]*refusedLog
}

// maxInodes is how many inodes' positions are kept per path.
const maxInodes = 4

// Open opens (or creates) <StateDir>/moat.db, loads the bans and drops
// those that expired while moat was down. Call Configure next: it drops
// the bans of jails no longer configured and syncs the firewall.
func Open(opts Options) (*Engine, error) {
	if opts.StateDir == "" {
		return nil, errors.New("open jail engine: no state directory")
	}
	if opts.Firewall == nil {
		return nil, errors.New("open jail engine: no firewall")
	}
	e := &Engine{
		log:         opts.Logger,
		now:         opts.Now,
		rnd:         opts.Rand,
		selfFn:      opts.SelfAddrs,
		notify:      opts.Notify,
		checkEvery:  opts.CheckEvery,
		fw:          opts.Firewall,
		jails:       make(map[string]*jailState),
		blocked:     make(map[winKey]int64),
		wide:        make(map[string][]wideBan),
		pendingKeys: make(map[winKey]int),
		counts:      make(map[winKey]countRec),
		positions:   make(map[string][]inodePos),
		dirtyPos:    make(map[string]struct{}),
		dirtyCounts: make(map[winKey]struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.rnd == nil {
		e.rnd = rand.Float64
	}
	if e.selfFn == nil {
		e.selfFn = interfaceAddrs
	}
	if e.checkEvery <= 0 {
		e.checkEvery = time.Second
	}
	maxTracked := opts.MaxTracked
	if maxTracked <= 0 {
		maxTracked = 1_000_000
	}
	e.tr = newTracker(maxTracked)

	db, err := memdb.NewMemDB(schema)
	if err != nil {
		return nil, fmt.Errorf("open jail engine: %w", err)
	}
	e.db = db
	st, err := openStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	l, err := st.load(func(bucket string, key []byte, err error) {
		e.log.Warn("skipping damaged state record", "bucket", bucket, "key", string(key), "err", err)
	})
	if err != nil {
		st.close()
		return nil, err
	}
	now := e.now()
	var expired []winKey
	txn := db.Txn(true)
	defer txn.Abort()
	for _, b := range l.bans {
		k := winKey{b.Jail, b.Prefix}
		if !b.Expires.IsZero() && !now.Before(b.Expires) {
			expired = append(expired, k)
			e.logLift("expire", b, "expired while stopped")
			continue
		}
		row := newRow(b)
		if err := txn.Insert("bans", row); err != nil {
			st.close()
			return nil, fmt.Errorf("open jail engine: load ban: %w", err)
		}
		e.blocked[k] = row.Expires
	}
	txn.Commit()
	if err := st.commit(&checkpoint{delBans: expired}); err != nil {
		st.close()
		return nil, fmt.Errorf("open jail engine: drop expired bans: %w", err)
	}
	e.counts = l.counts
	e.positions = l.positions
	for _, sw := range l.windows {
		e.tr.load(sw.k, sw.times)
	}
	e.st = st
	return e, nil
}

func newRow(b Ban) *banRow {
	exp := int64(never)
	if !b.Expires.IsZero() {
		exp = b.Expires.UnixNano()
	}
	return &banRow{Jail: b.Jail, Prefix: b.Prefix.String(), Expires: exp, Ban: b}
}

func interfaceAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip)
			}
		}
	}
	return out
}

// Close closes the state database. It does not write a checkpoint (Run
// writes one when its context ends): state since the last commit is
// recovered by replaying the logs, as after a crash. Bans stay in the
// firewall. Calls after Close return an error.
func (e *Engine) Close() error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return nil
	}
	err := e.st.close()
	e.st = nil
	e.mu.Lock()
	for _, pb := range e.pending {
		pb.finish(false, errClosed)
	}
	e.pending = nil
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close state db: %w", err)
	}
	return nil
}

// validate checks a jail's settings and fills defaults.
func validate(c Config) (Config, error) {
	if c.Name == "" {
		return c, errors.New("jail without a name")
	}
	if c.MaxRetry < 1 {
		return c, fmt.Errorf("jail %s: maxretry %d: want at least 1", c.Name, c.MaxRetry)
	}
	if c.FindTime <= 0 {
		return c, fmt.Errorf("jail %s: findtime %s: want a positive duration", c.Name, c.FindTime)
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return c, fmt.Errorf("jail %s: ipv6 prefix /%d: want 32 to 128", c.Name, c.IPv6Prefix)
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = 128
	}
	if c.IPv6Prefix < 32 {
		return c, fmt.Errorf("jail %s: ipv6 prefix /%d: want 32 to 128", c.Name, c.IPv6Prefix)
	}
	ign := make([]netip.Prefix, 0, len(c.IgnoreIP))
	for _, p := range c.IgnoreIP {
		ign = append(ign, p.Masked())
	}
	c.IgnoreIP = ign
	return c, nil
}

// Configure sets the jails, at start and on reload. Jails whose settings
// did not change keep their windows and bans; a changed jail keeps its bans
// and (unless its IPv6 prefix length changed) its windows. The bans of
// removed jails, and bans a jail's new settings refuse (an ignoreip added),
// are lifted. Then the firewall is synced with every active ban. On a
// validation error nothing changes.
func (e *Engine) Configure(ctx context.Context, jails []Config) error {
	cfgs := make([]Config, 0, len(jails))
	seen := make(map[string]bool)
	for _, c := range jails {
		c, err := validate(c)
		if err != nil {
			return fmt.Errorf("configure jails: %w", err)
		}
		if seen[c.Name] {
			return fmt.Errorf("configure jails: jail %s defined twice", c.Name)
		}
		seen[c.Name] = true
		cfgs = append(cfgs, c)
	}
	self := cleanAddrs(e.selfFn())

	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return errClosed
	}
	if err := e.flushLocked(ctx); err != nil {
		return fmt.Errorf("configure jails: %w", err)
	}

	e.mu.Lock()
	next := make(map[string]*jailState, len(cfgs))
	for _, c := range cfgs {
		js := &jailState{cfg: c, findtime: int64(c.FindTime)}
		if old := e.jails[c.Name]; old != nil {
			js.totalFailed, js.totalBanned, js.tooOld = old.totalFailed, old.totalBanned, old.tooOld
			if old.cfg.IPv6Prefix != c.IPv6Prefix {
				e.tr.removeJail(c.Name)
			}
		}
		next[c.Name] = js
	}
	for name := range e.jails {
		if next[name] == nil {
			e.tr.removeJail(name)
		}
	}
	// Windows loaded from the state db for jails that are not configured.
	for _, name := range e.tr.jailsHeld() {
		if next[name] == nil {
			e.tr.removeJail(name)
		}
	}
	e.jails = next
	e.self = self
	e.rebuildWideLocked()
	e.mu.Unlock()

	e.fwJails = make([]firewall.Jail, 0, len(cfgs))
	for _, c := range cfgs {
		e.fwJails = append(e.fwJails, firewall.Jail{Name: c.Name, Ports: slices.Clone(c.Ports)})
	}
	slices.SortFunc(e.fwJails, func(a, b firewall.Jail) int { return cmp.Compare(a.Name, b.Name) })

	var lift []Ban
	var reasons []string
	for _, r := range e.rowsLocked("") {
		js := next[r.Ban.Jail]
		if js == nil {
			lift = append(lift, r.Ban)
			reasons = append(reasons, "jail removed")
		} else if why := refusal(&js.cfg, r.Ban.Prefix, self); why != "" {
			lift = append(lift, r.Ban)
			reasons = append(reasons, "refused by new settings: "+why)
		}
	}
	// The firewall sync below removes them from the kernel.
	if err := e.liftLocked(ctx, lift, reasons, "unban", false); err != nil {
		return fmt.Errorf("configure jails: %w", err)
	}
	if err := e.syncLocked(ctx); err != nil {
		return fmt.Errorf("configure jails: %w", err)
	}
	return nil
}

// rowsLocked returns the active ban rows of a jail ("" all), in id order.
// It reads a go-memdb snapshot: callers hold a lock only for consistency
// with their own writes (Bans holds none).
func (e *Engine) rowsLocked(jail string) []*banRow {
	txn := e.db.Txn(false)
	defer txn.Abort()
	var it memdb.ResultIterator
	var err error
	if jail == "" {
		it, err = txn.Get("bans", "id")
	} else {
		it, err = txn.Get("bans", "jail", jail)
	}
	if err != nil {
		return nil
	}
	var out []*banRow
	for o := it.Next(); o != nil; o = it.Next() {
		out = append(out, o.(*banRow))
	}
	return out
}

// syncLocked makes the firewall hold exactly the active bans. wmu held.
func (e *Engine) syncLocked(ctx context.Context) error {
	now := e.now()
	var bans []firewall.Ban
	for _, r := range e.rowsLocked("") {
		if r.Expires != never && r.Expires <= now.UnixNano() {
			continue
		}
		bans = append(bans, fwBan(r.Ban))
	}
	if err := e.fw.Sync(ctx, e.fwJails, bans, now); err != nil {
		e.needSync = true
		return fmt.Errorf("sync firewall: %w", err)
	}
	e.needSync = false
	return nil
}

func fwBan(b Ban) firewall.Ban {
	return firewall.Ban{Jail: b.Jail, Prefix: b.Prefix, Expires: b.Expires}
}

// setPosLocked records how far a file was read, or, with a cursor, a
// stream's last entry (the key's only position). mu held.
func (e *Engine) setPosLocked(pos sources.Position) {
	if pos.Path == "" {
		return
	}
	list := e.positions[pos.Path]
	if pos.Cursor != "" {
		if len(list) == 1 && list[0].cursor == pos.Cursor {
			return
		}
		e.positions[pos.Path] = []inodePos{{cursor: pos.Cursor}}
		e.dirtyPos[pos.Path] = struct{}{}
		return
	}
	if len(list) > 0 && list[0].cursor != "" {
		list = nil // the key was read by cursor: a file position replaces it
	}
	for i := range list {
		if list[i].inode == pos.Inode {
			if i == 0 && list[0].offset == pos.Offset && list[0].sum == pos.Sum {
				return
			}
			list[i].offset, list[i].sum = pos.Offset, pos.Sum
			if i > 0 {
				ip := list[i]
				copy(list[1:i+1], list[:i])
				list[0] = ip
			}
			e.dirtyPos[pos.Path] = struct{}{}
			return
		}
	}
	n := min(len(list)+1, maxInodes)
	next := make([]inodePos, n)
	next[0] = inodePos{inode: pos.Inode, offset: pos.Offset, sum: pos.Sum}
	copy(next[1:], list)
	e.positions[pos.Path] = next
	e.dirtyPos[pos.Path] = struct{}{}
}

// Advance records that the lines of a file up to pos (or a journal's
// entries up to pos.Cursor) held no failure. It takes the engine's mutex
// briefly and does no I/O.
func (e *Engine) Advance(pos sources.Position) {
	e.mu.Lock()
	e.setPosLocked(pos)
	e.mu.Unlock()
}

// ForgetPositions drops the saved positions of the paths stale says to
// drop (a removed container's log, a file no jail reads any more), and
// returns them; the next checkpoint deletes them from the state db. stale
// is called without the engine's mutex held: it may do I/O.
func (e *Engine) ForgetPositions(stale func(path string) bool) []string {
	e.mu.Lock()
	paths := make([]string, 0, len(e.positions))
	for p := range e.positions {
		paths = append(paths, p)
	}
	e.mu.Unlock()
	var gone []string
	for _, p := range paths {
		if stale(p) {
			gone = append(gone, p)
		}
	}
	slices.Sort(gone)
	e.mu.Lock()
	for _, p := range gone {
		delete(e.positions, p)
		e.dirtyPos[p] = struct{}{}
	}
	e.mu.Unlock()
	return gone
}

// Positions returns the saved positions (the newest inodes of each path
// first; a cursor position alone for its key), to resume following after a
// restart.
func (e *Engine) Positions() []sources.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	paths := make([]string, 0, len(e.positions))
	for p := range e.positions {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var out []sources.Position
	for _, p := range paths {
		for _, ip := range e.positions[p] {
			out = append(out, sources.Position{Path: p, Inode: ip.inode, Offset: ip.offset, Sum: ip.sum, Cursor: ip.cursor})
		}
	}
	return out
}

// Failure records a failure read from a log line; pos is the position just
// past that line. It returns the ban this failure triggered, after the ban
// is durable and in the firewall, or nil. A failure is ignored (not
// counted) when its address is loopback, the host's own (IgnoreSelf), in
// IgnoreIP, already banned in the jail, or when its time is more than the
// jail's find time before now. A link-local, multicast, broadcast or
// unspecified address is ignored too, and logged once per jail and
// address.
//
// The path that does not ban takes the engine's mutex briefly and does no
// I/O. A ban with a non-nil error means the ban is durable but the firewall
// refused it; Run retries the firewall. An unknown jail wraps
// ErrUnknownJail.
func (e *Engine) Failure(ctx context.Context, f Failure, pos sources.Position) (*Ban, error) {
	e.mu.Lock()
	e.setPosLocked(pos)
	pb, _, err := e.recordLocked(f)
	e.mu.Unlock()
	if pb == nil {
		return nil, err
	}
	return e.await(ctx, pb)
}

// Failures records the failures one line yielded for several jails, with
// the line's position, in one step: a checkpoint holds all of them or none,
// so a replay after a crash neither loses nor repeats any. It returns the
// bans they triggered (possibly with an error, as Failure), the failures
// it dropped because their time is more than their jail's findtime before
// now (they can never lead to a ban; each is counted in the jail's
// Status.TooOld), and the first error; the other failures are still
// recorded.
func (e *Engine) Failures(ctx context.Context, fs []Failure, pos sources.Position) ([]Ban, []TooOld, error) {
	var pbs []*pendingBan
	var old []TooOld
	var firstErr error
	e.mu.Lock()
	e.setPosLocked(pos)
	for _, f := range fs {
		pb, tooOld, err := e.recordLocked(f)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if pb != nil {
			pbs = append(pbs, pb)
		}
		if tooOld {
			old = append(old, TooOld{Failure: f, FindTime: e.jails[f.Jail].cfg.FindTime})
		}
	}
	e.mu.Unlock()
	var bans []Ban
	for _, pb := range pbs {
		b, err := e.await(ctx, pb)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if b != nil {
			bans = append(bans, *b)
		}
	}
	return bans, old, firstErr
}

// recordLocked counts one failure; it returns the pending ban it
// triggered, if any, and whether it dropped the failure for being older
// than findtime (counted in the jail's tooOld). mu held.
func (e *Engine) recordLocked(f Failure) (*pendingBan, bool, error) {
	js := e.jails[f.Jail]
	if js == nil {
		return nil, false, fmt.Errorf("record failure: jail %q: %w", f.Jail, ErrUnknownJail)
	}
	now := e.now()
	if !f.Addr.IsValid() {
		return nil, false, nil
	}
	if f.Time.Before(now.Add(-js.cfg.FindTime)) {
		js.tooOld++
		return nil, true, nil
	}
	p := netaddr.HostPrefix(f.Addr, js.cfg.IPv6Prefix)
	k := winKey{f.Jail, p}
	if e.pendingKeys[k] > 0 {
		return nil, false, nil
	}
	if exp, ok := e.blocked[k]; ok && now.UnixNano() < exp {
		return nil, false, nil
	}
	if ws := e.wide[f.Jail]; len(ws) > 0 {
		a := f.Addr.Unmap().WithZone("")
		for _, w := range ws {
			if now.UnixNano() < w.exp && w.p.Contains(a) {
				return nil, false, nil
			}
		}
	}
	if refusal(&js.cfg, p, e.self) != "" {
		// Judged by the address itself: ::1 is loopback, though the /64
		// a jail would ban it by also holds the unspecified ::.
		a := f.Addr.Unmap().WithZone("")
		if why := reservedWhy(netip.PrefixFrom(a, a.BitLen())); warnsOnFailure(why) {
			e.logRefusedLocked(f.Jail, a, why)
		}
		return nil, false, nil
	}
	n := e.tr.add(k, f.Time.UnixNano(), js.findtime)
	js.totalFailed++
	if n < js.cfg.MaxRetry {
		return nil, false, nil
	}
	e.tr.remove(k)
	return e.decideLocked(js, k, n, now, 0, "failures", false), false, nil
}

// wideBan is an active ban in Engine.wide.
type wideBan struct {
	p   netip.Prefix
	exp int64
}

// isWide says whether no failure of js is ever keyed by p.
func isWide(js *jailState, p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() != 32
	}
	return p.Bits() != js.cfg.IPv6Prefix
}

// setBlockedLocked records an active ban of k. mu held.
func (e *Engine) setBlockedLocked(k winKey, exp int64) {
	e.blocked[k] = exp
	js := e.jails[k.jail]
	if js == nil || !isWide(js, k.prefix) {
		return
	}
	ws := e.wide[k.jail]
	for i := range ws {
		if ws[i].p == k.prefix {
			ws[i].exp = exp
			return
		}
	}
	e.wide[k.jail] = append(ws, wideBan{p: k.prefix, exp: exp})
}

// unblockLocked forgets the active ban of k. mu held.
func (e *Engine) unblockLocked(k winKey) {
	delete(e.blocked, k)
	e.wide[k.jail] = slices.DeleteFunc(e.wide[k.jail], func(w wideBan) bool { return w.p == k.prefix })
}

// rebuildWideLocked recomputes wide after the jails changed. mu held.
func (e *Engine) rebuildWideLocked() {
	clear(e.wide)
	for k, exp := range e.blocked {
		if js := e.jails[k.jail]; js != nil && isWide(js, k.prefix) {
			e.wide[k.jail] = append(e.wide[k.jail], wideBan{p: k.prefix, exp: exp})
		}
	}
}

// decideLocked queues a ban of k: it takes the count, computes the
// duration (d == 0: the jail's, with escalation; d < 0: no end) and clears
// the window. A reban (a manual ban of a prefix banned now) takes no count:
// its duration for d == 0 is the one the active ban's count gives, and
// settleLocked keeps the later of the two expiries. mu held.
func (e *Engine) decideLocked(js *jailState, k winKey, failures int, now time.Time, d time.Duration, reason string, reban bool) *pendingBan {
	rec := e.counts[k]
	prev := rec.n // bans of k before this one
	if reban {
		prev = max(rec.n-1, 0)
	}
	if d == 0 {
		d = banDuration(js.cfg, prev, e.rnd)
	}
	b := Ban{Jail: k.jail, Prefix: k.prefix, BannedAt: now, Count: prev + 1, Failures: failures}
	if d >= 0 {
		b.Expires = now.Add(min(d, maxBan))
	}
	if !reban {
		e.counts[k] = countRec{n: rec.n + 1, last: now.UnixNano()}
		e.dirtyCounts[k] = struct{}{}
	}
	e.pendingKeys[k]++
	pb := &pendingBan{ban: b, reason: reason, reban: reban, done: make(chan struct{})}
	e.pending = append(e.pending, pb)
	return pb
}

// await commits pb (or waits for the commit that took it).
func (e *Engine) await(ctx context.Context, pb *pendingBan) (*Ban, error) {
	e.wmu.Lock()
	err := e.flushLocked(ctx)
	e.wmu.Unlock()
	select {
	case <-pb.done:
	default:
		// Only when flushLocked failed before taking the pending bans.
		return nil, err
	}
	if !pb.durable {
		return nil, pb.err
	}
	b := pb.ban
	return &b, pb.err
}

// Checkpoint commits pending bans and the dirty windows, positions and
// counts in one transaction. Run calls it every second and on shutdown.
func (e *Engine) Checkpoint(ctx context.Context) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return e.flushLocked(ctx)
}

// flushLocked is one commit of the checkpoint argument (see Engine). wmu
// held.
func (e *Engine) flushLocked(ctx context.Context) error {
	if e.st == nil {
		return errClosed
	}
	e.mu.Lock()
	c := &checkpoint{}
	var pend []*pendingBan
	for _, pb := range e.pending {
		if e.jails[pb.ban.Jail] == nil {
			// Decided just before a reload removed the jail.
			k := winKey{pb.ban.Jail, pb.ban.Prefix}
			if e.pendingKeys[k]--; e.pendingKeys[k] <= 0 {
				delete(e.pendingKeys, k)
			}
			pb.finish(false, fmt.Errorf("jail %q: %w", pb.ban.Jail, ErrUnknownJail))
			continue
		}
		pend = append(pend, pb)
	}
	e.pending = nil
	if len(e.dirtyCounts) > 0 {
		c.counts = make(map[winKey]countRec, len(e.dirtyCounts))
		for k := range e.dirtyCounts {
			c.counts[k] = e.counts[k]
		}
		clear(e.dirtyCounts)
	}
	e.tr.snapshot(&c.windows)
	if len(e.dirtyPos) > 0 {
		c.positions = make(map[string][]inodePos, len(e.dirtyPos))
		for p := range e.dirtyPos {
			c.positions[p] = slices.Clone(e.positions[p])
		}
		clear(e.dirtyPos)
	}
	e.mu.Unlock()
	if len(pend) > 0 {
		c.putBans = e.settleLocked(pend, e.now())
	}
	if c.empty() {
		return nil
	}
	if err := e.st.commit(c); err != nil {
		e.mu.Lock()
		e.pending = append(pend, e.pending...)
		for k := range c.counts {
			e.dirtyCounts[k] = struct{}{}
		}
		e.tr.restore(&c.windows)
		for p := range c.positions {
			e.dirtyPos[p] = struct{}{}
		}
		e.mu.Unlock()
		for _, pb := range pend {
			pb.finish(false, err)
		}
		return err
	}
	if len(pend) > 0 {
		e.applyLocked(ctx, pend)
	}
	return nil
}

// settleLocked makes each pending ban the ban as it will stand: a ban
// never shortens an active ban of the same jail and prefix (the active
// row, or a ban earlier in pend). Merged into one, a ban keeps the later
// expiry (no end beats any); a reban also keeps the active ban's start,
// count and failures; Previous is set to the ban it was merged into. It
// returns the last ban of each key, for the state db. Running it again on
// the same pend (after a failed commit) gives the same result. wmu held.
func (e *Engine) settleLocked(pend []*pendingBan, now time.Time) []Ban {
	txn := e.db.Txn(false)
	defer txn.Abort()
	cur := make(map[winKey]*Ban, len(pend))
	var order []winKey
	for _, pb := range pend {
		k := winKey{pb.ban.Jail, pb.ban.Prefix}
		prev, seen := cur[k]
		if !seen {
			order = append(order, k)
			if o, _ := txn.First("bans", "id", k.jail, k.prefix.String()); o != nil {
				if r := o.(*banRow); r.Expires == never || r.Expires > now.UnixNano() {
					b := r.Ban
					prev = &b
				}
			}
		}
		pb.ban = settle(prev, pb.ban, pb.reban)
		b := pb.ban
		b.Previous = nil
		cur[k] = &b
	}
	out := make([]Ban, len(order))
	for i, k := range order {
		out[i] = *cur[k]
	}
	return out
}

// settle is b merged into the active ban prev (nil: none): see settleLocked.
func settle(prev *Ban, b Ban, reban bool) Ban {
	b.Previous = nil
	if prev == nil {
		return b
	}
	if !prev.Expires.IsZero() && !b.Expires.IsZero() && prev.Expires.After(b.Expires) {
		b.Expires = prev.Expires
	} else if prev.Expires.IsZero() {
		b.Expires = time.Time{}
	}
	if reban {
		b.BannedAt, b.Count, b.Failures = prev.BannedAt, prev.Count, prev.Failures
	}
	p := *prev
	p.Previous = nil
	b.Previous = &p
	return b
}

// applyLocked puts committed bans into the firewall and go-memdb, logs and
// notifies them. settleLocked made each pending ban the ban as it stands,
// so the last of each key replaces the key's row. wmu held.
func (e *Engine) applyLocked(ctx context.Context, pend []*pendingBan) {
	now := e.now()
	// A later ban of the same key in one batch supersedes an earlier one.
	last := make(map[winKey]*pendingBan, len(pend))
	for _, pb := range pend {
		last[winKey{pb.ban.Jail, pb.ban.Prefix}] = pb
	}
	txn := e.db.Txn(true)
	defer txn.Abort()
	// The firewall's Add replaces the expiry of a prefix it holds, in one
	// transaction: a ban that replaces an active one is not deleted first,
	// which would let it lapse in between.
	var added []firewall.Ban
	for _, pb := range pend {
		if last[winKey{pb.ban.Jail, pb.ban.Prefix}] != pb {
			continue
		}
		added = append(added, fwBan(pb.ban))
	}
	var fwErr error
	if err := e.fw.Add(ctx, added, now); err != nil {
		fwErr = fmt.Errorf("add bans to firewall: %w", err)
	}
	if fwErr != nil {
		e.needSync = true
		e.log.Error("firewall refused bans; will resync", "err", fwErr)
	}
	for _, pb := range pend {
		if last[winKey{pb.ban.Jail, pb.ban.Prefix}] != pb {
			continue
		}
		row := newRow(pb.ban)
		row.Ban.Previous = nil
		if err := txn.Insert("bans", row); err != nil {
			// Only a schema error can land here.
			e.log.Error("insert ban into memory state", "err", err)
		}
	}
	txn.Commit()

	e.mu.Lock()
	for _, pb := range pend {
		k := winKey{pb.ban.Jail, pb.ban.Prefix}
		if e.pendingKeys[k]--; e.pendingKeys[k] <= 0 {
			delete(e.pendingKeys, k)
		}
		e.setBlockedLocked(k, newRow(last[k].ban).Expires)
		if js := e.jails[pb.ban.Jail]; js != nil && !pb.reban {
			js.totalBanned++
		}
	}
	e.mu.Unlock()
	for _, pb := range pend {
		b := pb.ban
		e.log.Info("ban", keyJail, b.Jail, keyIP, netaddr.Format(b.Prefix), keyFailures, b.Failures,
			keyCount, b.Count, keyUntil, until(b), keyReason, pb.reason)
		pb.finish(true, fwErr)
		if e.notify != nil {
			e.notify(Event{Kind: "ban", Ban: b, Reason: pb.reason})
		}
	}
}

func until(b Ban) string {
	if b.Expires.IsZero() {
		return "never"
	}
	return b.Expires.UTC().Format(time.RFC3339)
}

func (e *Engine) logLift(kind string, b Ban, reason string) {
	e.log.Info(kind, keyJail, b.Jail, keyIP, netaddr.Format(b.Prefix), keyFailures, b.Failures,
		keyCount, b.Count, keyUntil, until(b), keyReason, reason)
}

// liftLocked removes bans: durable first, then from the firewall (unless
// the caller syncs it), then from memory; logs and notifies each. wmu held.
func (e *Engine) liftLocked(ctx context.Context, bans []Ban, reasons []string, kind string, fwDelete bool) error {
	if len(bans) == 0 {
		return nil
	}
	if e.st == nil {
		return errClosed
	}
	c := &checkpoint{}
	for _, b := range bans {
		c.delBans = append(c.delBans, winKey{b.Jail, b.Prefix})
	}
	if err := e.st.commit(c); err != nil {
		return err
	}
	var fwErr error
	if fwDelete {
		fb := make([]firewall.Ban, len(bans))
		for i, b := range bans {
			fb[i] = fwBan(b)
		}
		if err := e.fw.Delete(ctx, fb); err != nil {
			e.needSync = true
			fwErr = fmt.Errorf("delete bans from firewall: %w", err)
		}
	}
	txn := e.db.Txn(true)
	defer txn.Abort()
	for _, b := range bans {
		if _, err := txn.DeleteAll("bans", "id", b.Jail, b.Prefix.String()); err != nil {
			e.log.Error("delete ban from memory state", "err", err)
		}
	}
	txn.Commit()
	e.mu.Lock()
	for _, b := range bans {
		e.unblockLocked(winKey{b.Jail, b.Prefix})
	}
	e.mu.Unlock()
	for i, b := range bans {
		e.logLift(kind, b, reasons[i])
		if e.notify != nil {
			e.notify(Event{Kind: kind, Ban: b, Reason: reasons[i]})
		}
	}
	return fwErr
}

// normPrefix masks p and unmaps an IPv4-mapped IPv6 prefix.
func normPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
}

// Ban bans a prefix in a jail by hand: d == 0 for the jail's ban time (with
// escalation), d < 0 for no end. A single IPv6 address is banned by the
// jail's IPv6 prefix (the /64 it sits in, in a jail that bans by /64), as
// the jail bans its clients; a prefix is banned as given.
//
// Banning a prefix the jail bans now keeps the later of the two expiries
// (no end beats any) and does not count as a new ban: the count and the
// start stay those of the active ban. The returned ban is the ban as it
// now stands; its Previous is the active ban it found, if any.
//
// It returns after the ban is durable and in the firewall (a returned ban
// with an error: durable, but the firewall refused it; Run retries). A
// refused prefix returns *RefusedError; an unknown jail wraps
// ErrUnknownJail.
func (e *Engine) Ban(ctx context.Context, jail string, p netip.Prefix, d time.Duration) (Ban, error) {
	p = normPrefix(p)
	e.mu.Lock()
	js := e.jails[jail]
	if js == nil {
		e.mu.Unlock()
		return Ban{}, fmt.Errorf("ban %s: jail %q: %w", p, jail, ErrUnknownJail)
	}
	// The address as asked is judged first, so that ::1 is refused as
	// loopback and not for the :: its /64 holds; then the prefix banned.
	asked := p
	if p.Addr().Is6() && p.IsSingleIP() {
		p = netaddr.HostPrefix(p.Addr(), js.cfg.IPv6Prefix)
	}
	for _, q := range []netip.Prefix{asked, p} {
		if why := refusal(&js.cfg, q, e.self); why != "" {
			e.mu.Unlock()
			return Ban{}, &RefusedError{Prefix: q, Reason: why}
		}
	}
	k := winKey{jail, p}
	now := e.now()
	exp, banned := e.blocked[k]
	active := e.pendingKeys[k] > 0 || (banned && now.UnixNano() < exp)
	reason := "manual"
	if active {
		reason = "manual, already banned"
	}
	e.tr.remove(k)
	pb := e.decideLocked(js, k, 0, now, d, reason, active)
	e.mu.Unlock()
	b, err := e.await(ctx, pb)
	if b == nil {
		return Ban{}, fmt.Errorf("ban %s: %w", p, err)
	}
	if err != nil {
		return *b, fmt.Errorf("ban %s: %w", p, err)
	}
	return *b, nil
}

// Unban lifts the bans whose prefix equals p or, when p is a single
// address, contains it, in one jail or (jail "") in every jail. It returns
// the bans lifted, after they are durably gone and out of the firewall;
// ErrNotBanned (wrapped) when none matched, ErrUnknownJail (wrapped) for an
// unknown jail.
func (e *Engine) Unban(ctx context.Context, p netip.Prefix, jail string) ([]Ban, error) {
	p = normPrefix(p)
	if jail != "" {
		e.mu.Lock()
		ok := e.jails[jail] != nil
		e.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("unban %s: jail %q: %w", p, jail, ErrUnknownJail)
		}
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return nil, errClosed
	}
	if err := e.flushLocked(ctx); err != nil {
		return nil, fmt.Errorf("unban %s: %w", p, err)
	}
	var lift []Ban
	for _, r := range e.rowsLocked(jail) {
		bp := r.Ban.Prefix
		if bp == p || (p.IsSingleIP() && bp.Contains(p.Addr())) {
			lift = append(lift, r.Ban)
		}
	}
	if len(lift) == 0 {
		return nil, fmt.Errorf("unban %s: %w", p, ErrNotBanned)
	}
	reasons := make([]string, len(lift))
	for i := range reasons {
		reasons[i] = "manual"
	}
	if err := e.liftLocked(ctx, lift, reasons, "unban", true); err != nil {
		return lift, fmt.Errorf("unban %s: %w", p, err)
	}
	return lift, nil
}

// UnbanAll lifts every active ban and returns how many there were.
func (e *Engine) UnbanAll(ctx context.Context) (int, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return 0, errClosed
	}
	if err := e.flushLocked(ctx); err != nil {
		return 0, fmt.Errorf("unban all: %w", err)
	}
	var lift []Ban
	var reasons []string
	for _, r := range e.rowsLocked("") {
		lift = append(lift, r.Ban)
		reasons = append(reasons, "unban all")
	}
	if err := e.liftLocked(ctx, lift, reasons, "unban", true); err != nil {
		return len(lift), fmt.Errorf("unban all: %w", err)
	}
	return len(lift), nil
}

// Blocks reports whether an active ban covers a for traffic to a host
// port: a ban in a jail without a port list, or whose ports include port
// (port 0 counts every jail). It is what the proxy asks per connection and
// per request, so bans hold there even without a kernel firewall. It takes
// the engine's lock for reading only and does no I/O.
func (e *Engine) Blocks(a netip.Addr, port uint16) bool {
	a = a.Unmap().WithZone("")
	if !a.IsValid() {
		return false
	}
	now := e.now().UnixNano()
	e.mu.RLock()
	defer e.mu.RUnlock()
	for name, js := range e.jails {
		if port != 0 && len(js.cfg.Ports) > 0 && !coversPort(js.cfg.Ports, port) {
			continue
		}
		if exp, ok := e.blocked[winKey{name, netaddr.HostPrefix(a, js.cfg.IPv6Prefix)}]; ok && now < exp {
			return true
		}
		for _, w := range e.wide[name] {
			if now < w.exp && w.p.Contains(a) {
				return true
			}
		}
	}
	return false
}

func coversPort(rs []firewall.PortRange, port uint16) bool {
	for _, r := range rs {
		if r.First <= port && port <= r.Last {
			return true
		}
	}
	return false
}

// Bans returns the active bans of a jail ("" all), sorted by jail then
// prefix. It reads a go-memdb snapshot and takes no lock.
func (e *Engine) Bans(jail string) []Ban {
	rows := e.rowsLocked(jail)
	out := make([]Ban, len(rows))
	for i, r := range rows {
		out[i] = r.Ban
	}
	sortBans(out)
	return out
}

func sortBans(bs []Ban) {
	slices.SortFunc(bs, func(a, b Ban) int {
		if c := cmp.Compare(a.Jail, b.Jail); c != 0 {
			return c
		}
		return a.Prefix.Compare(b.Prefix)
	})
}

// Status returns the counters of a jail ("" every jail, sorted by name);
// Files is left empty. CurrentlyFailed counts the windows held (Run's sweep
// drops those whose newest failure left the find time); the totals count
// since the engine opened. An unknown jail wraps ErrUnknownJail.
func (e *Engine) Status(jail string) ([]Status, error) {
	e.mu.Lock()
	var names []string
	if jail != "" {
		if e.jails[jail] == nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("status: jail %q: %w", jail, ErrUnknownJail)
		}
		names = []string{jail}
	} else {
		for n := range e.jails {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	out := make([]Status, len(names))
	for i, n := range names {
		js := e.jails[n]
		out[i] = Status{
			Jail:            n,
			Files:           []string{},
			CurrentlyFailed: e.tr.count(n),
			TotalFailed:     js.totalFailed,
			TooOld:          js.tooOld,
			TotalBanned:     js.totalBanned,
		}
	}
	e.mu.Unlock()
	for i := range out {
		bans := e.Bans(out[i].Jail)
		out[i].CurrentlyBanned = len(bans)
		out[i].Banned = make([]netip.Prefix, len(bans))
		for j, b := range bans {
			out[i].Banned[j] = b.Prefix
		}
	}
	return out, nil
}

// Jails returns the configured jails' names, sorted.
func (e *Engine) Jails() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.jails))
	for n := range e.jails {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Run sweeps expired bans, drops stale windows and checks the firewall
// every CheckEvery (re-syncing it when its table went missing), and writes
// a checkpoint every second when something changed. When ctx ends it
// writes a final checkpoint (on a context the cancellation cannot cut
// short, bounded to 10s) and returns nil.
func (e *Engine) Run(ctx context.Context) error {
	check := time.NewTicker(e.checkEvery)
	defer check.Stop()
	cp := time.NewTicker(time.Second)
	defer cp.Stop()
	self := time.NewTicker(time.Minute)
	defer self.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := e.Checkpoint(fctx)
			cancel()
			if err != nil && !errors.Is(err, errClosed) {
				e.log.Error("final checkpoint", "err", err)
			}
			return nil
		case <-check.C:
			e.maintain(ctx)
		case <-cp.C:
			if err := e.Checkpoint(ctx); err != nil && !errors.Is(err, errClosed) {
				e.log.Error("checkpoint", "err", err)
			}
		case <-self.C:
			addrs := cleanAddrs(e.selfFn())
			e.mu.Lock()
			e.self = addrs
			e.mu.Unlock()
		}
	}
}

// maintain is one check: sweep expired bans and stale windows, and make
// sure the firewall holds the bans.
func (e *Engine) maintain(ctx context.Context) {
	if err := e.sweep(ctx); err != nil && !errors.Is(err, errClosed) {
		e.log.Error("sweep expired bans", "err", err)
	}
	e.checkFirewall(ctx)
}

// sweep removes expired bans (log and notify "expire") and windows whose
// newest failure left the find time.
func (e *Engine) sweep(ctx context.Context) error {
	now := e.now()
	e.mu.Lock()
	e.tr.expireOld(now.UnixNano(), func(j string) (int64, bool) {
		js := e.jails[j]
		if js == nil {
			return 0, false
		}
		return js.findtime, true
	})
	e.mu.Unlock()

	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return errClosed
	}
	txn := e.db.Txn(false)
	defer txn.Abort()
	it, err := txn.LowerBound("bans", "expires", int64(math.MinInt64))
	if err != nil {
		return err
	}
	var lift []Ban
	var reasons []string
	for o := it.Next(); o != nil; o = it.Next() {
		r := o.(*banRow)
		if r.Expires > now.UnixNano() {
			break
		}
		lift = append(lift, r.Ban)
		reasons = append(reasons, "expired")
	}
	return e.liftLocked(ctx, lift, reasons, "expire", true)
}

// checkFirewall makes the firewall hold the active bans: it re-syncs it
// after a failed write, then has it compare the kernel with the bans and
// repair what differs; each repair is logged once.
func (e *Engine) checkFirewall(ctx context.Context) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil || e.fwJails == nil {
		return
	}
	if e.needSync {
		if err := e.syncLocked(ctx); err != nil {
			e.log.Error("restore firewall", "err", err)
			e.recordCheck(e.now(), firewall.CheckReport{}, err)
			return
		}
		e.log.Info("firewall restored after an earlier write failed")
	}
	now := e.now()
	rep, err := e.fw.Check(ctx, now)
	if errors.Is(err, firewall.ErrNotSynced) {
		// The backend lost what it was told (or was never told): tell it
		// again, now.
		if err = e.syncLocked(ctx); err == nil {
			rep.Add(firewall.Repair{Kind: firewall.RepairLayout, Detail: "the firewall had lost its bans; synced again"})
		}
	}
	listed := 0
	for _, r := range rep.Repairs {
		attrs := []any{"kind", r.Kind, "detail", r.Detail}
		if r.Jail != "" {
			attrs = append(attrs, keyJail, r.Jail)
		}
		if r.First.IsValid() {
			attrs = append(attrs, "addresses", rangeText(r.First, r.Last))
		}
		e.log.Warn("firewall drift repaired", attrs...)
		listed++
	}
	total := 0
	for _, n := range rep.Counts {
		total += n
	}
	if total > listed {
		e.log.Warn("firewall drift repaired, more than listed", "repairs", total, "listed", listed, "by_kind", rep.Counts)
	}
	if err != nil {
		e.log.Error("check firewall", "err", err)
	}
	e.recordCheck(now, rep, err)
}

// rangeText writes a run of addresses as one address, a prefix when it is
// one, or first-last.
func rangeText(first, last netip.Addr) string {
	if first == last {
		return first.String()
	}
	for bits := first.BitLen() - 1; bits >= 0; bits-- {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			break
		}
		if l := netaddr.LastAddr(p); l == last {
			return p.String()
		} else if last.Less(l) {
			break
		}
	}
	return first.String() + "-" + last.String()
}

// recordCheck keeps what a check found for FirewallStatus.
func (e *Engine) recordCheck(now time.Time, rep firewall.CheckReport, err error) {
	if rep.Deferred && err == nil {
		return // the kernel was not compared: what the last check found stands
	}
	e.fwMu.Lock()
	defer e.fwMu.Unlock()
	s := &e.fwStatus
	s.LastCheck, s.Full = now, rep.Full
	s.Matched = err == nil && rep.Matched()
	s.Err = ""
	if err != nil {
		s.Err = err.Error()
	}
	if !rep.Matched() {
		s.LastRepair = now
		s.LastRepairKinds = maps.Clone(rep.Counts)
		if s.Repairs == nil {
			s.Repairs = map[string]int{}
		}
		for k, n := range rep.Counts {
			s.Repairs[k] += n
		}
	}
}

// FirewallStatus returns what the firewall checks found so far. It does
// not wait for a check in progress.
func (e *Engine) FirewallStatus() FirewallStatus {
	e.fwMu.Lock()
	defer e.fwMu.Unlock()
	s := e.fwStatus
	s.LastRepairKinds = maps.Clone(s.LastRepairKinds)
	s.Repairs = maps.Clone(s.Repairs)
	return s
}

// ErrNotIgnored is returned (wrapped) by DelIgnoreIP for a prefix that is
// not in the jail's ignore list.
var ErrNotIgnored = errors.New("not in the ignore list")

// JailConfig returns a jail's effective settings: those Configure last
// gave, with the ignore list as AddIgnoreIP and DelIgnoreIP changed it
// since. An unknown jail wraps ErrUnknownJail.
func (e *Engine) JailConfig(jail string) (Config, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	js := e.jails[jail]
	if js == nil {
		return Config{}, fmt.Errorf("jail %q: %w", jail, ErrUnknownJail)
	}
	c := js.cfg
	c.IgnoreIP = slices.Clone(c.IgnoreIP)
	c.Ports = slices.Clone(c.Ports)
	c.Increment.Multipliers = slices.Clone(c.Increment.Multipliers)
	return c, nil
}

// AddIgnoreIP appends ps (masked) to a running jail's ignore list, skipping
// those listed already, and returns the list. From then on the jail counts
// no failure of an address they hold and refuses to ban it; a ban active
// now stays until it expires or is lifted (as fail2ban's addignoreip
// leaves it). The change lasts until the next Configure (a reload) or
// restart, which set the list from the configuration again. An unknown
// jail wraps ErrUnknownJail; an invalid prefix is an error and adds
// nothing.
func (e *Engine) AddIgnoreIP(jail string, ps ...netip.Prefix) ([]netip.Prefix, error) {
	return e.editIgnoreIP(jail, func(cur []netip.Prefix) ([]netip.Prefix, error) {
		next := slices.Clone(cur)
		for _, p := range ps {
			if !p.IsValid() {
				return nil, fmt.Errorf("add to ignoreip of jail %s: not a valid address or prefix", jail)
			}
			p = normPrefix(p)
			if !slices.Contains(next, p) {
				next = append(next, p)
			}
		}
		return next, nil
	})
}

// DelIgnoreIP removes p (masked) from a running jail's ignore list and
// returns the list. It wraps ErrNotIgnored when p is not listed as such (a
// prefix is removed only by itself, not by an address inside it), and
// ErrUnknownJail for an unknown jail. Like AddIgnoreIP, the change lasts
// until the next Configure or restart.
func (e *Engine) DelIgnoreIP(jail string, p netip.Prefix) ([]netip.Prefix, error) {
	return e.editIgnoreIP(jail, func(cur []netip.Prefix) ([]netip.Prefix, error) {
		if p.IsValid() {
			p = normPrefix(p)
			if i := slices.Index(cur, p); i >= 0 {
				return slices.Delete(slices.Clone(cur), i, i+1), nil
			}
		}
		return nil, fmt.Errorf("remove %s from ignoreip of jail %s: %w", p, jail, ErrNotIgnored)
	})
}

// editIgnoreIP replaces a jail's ignore list by what edit makes of it. The
// list is replaced, never changed in place: a copy of the config taken
// earlier keeps its own. wmu is held too, as Configure reads the jails'
// configs under it alone.
func (e *Engine) editIgnoreIP(jail string, edit func([]netip.Prefix) ([]netip.Prefix, error)) ([]netip.Prefix, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.st == nil {
		return nil, errClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	js := e.jails[jail]
	if js == nil {
		return nil, fmt.Errorf("jail %q: %w", jail, ErrUnknownJail)
	}
	next, err := edit(js.cfg.IgnoreIP)
	if err != nil {
		return nil, err
	}
	js.cfg.IgnoreIP = next
	e.log.Info("ignoreip changed until the next reload", keyJail, jail, "ignoreip", next)
	return slices.Clone(next), nil
}
