package nftables

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/moatproj/moat/firewall"

	"github.com/moatproj/moat/internal/netaddr"
)

const (
	// chunkElems bounds the set elements sent in one transaction, so a
	// batch stays well below the socket's send buffer (~200 KiB). A change
	// larger than this (one run of addresses rewritten whole) still goes in
	// one transaction: splitting it would let its bans lapse in between.
	chunkElems = 2048
	// msgElems bounds the elements of one netlink message: the element
	// list is one attribute, whose length is 16 bits, and the kernel
	// silently drops what an overflowing list loses (an IPv6 element with
	// timeout takes about 60 bytes).
	msgElems = 512
	// timeoutSlack is how far an element's expiry may be from the wanted
	// one before a check rewrites it; an element that is the kernel's only
	// and ends within it is left to time out.
	timeoutSlack = 2 * time.Second
	// missingGrace: a wanted span missing from the kernel that ends within
	// it is not put back (the kernel counts time in jiffies and may drop an
	// element a few milliseconds before moat's clock says).
	missingGrace = 50 * time.Millisecond
	// fullEvery is how often a check reads every element back even when the
	// ruleset's generation says nothing changed.
	fullEvery = time.Minute
)

// setState is one named set: the jail and family it belongs to, and the
// model of what it must hold.
type setState struct {
	set   *nftables.Set
	jail  string
	fam   int
	model *setModel
}

// spaceOf is the whole address space of family fam, as a region.
func spaceOf(fam int) span {
	if fam == 0 {
		return span{first: netip.IPv4Unspecified(), last: netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	}
	return span{first: netip.IPv6Unspecified(), last: netaddr.LastAddr(netip.PrefixFrom(netip.IPv6Unspecified(), 0))}
}

// normBan returns the set key of a ban: its prefix masked, IPv4-mapped
// IPv6 unmapped, and its expiry in Unix nanoseconds.
func normBan(bn firewall.Ban) (netip.Prefix, int64, bool) {
	p := bn.Prefix
	if !p.IsValid() {
		return p, 0, false
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return p, 0, false
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
	exp := int64(never)
	if !bn.Expires.IsZero() {
		exp = bn.Expires.UnixNano()
	}
	return p, exp, true
}

// newSets makes the empty set states of jails, by set name.
func (b *Backend) newSets(jails []firewall.Jail) map[string]*setState {
	sets := map[string]*setState{}
	for _, j := range jails {
		for fam := range families {
			s := newSet(b.table, j.Name, fam)
			sets[s.Name] = &setState{set: s, jail: j.Name, fam: fam, model: newSetModel()}
		}
	}
	return sets
}

func (b *Backend) stateFor(jail string, p netip.Prefix) *setState {
	return b.sets[setBase(jail)+families[familyOf(p)].suffix]
}

// Sync makes the table hold exactly jails and bans. When the rules or sets
// differ from what jails need, the chain's rules are replaced, sets of
// jails gone are deleted and new ones made, in one transaction; sets of
// jails kept keep their elements, so their bans hold throughout. When the
// table or chain is missing or wrong (after `nft flush ruleset`), the table
// is deleted and made again. Then every set is read back and compared with
// its bans address by address, and only the runs that differ are
// rewritten, each in one transaction. Overlapping bans (in one jail) are
// laid out as disjoint spans; see setModel.
func (b *Backend) Sync(ctx context.Context, jails []firewall.Jail, bans []firewall.Ban, now time.Time) error {
	names := map[string]bool{}
	for _, j := range jails {
		if names[j.Name] {
			return fmt.Errorf("nftables sync: jail %q given twice", j.Name)
		}
		names[j.Name] = true
	}
	sets := b.newSets(jails)
	dropped := 0
	for _, bn := range bans {
		p, exp, ok := normBan(bn)
		if !ok || !names[bn.Jail] {
			dropped++
			continue
		}
		if exp <= now.UnixNano() {
			continue
		}
		m := sets[setBase(bn.Jail)+families[familyOf(p)].suffix].model
		if old, ok := m.bans[p]; ok && old >= exp {
			continue // a duplicate keeps the later expiry
		}
		m.put(p, exp)
	}
	if dropped > 0 {
		b.log.Warn("nftables sync left out bans", "count", dropped, "reason", "unknown jail or invalid prefix")
	}
	for name, s := range sets {
		if old := b.sets[name]; old != nil {
			s.model.zombies = old.model.zombies
		}
	}
	b.synced = false
	st, err := b.lay(ctx, jails, sets, now)
	if err != nil {
		return fmt.Errorf("nftables sync: %w", err)
	}
	b.log.Info("nftables synced", "table", b.table.Name, "jails", len(jails), "layout", st.mode,
		"added", st.added, "deleted", st.deleted)
	return nil
}

type layStats struct {
	mode           string
	added, deleted int
}

// lay puts the layout of jails in place (kept, relaid or rebuilt) and makes
// the kernel's elements match the sets' models, then makes jails and sets
// the backend's own.
func (b *Backend) lay(ctx context.Context, jails []firewall.Jail, sets map[string]*setState, now time.Time) (layStats, error) {
	comments := wantComments(jails)
	setNames := slices.Sorted(maps.Keys(sets))
	setOf := map[string]*nftables.Set{}
	for name, s := range sets {
		setOf[name] = s.set
	}
	st := layStats{mode: "kept"}
	same, err := b.layoutMatches(comments, setNames)
	if err != nil {
		return st, err
	}
	fresh := map[string]bool{} // sets known to be empty
	var pre func() error
	if !same {
		existing, ok := b.chainIntact()
		if ok {
			// The table and chain stay; sets of unchanged jails keep their
			// elements throughout, so their bans hold without a gap.
			st.mode = "relaid"
			for _, name := range setNames {
				if !slices.Contains(existing, name) {
					fresh[name] = true
				}
			}
			pre = func() error { return b.queueRelayout(jails, setOf, existing) }
		} else {
			st.mode = "rebuilt"
			for _, name := range setNames {
				fresh[name] = true
			}
			pre = func() error { return b.queueLayout(jails, setOf) }
		}
	}
	verify := func() bool {
		ok, _ := b.layoutMatches(comments, setNames)
		return ok
	}
	changes, err := b.plan(sets, setNames, fresh, now, &st)
	if err != nil {
		return st, err
	}
	err = b.write(ctx, pre, verify, changes, st.mode == "rebuilt")
	if err != nil && st.mode == "relaid" {
		// A set in the way (say, of the wanted name but another type):
		// rebuild the table whole.
		b.log.Warn("nftables sync: relayout failed, rebuilding the table", "err", err)
		st = layStats{mode: "rebuilt"}
		for _, name := range setNames {
			fresh[name] = true
		}
		if changes, err = b.plan(sets, setNames, fresh, now, &st); err != nil {
			return st, err
		}
		err = b.write(ctx, func() error { return b.queueLayout(jails, setOf) }, verify, changes, true)
	}
	if err != nil {
		b.genOK = false
		if !verify() {
			return st, err
		}
		// The layout is there: what failed is read back and repaired
		// once, from the kernel.
		if _, rerr := b.repair(ctx, sets, now); rerr != nil {
			return st, errors.Join(err, rerr)
		}
	}
	b.jails = map[string]firewall.Jail{}
	for _, j := range jails {
		b.jails[j.Name] = j
	}
	b.sets = sets
	b.want = comments
	b.synced = true
	return st, nil
}

// plan reads each set back (unless fresh: known to be empty), and returns
// the changes that lay it out from its bans.
func (b *Backend) plan(sets map[string]*setState, names []string, fresh map[string]bool, now time.Time, st *layStats) ([]setChange, error) {
	var changes []setChange
	strayed := map[*setState]bool{}
	for _, name := range names {
		s := sets[name]
		var have []span
		if !fresh[name] {
			var err error
			var strays int
			have, strays, err = b.rd.spans(b.table.Name, name, int(families[s.fam].addrLen), now)
			if errors.Is(err, errNoSet) {
				have, err = nil, nil
			}
			if err != nil {
				return nil, err
			}
			if strays > 0 {
				strayed[s] = true
			}
		}
		s.model.setSpans(have, now.UnixNano())
		space := spaceOf(s.fam)
		want := s.model.cover(space.first, space.last, now.UnixNano())
		ms := compare(have, want, now.UnixNano(), int64(timeoutSlack), int64(missingGrace))
		for _, c := range s.model.rewrite(mismatchRegions(ms), now.UnixNano()) {
			changes = append(changes, setChange{s, c})
			st.added += len(c.adds)
			st.deleted += len(c.dels)
		}
	}
	// Timed-out elements moat does not know of (written before a restart)
	// are collected before anything is written over them.
	if err := b.collect(strayed); err != nil {
		return nil, err
	}
	return changes, nil
}

// mismatchRegions returns the runs of ms as regions to rewrite.
func mismatchRegions(ms []mismatch) []span {
	out := make([]span, len(ms))
	for i, m := range ms {
		out[i] = span{first: m.first, last: m.last}
	}
	return out
}

// setChange is a change of one set.
type setChange struct {
	s *setState
	c change
}

// write sends changes in transactions of about chunkElems elements, never
// splitting one change. pre, if not nil, is queued before the first
// transaction's elements. If that transaction fails, verify tells whether
// the layout is in place all the same: an error can arrive for a batch the
// kernel applied (replies lost to a full socket buffer), and sending a
// rebuild again would empty every set for a moment, so write then returns
// the error and the caller repairs the elements from what the kernel
// holds. Otherwise pre is sent alone, and the changes follow. The ruleset generation is read around each transaction,
// so that a check can tell moat's own writes from anyone else's.
//
// whole sends everything in one transaction: a rebuild deletes the table
// with its sets, so elements sent in a later transaction would lapse until
// it lands.
func (b *Backend) write(ctx context.Context, pre func() error, verify func() bool, changes []setChange, whole bool) error {
	if !whole {
		changes = splitAdds(changes)
	}
	first := true
	for start := 0; start < len(changes) || first && pre != nil; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end, n := start, 0
		for end < len(changes) && (whole || n == 0 || n+changes[end].c.size() <= chunkElems) {
			n += changes[end].c.size()
			end++
		}
		chunk := changes[start:end]
		var p func() error
		if first {
			p = pre
		}
		err := b.transact(p, chunk)
		if err != nil && p != nil {
			if verify() {
				return err
			}
			b.log.Debug("nftables layout batch failed, retrying without elements", "err", err)
			if err := b.transact(pre, nil); err != nil && !verify() {
				return fmt.Errorf("write table %s: %w", b.table.Name, err)
			}
			err = b.transact(nil, chunk)
		}
		if err != nil {
			return err
		}
		first = false
		start = end
	}
	return nil
}

// splitAdds cuts changes that only add (nothing they cover is dropped
// before them, so nothing can lapse between two transactions) into pieces
// of at most chunkElems elements.
func splitAdds(changes []setChange) []setChange {
	var out []setChange
	for _, sc := range changes {
		if len(sc.c.dels) > 0 || 2*len(sc.c.adds) <= chunkElems {
			out = append(out, sc)
			continue
		}
		for adds := sc.c.adds; len(adds) > 0; {
			n := min(len(adds), chunkElems/2)
			out = append(out, setChange{sc.s, change{adds: adds[:n]}})
			adds = adds[n:]
		}
	}
	return out
}

// transact sends pre (if any) and the changes in one transaction: each
// set's deletes, then its adds.
//
// An element that timed out is hidden from dumps and lookups, but the
// kernel keeps it (a zombie) until it collects the set's garbage, which it
// does only at a commit on the set, and at most once per gcInterval. A
// zombie cannot be deleted, and meanwhile a new element with the key of one
// of its elements is taken for it (the add succeeds and adds nothing, and
// the new ban vanishes when the zombie is collected), while a new interval
// across its end fails as an overlap (EEXIST). So before a transaction that
// would write such a key the sets are collected (collect), and one refused
// as an overlap is sent again after a collection. Either may make the
// transaction wait up to about a second; no ban in force lapses meanwhile.
func (b *Backend) transact(pre func() error, chunk []setChange) error {
	chunk = slices.Clone(chunk)
	if err := b.exorcise(chunk, 0); err != nil {
		return err
	}
	err := b.transactOnce(pre, chunk)
	if errors.Is(err, syscall.ENOENT) {
		// A delete named an element the kernel has timed out already (its
		// clock may run a little ahead of moat's): what is about to time
		// out is left to it.
		if cerr := b.exorcise(chunk, expirySkew); cerr != nil {
			return errors.Join(err, cerr)
		}
		err = b.transactOnce(pre, chunk)
	}
	if errors.Is(err, syscall.EEXIST) {
		b.log.Debug("nftables transaction refused as an overlap: collecting timed-out elements, then sending it again", "err", err)
		sets := map[*setState]bool{}
		for _, sc := range chunk {
			sets[sc.s] = true
		}
		if cerr := b.collect(sets); cerr != nil {
			return errors.Join(err, cerr)
		}
		if cerr := b.exorcise(chunk, expirySkew); cerr != nil {
			return errors.Join(err, cerr)
		}
		err = b.transactOnce(pre, chunk)
	}
	return err
}

// expirySkew is how much earlier than moat's clock the kernel may time an
// element out (timeouts are sent in milliseconds and kept in jiffies).
const expirySkew = missingGrace

// exorcise readies chunk to be sent now: the spans that timed out by then
// (within skew, for deletes) are neither deleted (the kernel dropped them:
// a delete would fail the whole transaction) nor added; the ones it does
// not delete become zombies, and if an add would then write a zombie's
// key, the kernel is made to collect first (which takes time, so this
// repeats, a few times at most).
func (b *Backend) exorcise(chunk []setChange, skew time.Duration) error {
	for range 3 {
		now := time.Now()
		soon := now.Add(skew).UnixNano()
		haunted := map[*setState]bool{}
		for i := range chunk {
			sc := &chunk[i]
			sc.c.dels = slices.DeleteFunc(slices.Clone(sc.c.dels), func(z span) bool {
				if z.exp <= soon {
					sc.s.model.bury(z)
					return true
				}
				return false
			})
			sc.c.adds = slices.DeleteFunc(slices.Clone(sc.c.adds), func(a span) bool {
				if a.exp <= now.UnixNano() {
					sc.s.model.spans.Delete(a) // never written
					return true
				}
				return false
			})
			if sc.s.model.haunted(sc.c.adds) {
				haunted[sc.s] = true
			}
		}
		if len(haunted) == 0 {
			return nil
		}
		if err := b.collect(haunted); err != nil {
			return err
		}
	}
	return nil
}

// gcInterval is how often, at most, the kernel collects a set's timed-out
// elements (at a commit on the set): its default, one second.
const gcInterval = time.Second

// collect makes the kernel collect the timed-out elements of sets: it waits
// until gcInterval (and a margin for the kernel's clock ticks) has passed
// since moat's last commit on each, so that the kernel's last collection is
// at least that old, then commits a transaction that changes nothing (the
// unspecified address, which moat never bans, added and deleted), at which
// the kernel collects them. The sets' zombies are then forgotten.
func (b *Backend) collect(sets map[*setState]bool) error {
	if len(sets) == 0 {
		return nil
	}
	last := b.lastCommit
	if last.IsZero() {
		last = time.Now()
	}
	time.Sleep(time.Until(last.Add(gcInterval + 50*time.Millisecond)))
	g0, gerr := b.rd.generation()
	// What timed out before the commit starts (by the kernel's clock, which
	// may run a little behind moat's) is what the kernel collects.
	at := time.Now().Add(-expirySkew)
	for s := range sets {
		z := spaceOf(s.fam).first
		els := spanElements(span{first: z, last: z, exp: never}, 0)
		if err := b.conn.SetAddElements(s.set, els); err != nil {
			b.resetConn()
			return err
		}
		if err := b.conn.SetDeleteElements(s.set, els); err != nil {
			b.resetConn()
			return err
		}
	}
	err := b.flush()
	b.trackGen(g0, gerr, err)
	if err != nil {
		return fmt.Errorf("collect timed-out elements: %w", err)
	}
	for s := range sets {
		s.model.collected(at.UnixNano())
	}
	return nil
}

// trackGen keeps the generation known across a transaction of moat's own
// that was the only one between g0 (read before it) and now. It also
// notes the time of the commit: the kernel may have collected garbage then
// (see collect), and so may anyone else's transaction seen meanwhile.
func (b *Backend) trackGen(g0 uint32, gerr, err error) {
	g1, gerr2 := b.rd.generation()
	if err == nil || gerr != nil || gerr2 != nil || g1 != g0 {
		b.lastCommit = time.Now()
	}
	if err == nil && gerr == nil && gerr2 == nil && b.genOK && g0 == b.gen && g1 == g0+1 {
		b.gen = g1
	} else {
		b.genOK = false
	}
}

func (b *Backend) transactOnce(pre func() error, chunk []setChange) error {
	if pre == nil && len(chunk) == 0 {
		return nil
	}
	g0, gerr := b.rd.generation()
	// Timeouts count from now: the changes may have been planned a while
	// ago (a wait for the kernel to collect garbage), and exp is absolute.
	now := time.Now()
	if pre != nil {
		if err := pre(); err != nil {
			b.resetConn() // drop what was queued
			return err
		}
	}
	for _, del := range []bool{true, false} {
		for _, sc := range chunk {
			list := sc.c.adds
			if del {
				list = sc.c.dels
			}
			var els []nftables.SetElement
			for i, s := range list {
				timeout := time.Duration(0)
				if !del {
					timeout = timeoutOf(s.exp, now)
				}
				els = append(els, spanElements(s, timeout)...)
				if len(els) < msgElems-1 && i+1 < len(list) {
					continue
				}
				var err error
				if del {
					err = b.conn.SetDeleteElements(sc.s.set, els)
				} else {
					err = b.conn.SetAddElements(sc.s.set, els)
				}
				if err != nil {
					b.resetConn()
					return fmt.Errorf("queue elements of set %s: %w", sc.s.set.Name, err)
				}
				els = nil
			}
		}
	}
	err := b.flush()
	if err != nil && b.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, sc := range chunk {
			have, _, _ := b.rd.spans(b.table.Name, sc.s.set.Name, int(families[sc.s.fam].addrLen), now)
			b.log.Debug("nftables transaction failed", "set", sc.s.set.Name, "dels", spansText(sc.c.dels, now), "adds", spansText(sc.c.adds, now), "have", spansText(have, now), "err", err)
		}
	}
	b.trackGen(g0, gerr, err)
	return err
}

// repair reads sets back, compares each with its model address by address,
// and rewrites the runs that differ. It returns what differed.
func (b *Backend) repair(ctx context.Context, sets map[string]*setState, now time.Time) ([]firewall.Repair, error) {
	var found []firewall.Repair
	var changes []setChange
	strayed := map[*setState]bool{}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		s := sets[name]
		have, strays, err := b.rd.spans(b.table.Name, name, int(families[s.fam].addrLen), now)
		if errors.Is(err, errNoSet) {
			have, err = nil, nil
		}
		if err != nil {
			b.genOK = false
			return found, err
		}
		if strays > 0 {
			strayed[s] = true
		}
		want := s.model.liveSpans(now.UnixNano())
		ms := compare(have, want, now.UnixNano(), int64(timeoutSlack), int64(missingGrace))
		if len(ms) == 0 && sameSpans(have, want) {
			continue
		}
		// Adopt the kernel's elements, so that later deletes name exactly
		// what it holds.
		s.model.setSpans(have, now.UnixNano())
		for _, m := range ms {
			found = append(found, firewall.Repair{Kind: string(m.kind), Jail: s.jail, First: m.first, Last: m.last, Detail: m.detail()})
		}
		for _, c := range s.model.rewrite(mismatchRegions(ms), now.UnixNano()) {
			changes = append(changes, setChange{s, c})
		}
	}
	if len(changes) > 0 {
		if err := b.collect(strayed); err != nil {
			return found, err
		}
	}
	if err := b.write(ctx, nil, nil, changes, false); err != nil {
		b.genOK = false
		return found, err
	}
	return found, nil
}

// sameSpans reports whether two span lists are the same elements.
func sameSpans(a, b []span) bool {
	return slices.EqualFunc(a, b, func(x, y span) bool {
		return x.first == y.first && x.last == y.last && (x.exp == y.exp || x.exp != never && y.exp != never && absInt(x.exp-y.exp) <= int64(timeoutSlack))
	})
}

func expiryText(exp int64) string {
	if exp == never {
		return "never"
	}
	return time.Unix(0, exp).UTC().Format(time.RFC3339)
}

func (m mismatch) detail() string {
	switch m.kind {
	case kindMissing:
		return "not in the kernel; banned until " + expiryText(m.want)
	case kindStray:
		return "in the kernel until " + expiryText(m.have) + "; no ban covers it"
	default:
		return "in the kernel until " + expiryText(m.have) + "; banned until " + expiryText(m.want)
	}
}

// apply rewrites the given regions of each set and writes the changes; a
// write that fails is repaired once from what the kernel holds.
func (b *Backend) apply(ctx context.Context, regions map[*setState][]span, now time.Time) error {
	states := slices.SortedFunc(maps.Keys(regions), func(x, y *setState) int { return cmp.Compare(x.set.Name, y.set.Name) })
	var changes []setChange
	for _, s := range states {
		for _, c := range s.model.rewrite(regions[s], now.UnixNano()) {
			changes = append(changes, setChange{s, c})
		}
	}
	err := b.write(ctx, nil, nil, changes, false)
	if err == nil {
		return nil
	}
	if ok, lerr := b.layoutMatches(b.want, slices.Sorted(maps.Keys(b.sets))); lerr == nil && !ok {
		// The table went (`nft flush ruleset`): lay it out again now, with
		// every ban, rather than at the next check.
		b.log.Warn("nftables table missing or altered while writing, laying it out again", "err", err)
		if _, err := b.lay(ctx, b.jailList(), b.sets, time.Now()); err != nil {
			return err
		}
		return nil
	}
	b.log.Debug("nftables write failed, repairing from the kernel", "err", err)
	sets := map[string]*setState{}
	for _, s := range states {
		sets[s.set.Name] = s
	}
	if _, rerr := b.repair(ctx, sets, now); rerr != nil {
		return errors.Join(err, rerr)
	}
	return nil
}

// Add adds bans to the sets of the jails given to the last Sync, or
// changes their expiry; overlapping bans are laid out as disjoint spans
// (see setModel). Each run of addresses changes in one transaction, so an
// address banned before and after never lapses. Bans already expired at
// now are skipped; bans of unknown jails are errors (the others are still
// added).
func (b *Backend) Add(ctx context.Context, bans []firewall.Ban, now time.Time) error {
	var errs []error
	regions := map[*setState][]span{}
	for _, bn := range bans {
		if _, ok := b.jails[bn.Jail]; !ok {
			errs = append(errs, fmt.Errorf("ban %s: jail %q is not in the table", bn.Prefix, bn.Jail))
			continue
		}
		p, exp, ok := normBan(bn)
		if !ok {
			errs = append(errs, fmt.Errorf("ban in jail %q: invalid prefix %s", bn.Jail, bn.Prefix))
			continue
		}
		if exp <= now.UnixNano() {
			continue
		}
		s := b.stateFor(bn.Jail, p)
		s.model.put(p, exp)
		regions[s] = append(regions[s], regionOf(p))
	}
	if err := b.apply(ctx, regions, now); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nftables add: %w", err)
	}
	return nil
}

// Delete removes bans. What they covered and no other ban of the jail
// covers is no longer dropped; what another ban covers stays dropped until
// that ban's expiry. A ban that is not there (expired, never added) is not
// an error.
func (b *Backend) Delete(ctx context.Context, bans []firewall.Ban) error {
	regions := map[*setState][]span{}
	for _, bn := range bans {
		p, _, ok := normBan(bn)
		if !ok {
			continue
		}
		s := b.stateFor(bn.Jail, p)
		if s == nil {
			continue
		}
		s.model.remove(p)
		regions[s] = append(regions[s], regionOf(p))
	}
	if err := b.apply(ctx, regions, b.now()); err != nil {
		return fmt.Errorf("nftables delete: %w", err)
	}
	return nil
}

// Check compares the layout and then every element with what moat bans and
// repairs what differs (see firewall.Backend). The layout costs four small
// netlink dumps. The elements are read back only when the ruleset's
// generation moved since the last check by something else than moat's own
// writes (someone ran nft, Docker changed its rules), after a write failed,
// or when the last full check is fullEvery old: otherwise the kernel still
// holds what moat last wrote, less what timed out, and nothing is read.
func (b *Backend) Check(ctx context.Context, now time.Time) (firewall.CheckReport, error) {
	var rep firewall.CheckReport
	if !b.synced {
		return rep, fmt.Errorf("nftables check: %w", firewall.ErrNotSynced)
	}
	ok, err := b.layoutMatches(b.want, slices.Sorted(maps.Keys(b.sets)))
	if err != nil {
		return rep, fmt.Errorf("nftables check: %w", err)
	}
	if !ok {
		rep.Full = true
		st, err := b.lay(ctx, b.jailList(), b.sets, now)
		rep.Add(firewall.Repair{Kind: firewall.RepairLayout,
			Detail: fmt.Sprintf("table %s was missing or altered: %s, %d elements put back", b.table.Name, st.mode, st.added)})
		if err != nil {
			return rep, fmt.Errorf("nftables check: %w", err)
		}
		b.lastFull = now
		return rep, nil
	}
	g, gerr := b.rd.generation()
	if gerr == nil && b.genOK && g == b.gen && now.Sub(b.lastFull) < fullEvery {
		b.collectIdle()
		return rep, nil
	}
	if gerr != nil || g != b.gen {
		b.lastCommit = time.Now() // someone else's commit may have collected garbage
	}
	// Reading every element back costs time quadratic in a set's size (the
	// kernel restarts its walk for each message of a dump): 0.6 s at
	// 100,000 bans. On a host where something else commits every second
	// (Docker starting containers), full comparisons are spaced so that
	// they take at most 1/fullShare of the time.
	if since := now.Sub(b.lastFull); since < fullShare*b.fullCost && since < fullEvery {
		b.genOK = false // compare at a later check
		rep.Deferred = true
		return rep, nil
	}
	// The kernel as of generation g is read next: if it matches, it is
	// known until the generation moves again.
	b.gen, b.genOK = g, gerr == nil
	rep.Full = true
	start := time.Now()
	found, err := b.repair(ctx, b.sets, now)
	for _, r := range found {
		rep.Add(r)
	}
	if err != nil {
		return rep, fmt.Errorf("nftables check: %w", err)
	}
	b.lastFull, b.fullCost = now, time.Since(start)
	return rep, nil
}

// fullShare bounds the share of time full comparisons take: one costing d
// is not followed by another within fullShare*d.
const fullShare = 20

// collectIdle collects the sets that hold zombies when that needs no wait
// (moat has not committed for gcInterval), so that they are gone before a
// later write would have to wait for it.
func (b *Backend) collectIdle() {
	if time.Since(b.lastCommit) < gcInterval+50*time.Millisecond {
		return
	}
	sets := map[*setState]bool{}
	for _, s := range b.sets {
		if len(s.model.zombies) > 0 {
			sets[s] = true
		}
	}
	if err := b.collect(sets); err != nil {
		b.log.Debug("nftables collect", "err", err)
	}
}

func (b *Backend) jailList() []firewall.Jail {
	return slices.SortedFunc(maps.Values(b.jails), func(x, y firewall.Jail) int { return cmp.Compare(x.Name, y.Name) })
}

// List reads all bans back from the kernel, as prefixes covering each
// element exactly: overlapping bans come back as the disjoint spans the
// kernel holds (an address banned inside a banned /24 reads as the pieces
// of the /24 around it). The jails are recovered from the rules' comments,
// so List works without a prior Sync. Expires is now plus the element's
// time left (zero for elements without timeout).
func (b *Backend) List(ctx context.Context) (bans []firewall.Ban, err error) {
	defer func() {
		if err != nil || bans == nil {
			b.resetConn()
		}
	}()
	if _, err := b.conn.ListTableOfFamily(b.table.Name, b.table.Family); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables list: list table %s: %w", b.table.Name, err)
	}
	rules, err := b.conn.GetRules(b.table, b.chain)
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables list: list rules: %w", err)
	}
	now := b.now()
	seen := map[string]bool{}
	for _, r := range rules {
		jail, ok := jailFromComment(ruleComment(r))
		if !ok || seen[jail] {
			continue
		}
		seen[jail] = true
		for fam := range families {
			name := setBase(jail) + families[fam].suffix
			spans, _, err := b.rd.spans(b.table.Name, name, int(families[fam].addrLen), now)
			if errors.Is(err, errNoSet) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("nftables list: %w", err)
			}
			for _, s := range spans {
				var exp time.Time
				if s.exp != never {
					exp = time.Unix(0, s.exp)
				}
				for _, p := range prefixesOf(s.first, s.last) {
					bans = append(bans, firewall.Ban{Jail: jail, Prefix: p, Expires: exp})
				}
			}
		}
	}
	slices.SortFunc(bans, func(x, y firewall.Ban) int {
		if c := strings.Compare(x.Jail, y.Jail); c != 0 {
			return c
		}
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return x.Prefix.Bits() - y.Prefix.Bits()
	})
	return bans, nil
}

// chainIntact reports whether the table and its chain exist with the right
// hook, priority, type and policy, and returns the names of the table's
// named sets.
func (b *Backend) chainIntact() (sets []string, ok bool) {
	defer func() {
		if !ok {
			b.resetConn()
		}
	}()
	ch, err := b.conn.ListChain(b.table, chainName)
	if err != nil || !b.sameChain(ch) {
		return nil, false
	}
	all, err := b.conn.GetSets(b.table)
	if err != nil {
		return nil, false
	}
	for _, s := range all {
		if !s.Anonymous {
			sets = append(sets, s.Name)
		}
	}
	return sets, true
}

func (b *Backend) sameChain(ch *nftables.Chain) bool {
	return ch.Hooknum != nil && *ch.Hooknum == *b.chain.Hooknum && ch.Priority != nil && *ch.Priority == *b.chain.Priority &&
		ch.Policy != nil && *ch.Policy == *b.chain.Policy && ch.Type == b.chain.Type
}

// queueRelayout queues a change of layout that keeps the table, the chain
// and the sets still wanted (with their elements): flush the chain's rules,
// delete the sets no longer wanted, add the new sets (adding an existing one
// is a no-op), and add the rules.
func (b *Backend) queueRelayout(jails []firewall.Jail, setOf map[string]*nftables.Set, existing []string) error {
	b.conn.FlushChain(b.chain)
	for _, name := range existing {
		if _, ok := setOf[name]; !ok {
			b.conn.DelSet(&nftables.Set{Table: b.table, Name: name})
		}
	}
	return b.queueSetsAndRules(jails, setOf)
}

func (b *Backend) queueSetsAndRules(jails []firewall.Jail, setOf map[string]*nftables.Set) error {
	for _, j := range jails {
		for fam := range families {
			s := setOf[setBase(j.Name)+families[fam].suffix]
			s.ID = nextSetID()
			if err := b.conn.AddSet(s, nil); err != nil {
				return fmt.Errorf("add set %s: %w", s.Name, err)
			}
			if err := addRule(b.conn, b.table, b.chain, j, fam, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// queueLayout queues the rebuild of the table: delete it (adding it first
// so the delete cannot fail), then make table, chain, sets and rules.
func (b *Backend) queueLayout(jails []firewall.Jail, setOf map[string]*nftables.Set) error {
	b.conn.AddTable(b.table)
	b.conn.DelTable(b.table)
	b.conn.AddTable(b.table)
	b.conn.AddChain(b.chain)
	return b.queueSetsAndRules(jails, setOf)
}

// layoutMatches reports whether the table has the chain with exactly the
// rules the comments describe and all the sets. A missing table or chain is
// (false, nil).
func (b *Backend) layoutMatches(comments, setNames []string) (ok bool, err error) {
	defer func() {
		if !ok {
			b.resetConn() // an error reply may leave messages unread
		}
	}()
	if _, err := b.conn.ListTableOfFamily(b.table.Name, b.table.Family); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("list table %s: %w", b.table.Name, err)
	}
	ch, err := b.conn.ListChain(b.table, chainName)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("list chain %s: %w", chainName, err)
	}
	if !b.sameChain(ch) {
		return false, nil
	}
	rules, err := b.conn.GetRules(b.table, b.chain)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("list rules: %w", err)
	}
	var have []string
	for _, r := range rules {
		have = append(have, ruleComment(r))
	}
	slices.Sort(have)
	if !slices.Equal(have, comments) {
		return false, nil
	}
	sets, err := b.conn.GetSets(b.table)
	if err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("list sets: %w", err)
	}
	present := map[string]bool{}
	for _, s := range sets {
		if !s.Anonymous && s.Interval && s.HasTimeout {
			present[s.Name] = true
		}
	}
	for _, n := range setNames {
		if !present[n] {
			return false, nil
		}
	}
	return true, nil
}

// notFound reports whether err says an object is missing. The library
// formats some dump errors with %v, so the errno is matched by its text too.
func notFound(err error) bool {
	return errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), syscall.ENOENT.Error())
}

func spansText(ss []span, now time.Time) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "[%s-%s %v] ", s.first, s.last, time.Duration(s.exp-now.UnixNano()).Round(time.Millisecond))
	}
	return b.String()
}
