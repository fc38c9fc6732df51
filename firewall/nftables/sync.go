package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/moatproj/moat/firewall"
)

const (
	// chunkElems bounds the set elements sent in one netlink batch, so a
	// batch stays well below the socket's send buffer (~200 KiB).
	chunkElems = 2048
	// msgElems bounds the elements of one netlink message: the element
	// list is one attribute, whose length is 16 bits, and the kernel
	// silently drops what an overflowing list loses (an IPv6 element with
	// timeout takes about 60 bytes).
	msgElems = 512
	// timeoutSlack is how far an element's time left may be from the wanted
	// one before Sync rewrites it.
	timeoutSlack = 2 * time.Second
)

// op adds or deletes the elements of one ban in one set.
type op struct {
	set    *nftables.Set
	del    bool
	prefix netip.Prefix
	els    []nftables.SetElement
}

func (b *Backend) addOp(set *nftables.Set, p netip.Prefix, left time.Duration) op {
	return op{set: set, prefix: p, els: prefixElements(p, left)}
}

func (b *Backend) delOp(set *nftables.Set, p netip.Prefix) op {
	return op{set: set, del: true, prefix: p, els: prefixElements(p, 0)}
}

// queue appends ops to the connection's pending batch, merging neighbours
// of the same set and kind into one message.
func (b *Backend) queue(ops []op) error {
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && ops[j].set.Name == ops[i].set.Name && ops[j].del == ops[i].del {
			j++
		}
		var els []nftables.SetElement
		for k, o := range ops[i:j] {
			els = append(els, o.els...)
			if len(els) < msgElems-1 && i+k+1 < j {
				continue
			}
			var err error
			if ops[i].del {
				err = b.conn.SetDeleteElements(ops[i].set, els)
			} else {
				err = b.conn.SetAddElements(ops[i].set, els)
			}
			if err != nil {
				return fmt.Errorf("queue elements of set %s: %w", ops[i].set.Name, err)
			}
			els = nil
		}
		i = j
	}
	return nil
}

// apply sends ops in chunks of at most chunkElems elements, each chunk in
// one transaction. A chunk that fails is retried one op per transaction, so
// that a delete of an element that expired meanwhile (ENOENT, which fails a
// whole batch) loses nothing else; deletes of missing elements are not
// errors. If pre is not nil, it is queued before the first chunk, in the
// same transaction; if that transaction fails, pre is sent alone, and
// verify (which must then be given) tells whether the layout is in place
// even though an error came back.
func (b *Backend) apply(ctx context.Context, pre func() error, verify func() bool, ops []op) error {
	first := true
	for start := 0; start < len(ops) || first; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end, n := start, 0
		for end < len(ops) && (n == 0 || n+len(ops[end].els) <= chunkElems) {
			n += len(ops[end].els)
			end++
		}
		chunk := ops[start:end]
		if first && pre != nil {
			if err := pre(); err != nil {
				b.resetConn() // drop what was queued
				return err
			}
		}
		if err := b.queue(chunk); err != nil {
			b.resetConn()
			return err
		}
		err := b.flush()
		if err != nil && first && pre != nil {
			// Write the layout alone, then the elements one by one. An
			// error may come for a batch that was applied: then the chain
			// is there.
			b.log.Debug("nftables layout batch failed, retrying without elements", "err", err)
			if err := pre(); err != nil {
				b.resetConn()
				return err
			}
			if err := b.flush(); err != nil && !verify() {
				return fmt.Errorf("write table %s: %w", b.table.Name, err)
			}
			if err := b.retry(ctx, chunk); err != nil {
				return err
			}
		} else if err != nil {
			b.log.Debug("nftables batch failed, retrying element by element", "err", err, "ops", len(chunk))
			if err := b.retry(ctx, chunk); err != nil {
				return err
			}
		}
		first = false
		start = end
	}
	return nil
}

// retry applies ops one per transaction. A delete that finds nothing is
// fine; an add that reports an error is checked by reading the set back,
// since an error can arrive for a batch the kernel applied.
func (b *Backend) retry(ctx context.Context, ops []op) error {
	var errs []error
	readBack := map[string]map[netip.Prefix]time.Duration{}
	for _, o := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.queue([]op{o}); err != nil {
			b.resetConn()
			return err
		}
		err := b.flush()
		if err == nil {
			continue
		}
		if o.del {
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			errs = append(errs, fmt.Errorf("delete %s from set %s: %w", o.prefix, o.set.Name, err))
			continue
		}
		have, ok := readBack[o.set.Name]
		if !ok {
			var rerr error
			have, rerr = b.readSet(o.set)
			if rerr != nil {
				b.log.Debug("nftables read back", "set", o.set.Name, "err", rerr)
			}
			readBack[o.set.Name] = have
		}
		if _, ok := have[o.prefix]; ok {
			continue
		}
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			err2 := b.resolveOverlap(o, have)
			if err2 == nil {
				continue
			}
			err = fmt.Errorf("%w (overlap: %v)", err, err2)
		}
		errs = append(errs, fmt.Errorf("add %s to set %s: %w", o.prefix, o.set.Name, err))
	}
	return errors.Join(errs...)
}

// resolveOverlap handles an add the kernel refused because the interval
// overlaps others (an interval set holds no overlapping elements). A prefix
// inside a wider one already banned is left out: the wider ban covers it.
// Narrower prefixes inside the new one are replaced by it, in one
// transaction. have is the set's content, kept up to date.
func (b *Backend) resolveOverlap(o op, have map[netip.Prefix]time.Duration) error {
	var inside []op
	for q := range have {
		switch {
		case q.Bits() < o.prefix.Bits() && q.Contains(o.prefix.Addr()):
			b.log.Debug("nftables ban covered by a wider one", "set", o.set.Name, "prefix", o.prefix.String(), "wider", q.String())
			return nil
		case q.Bits() > o.prefix.Bits() && o.prefix.Contains(q.Addr()):
			inside = append(inside, b.delOp(o.set, q))
		}
	}
	if len(inside) == 0 {
		return errors.New("overlaps an element that is not a prefix")
	}
	sortOps(inside)
	if err := b.queue(append(inside, o)); err != nil {
		b.resetConn()
		return err
	}
	if err := b.flush(); err != nil {
		return err
	}
	for _, d := range inside {
		delete(have, d.prefix)
	}
	have[o.prefix] = o.els[0].Timeout
	b.log.Debug("nftables ban replaced narrower ones", "set", o.set.Name, "prefix", o.prefix.String(), "replaced", len(inside))
	return nil
}

// readSet reads the prefixes and their time left back from set.
func (b *Backend) readSet(set *nftables.Set) (map[netip.Prefix]time.Duration, error) {
	els, err := b.conn.GetSetElements(set)
	if err != nil {
		b.resetConn()
		return nil, fmt.Errorf("read set %s: %w", set.Name, err)
	}
	got, skipped := elementsToPrefixes(els)
	m := make(map[netip.Prefix]time.Duration, len(got))
	for _, e := range got {
		m[e.prefix] = e.left
	}
	if skipped > 0 {
		return m, fmt.Errorf("read set %s: %d elements are not prefixes", set.Name, skipped)
	}
	return m, nil
}

// desired groups bans by set, leaving out expired ones, bans of unknown
// jails, and prefixes covered by a wider one in the same set (the kernel
// refuses overlapping intervals). Duplicates keep the longest time left.
func (b *Backend) desired(jails []firewall.Jail, bans []firewall.Ban, now time.Time) (map[string]map[netip.Prefix]time.Duration, int) {
	want := map[string]map[netip.Prefix]time.Duration{}
	known := map[string]bool{}
	for _, j := range jails {
		known[j.Name] = true
		for fam := range families {
			want[setBase(j.Name)+families[fam].suffix] = map[netip.Prefix]time.Duration{}
		}
	}
	dropped := 0
	for _, bn := range bans {
		if !known[bn.Jail] || !bn.Prefix.IsValid() {
			dropped++
			continue
		}
		var left time.Duration
		if !bn.Expires.IsZero() {
			left = bn.Expires.Sub(now)
			if left < time.Millisecond {
				continue
			}
		}
		p := bn.Prefix.Masked()
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				dropped++
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		set := want[setBase(bn.Jail)+families[familyOf(p)].suffix]
		if old, ok := set[p]; ok && (old == 0 || (left != 0 && left <= old)) {
			continue
		}
		set[p] = left
	}
	for _, set := range want {
		dropped += dropCovered(set)
	}
	return want, dropped
}

// dropCovered removes from set the prefixes contained in another one.
func dropCovered(set map[netip.Prefix]time.Duration) int {
	var lens []int
	for p := range set {
		if !slices.Contains(lens, p.Bits()) {
			lens = append(lens, p.Bits())
		}
	}
	if len(lens) < 2 {
		return 0
	}
	slices.Sort(lens)
	n := 0
	for p := range set {
		for _, l := range lens {
			if l >= p.Bits() {
				break
			}
			if _, ok := set[netip.PrefixFrom(p.Addr(), l).Masked()]; ok {
				delete(set, p)
				n++
				break
			}
		}
	}
	return n
}

// Sync makes the table hold exactly jails and bans. When the rules or sets
// differ from what jails need, the chain's rules are replaced, sets of
// jails gone are deleted and new ones made, in one transaction with the
// first chunk of elements; sets of jails kept keep their elements, so their
// bans hold throughout. When the table or chain is missing or wrong (after
// `nft flush ruleset`), the table is deleted and made again. Then the
// elements are corrected: missing ones added, extra ones deleted, and those
// whose time left is off by more than 2 s rewritten. Large syncs go in
// chunks of 2048 elements per transaction.
func (b *Backend) Sync(ctx context.Context, jails []firewall.Jail, bans []firewall.Ban, now time.Time) error {
	names := map[string]bool{}
	for _, j := range jails {
		if names[j.Name] {
			return fmt.Errorf("nftables sync: jail %q given twice", j.Name)
		}
		names[j.Name] = true
	}
	want, dropped := b.desired(jails, bans, now)
	if dropped > 0 {
		b.log.Warn("nftables sync left out bans", "count", dropped, "reason", "unknown jail, invalid prefix or covered by a wider prefix")
	}
	comments := wantComments(jails)
	setOf := map[string]*nftables.Set{}
	for _, j := range jails {
		for fam := range families {
			s := newSet(b.table, j.Name, fam)
			setOf[s.Name] = s
		}
	}
	setNames := slices.Sorted(mapKeys(setOf))

	b.synced = false
	same, err := b.layoutMatches(comments, setNames)
	if err != nil {
		return fmt.Errorf("nftables sync: %w", err)
	}
	mode := "kept"
	var pre func() error
	if !same {
		existing, ok := b.chainIntact()
		if ok {
			// The table and chain stay; sets of unchanged jails keep their
			// elements throughout, so their bans hold without a gap.
			mode = "relaid"
			pre = func() error { return b.queueRelayout(jails, setOf, existing) }
		} else {
			mode = "rebuilt"
			pre = func() error { return b.queueLayout(jails, setOf) }
		}
	}
	verify := func() bool {
		ok, _ := b.layoutMatches(comments, setNames)
		return ok
	}
	var st syncStats
	if mode == "rebuilt" {
		err = b.apply(ctx, pre, verify, b.allAdds(want, setOf, &st))
	} else {
		var ops []op
		var flushes []*nftables.Set
		ops, flushes, err = b.diff(want, setOf, &st)
		if err != nil {
			return fmt.Errorf("nftables sync: %w", err)
		}
		layout := pre
		pre = func() error {
			if layout != nil {
				if err := layout(); err != nil {
					return err
				}
			}
			for _, set := range flushes {
				b.conn.FlushSet(set)
			}
			return nil
		}
		err = b.apply(ctx, pre, verify, ops)
		if err != nil && mode == "relaid" {
			b.log.Warn("nftables sync: relayout failed, rebuilding the table", "err", err)
			mode, st = "rebuilt", syncStats{}
			err = b.apply(ctx, func() error { return b.queueLayout(jails, setOf) }, verify, b.allAdds(want, setOf, &st))
		}
	}
	if err != nil {
		return fmt.Errorf("nftables sync: %w", err)
	}
	b.log.Info("nftables synced", "table", b.table.Name, "jails", len(jails), "layout", mode,
		"added", st.added, "deleted", st.deleted, "fixed", st.fixed)
	b.jails = map[string]firewall.Jail{}
	for _, j := range jails {
		b.jails[j.Name] = j
	}
	b.want = comments
	b.synced = true
	return nil
}

type syncStats struct{ added, deleted, fixed int }

// allAdds returns the ops adding every wanted ban, sorted.
func (b *Backend) allAdds(want map[string]map[netip.Prefix]time.Duration, setOf map[string]*nftables.Set, st *syncStats) []op {
	var ops []op
	for name, set := range setOf {
		for p, left := range want[name] {
			ops = append(ops, b.addOp(set, p, left))
			st.added++
		}
	}
	sortOps(ops)
	return ops
}

// diff reads each wanted set back and returns the ops that make it hold
// exactly the wanted bans: deletes of extra elements, adds of missing ones,
// and a delete and add of those whose time left is off by more than
// timeoutSlack. A missing set counts as empty; a set holding elements moat
// did not write is returned in flushes, to be emptied first.
func (b *Backend) diff(want map[string]map[netip.Prefix]time.Duration, setOf map[string]*nftables.Set, st *syncStats) (ops []op, flushes []*nftables.Set, err error) {
	var dels, adds []op
	for name, set := range setOf {
		have, err := b.readSet(set)
		switch {
		case err != nil && notFound(err):
			have = nil
		case err != nil && have != nil:
			b.log.Warn("nftables sync empties a set", "set", name, "err", err)
			flushes = append(flushes, set)
			have = nil
		case err != nil:
			return nil, nil, err
		}
		for p := range have {
			if _, ok := want[name][p]; !ok {
				dels = append(dels, b.delOp(set, p))
				st.deleted++
			}
		}
		for p, left := range want[name] {
			got, ok := have[p]
			switch {
			case !ok:
				adds = append(adds, b.addOp(set, p, left))
				st.added++
			case (got == 0) != (left == 0) || absDur(got-left) > timeoutSlack:
				dels = append(dels, b.delOp(set, p))
				adds = append(adds, b.addOp(set, p, left))
				st.fixed++
			}
		}
	}
	ops = append(dels, adds...)
	sortOps(ops)
	return ops, flushes, nil
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
			s.ID = 0
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

func mapKeys[M ~map[K]V, K comparable, V any](m M) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
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

func (b *Backend) setFor(bn firewall.Ban) (*nftables.Set, netip.Prefix, error) {
	p := bn.Prefix.Masked()
	if !p.IsValid() {
		return nil, p, fmt.Errorf("ban in jail %q: invalid prefix", bn.Jail)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return newSet(b.table, bn.Jail, familyOf(p)), p, nil
}

// Add adds bans, in one transaction when possible, to the sets of the jails
// given to the last Sync. An element already present gets the new timeout
// (kernels since 6.10 update it in place). A prefix inside a wider banned
// one is left out; narrower banned prefixes inside a new one are replaced
// by it (the kernel refuses overlapping intervals).
// Bans already expired at now are skipped; bans of unknown jails are errors
// (the others are still added).
func (b *Backend) Add(ctx context.Context, bans []firewall.Ban, now time.Time) error {
	var ops []op
	var errs []error
	for _, bn := range bans {
		if _, ok := b.jails[bn.Jail]; !ok {
			errs = append(errs, fmt.Errorf("ban %s: jail %q is not in the table", bn.Prefix, bn.Jail))
			continue
		}
		set, p, err := b.setFor(bn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var left time.Duration
		if !bn.Expires.IsZero() {
			left = bn.Expires.Sub(now)
			if left < time.Millisecond {
				continue
			}
		}
		ops = append(ops, b.addOp(set, p, left))
	}
	if len(ops) > 0 {
		sortOps(ops)
		if err := b.apply(ctx, nil, nil, ops); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nftables add: %w", err)
	}
	return nil
}

// Delete removes bans in one transaction when possible. A ban that is
// already gone (expired in the kernel, or never added) is not an error.
func (b *Backend) Delete(ctx context.Context, bans []firewall.Ban) error {
	var ops []op
	for _, bn := range bans {
		set, p, err := b.setFor(bn)
		if err != nil {
			continue // never added
		}
		ops = append(ops, b.delOp(set, p))
	}
	if len(ops) == 0 {
		return nil
	}
	sortOps(ops)
	if err := b.apply(ctx, nil, nil, ops); err != nil {
		return fmt.Errorf("nftables delete: %w", err)
	}
	return nil
}

// Intact reports whether the table, chain, rules and sets made by the last
// Sync are still there: false (and no error) before the first Sync and
// after someone deleted or changed them, for instance with `nft flush
// ruleset`. It costs four netlink dumps of the layout, none of elements.
func (b *Backend) Intact(ctx context.Context) (bool, error) {
	if !b.synced {
		return false, nil
	}
	setNames := make([]string, 0, 2*len(b.jails))
	for name := range b.jails {
		for fam := range families {
			setNames = append(setNames, setBase(name)+families[fam].suffix)
		}
	}
	ok, err := b.layoutMatches(b.want, setNames)
	if err != nil {
		return false, fmt.Errorf("nftables intact: %w", err)
	}
	return ok, nil
}

// List reads all bans back from the kernel. The jails are recovered from
// the rules' comments, so List works without a prior Sync. Expires is now
// plus the element's time left (zero for elements without timeout).
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
			set := newSet(b.table, jail, fam)
			have, err := b.readSet(set)
			if err != nil && have == nil {
				if notFound(err) {
					continue
				}
				return nil, fmt.Errorf("nftables list: %w", err)
			}
			for p, left := range have {
				bn := firewall.Ban{Jail: jail, Prefix: p}
				if left > 0 {
					bn.Expires = now.Add(left)
				}
				bans = append(bans, bn)
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

// sortOps orders ops stably by kind (deletes first), then set, then address,
// so that messages group well and each set receives its intervals in
// ascending order, as nft sends them.
func sortOps(ops []op) {
	slices.SortStableFunc(ops, func(x, y op) int {
		if x.del != y.del {
			if x.del {
				return -1
			}
			return 1
		}
		if c := strings.Compare(x.set.Name, y.set.Name); c != 0 {
			return c
		}
		return x.prefix.Addr().Compare(y.prefix.Addr())
	})
}
