package jail

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
)

// winKey names one failure window (or ban, or ban count): a jail and the
// prefix an address is banned by. It is comparable, so looking it up
// allocates nothing.
type winKey struct {
	jail   string
	prefix netip.Prefix
}

// tkey is the tracker's compact form of a winKey (20 bytes, no pointer):
// the jail's index in the tracker's name table, the address in its 16-byte
// form (IPv4 mapped) and the prefix length counted in that 128-bit space
// (an IPv4 /32 is 128). Keys are normalised (see normPrefix), so no IPv6
// key is IPv4-mapped and the mapping cannot collide.
type tkey struct {
	addr [16]byte
	jail uint16
	bits uint8
}

// inlTimes is how many failure times a window holds without a separate
// allocation: enough for maxretry up to inlTimes+1 (fail2ban's default
// maxretry is 5).
const inlTimes = 4

// Window flags.
const (
	// fOnDisk: the state db may hold a value for the key (it was
	// checkpointed, or loaded): a removed window must then be deleted at
	// the next checkpoint.
	fOnDisk = 1 << iota
	// fDirty: the window changed since the last checkpoint.
	fDirty
	// fMore: the times are in tracker.more, not inl.
	fMore
)

// window holds the failure times (Unix nanoseconds, log time) of one key
// that lie within the jail's find time of the newest one. It is a node of
// the tracker's recency list, held in the tracker's slab and linked by
// slab index (0: none). It is 64 bytes and holds no pointer, so the
// garbage collector never scans the slab.
type window struct {
	key   tkey
	n     uint8 // times in inl
	flags uint8
	inl   [inlTimes]int64

	prev, next uint32 // prev: more recent, next: less recent; free list: next
}

// slabShift sets the slab's chunk size (4096 windows, 256 KiB).
const slabShift = 12

// tracker holds the failure windows of every jail, bounded by max entries.
// Entries sit in a list ordered by the arrival of their last failure (most
// recent first).
//
// When the tracker is full, a failure for a new key evicts the entry that
// has gone longest without a new failure: the tail of the list, whose
// newest failure arrived before every other entry's. Eviction is O(1): no
// scan, and the evicted slot is reused for the new key.
//
// Memory: the windows live in a slab of fixed chunks (never moved, no
// pointers); an open-addressing hash table of 4-byte slab indices (linear
// probing, seeded hash, load at most 3/4) finds them. That is about 72
// bytes per tracked key.
//
// The tracker also keeps what the next checkpoint must write: the windows
// changed since the last one and the keys of removed windows the state db
// may hold. A change moves its window to the front, so the changed windows
// are a prefix of the list, each flagged dirty: the dirty set costs no
// memory of its own.
//
// A tracker is not safe for concurrent use; the engine guards it with its
// mutex.
type tracker struct {
	max int

	slab   []*[1 << slabShift]window
	used   uint32 // slots handed out so far (slot 0 is never used)
	free   uint32 // head of the free list (0: empty)
	n      int    // live windows
	tab    []uint32
	seed   maphash.Seed
	more   map[uint32][]int64 // times of the windows flagged fMore
	head   uint32
	tail   uint32
	ndirty int // windows flagged dirty: the first ndirty of the list

	// names and ids intern jail names; an id is never reused.
	names   []string
	ids     map[string]uint16
	perJail []int // by jail id

	// del holds the keys of removed windows the state db may hold.
	del map[tkey]struct{}

	// onEvict, when set, is called for each entry evicted to make room.
	onEvict func(k winKey)
}

func newTracker(max int) *tracker {
	return &tracker{
		max:  max,
		tab:  make([]uint32, 64),
		seed: maphash.MakeSeed(),
		more: make(map[uint32][]int64),
		ids:  make(map[string]uint16),
		del:  make(map[tkey]struct{}),
		used: 1,
	}
}

// at returns the window in slot i (i > 0).
func (t *tracker) at(i uint32) *window {
	return &t.slab[i>>slabShift][i&(1<<slabShift-1)]
}

// alloc returns a free slot.
func (t *tracker) alloc() uint32 {
	if i := t.free; i != 0 {
		t.free = t.at(i).next
		*t.at(i) = window{}
		return i
	}
	i := t.used
	if int(i>>slabShift) == len(t.slab) {
		t.slab = append(t.slab, new([1 << slabShift]window))
	}
	t.used++
	return i
}

func (t *tracker) release(i uint32) {
	if t.at(i).flags&fMore != 0 {
		delete(t.more, i)
	}
	*t.at(i) = window{next: t.free}
	t.free = i
}

func (t *tracker) hash(k *tkey) uint64 {
	var b [19]byte
	copy(b[:16], k.addr[:])
	b[16], b[17], b[18] = byte(k.jail), byte(k.jail>>8), k.bits
	return maphash.Bytes(t.seed, b[:])
}

// find returns the slot of k and its position in tab, or slot 0 and the
// empty position where k would go.
func (t *tracker) find(k *tkey) (slot uint32, pos int) {
	mask := len(t.tab) - 1
	p := int(t.hash(k)) & mask
	for {
		i := t.tab[p]
		if i == 0 || t.at(i).key == *k {
			return i, p
		}
		p = (p + 1) & mask
	}
}

// insert puts slot i (holding a key not in tab) into tab.
func (t *tracker) insert(i uint32) {
	if 4*(t.n+1) > 3*len(t.tab) {
		t.grow()
	}
	_, p := t.find(&t.at(i).key)
	t.tab[p] = i
	t.n++
}

func (t *tracker) grow() {
	old := t.tab
	t.tab = make([]uint32, 2*len(old))
	mask := len(t.tab) - 1
	for _, i := range old {
		if i == 0 {
			continue
		}
		p := int(t.hash(&t.at(i).key)) & mask
		for t.tab[p] != 0 {
			p = (p + 1) & mask
		}
		t.tab[p] = i
	}
}

// unindex removes the entry at position p of tab (backward-shift
// deletion: no tombstones).
func (t *tracker) unindex(p int) {
	mask := len(t.tab) - 1
	for q := (p + 1) & mask; t.tab[q] != 0; q = (q + 1) & mask {
		home := int(t.hash(&t.at(t.tab[q]).key)) & mask
		// Move q's entry into the hole at p unless its home lies
		// cyclically in (p, q].
		if (q > p && (home <= p || home > q)) || (q < p && home <= p && home > q) {
			t.tab[p] = t.tab[q]
			p = q
		}
	}
	t.tab[p] = 0
	t.n--
}

// times returns the failure times of the window in slot i; the slice may
// alias the window.
func (t *tracker) times(i uint32) []int64 {
	w := t.at(i)
	if w.flags&fMore != 0 {
		return t.more[i]
	}
	return w.inl[:w.n]
}

// setTimes stores ts (which may alias the window's own storage).
func (t *tracker) setTimes(i uint32, ts []int64) {
	w := t.at(i)
	if len(ts) <= inlTimes {
		w.n = uint8(copy(w.inl[:], ts))
		if w.flags&fMore != 0 {
			w.flags &^= fMore
			delete(t.more, i)
		}
		return
	}
	if w.flags&fMore == 0 {
		ts = append([]int64(nil), ts...)
		w.flags |= fMore
		w.n = 0
	}
	t.more[i] = ts
}

// appendTime adds one time to the window in slot i.
func (t *tracker) appendTime(i uint32, at int64) {
	w := t.at(i)
	if w.flags&fMore == 0 && int(w.n) < inlTimes {
		w.inl[w.n] = at
		w.n++
		return
	}
	if w.flags&fMore == 0 {
		c := make([]int64, inlTimes, 2*inlTimes)
		copy(c, w.inl[:])
		t.more[i] = c
		w.flags |= fMore
		w.n = 0
	}
	t.more[i] = append(t.more[i], at)
}

// newest returns the latest failure time of the window in slot i.
func (t *tracker) newest(i uint32) int64 {
	ts := t.times(i)
	m := ts[0]
	for _, x := range ts[1:] {
		m = max(m, x)
	}
	return m
}

// jailID returns the id of a jail name, interning it.
func (t *tracker) jailID(name string) uint16 {
	if id, ok := t.ids[name]; ok {
		return id
	}
	// 65536 distinct jail names in one process's life are not a real
	// configuration; past that, names share the last id (windows of those
	// jails may then mix, nothing worse).
	id := uint16(min(len(t.names), 0xffff))
	if len(t.names) <= 0xffff {
		t.names = append(t.names, name)
		t.perJail = append(t.perJail, 0)
	}
	t.ids[name] = id
	return id
}

// tk converts k, interning its jail.
func (t *tracker) tk(k winKey) tkey {
	return tkey{addr: k.prefix.Addr().As16(), jail: t.jailID(k.jail), bits: prefixBits(k.prefix)}
}

// lookupKey converts k without interning; ok is false for a jail never seen.
func (t *tracker) lookupKey(k winKey) (tkey, bool) {
	id, ok := t.ids[k.jail]
	if !ok {
		return tkey{}, false
	}
	return tkey{addr: k.prefix.Addr().As16(), jail: id, bits: prefixBits(k.prefix)}, true
}

func prefixBits(p netip.Prefix) uint8 {
	if p.Addr().Is4() {
		return uint8(p.Bits() + 96)
	}
	return uint8(p.Bits())
}

// prefix returns the prefix of k.
func (k tkey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.addr)
	if a.Is4In6() && k.bits >= 96 {
		return netip.PrefixFrom(a.Unmap(), int(k.bits)-96)
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// winKey returns k in its long form.
func (t *tracker) winKey(k tkey) winKey {
	return winKey{jail: t.names[k.jail], prefix: k.prefix()}
}

// appendDBKey appends the state db key of k: jail name, 0, the 16-byte
// address and the prefix length (see tkey).
func (t *tracker) appendDBKey(b []byte, k tkey) []byte {
	b = append(b, t.names[k.jail]...)
	b = append(b, 0)
	b = append(b, k.addr[:]...)
	return append(b, k.bits)
}

// markDirty flags the window in slot i, which is at the front of the list.
func (t *tracker) markDirty(i uint32) {
	if w := t.at(i); w.flags&fDirty == 0 {
		w.flags |= fDirty
		t.ndirty++
	}
}

// forget records that the window in slot i left memory: the next
// checkpoint deletes its key if the state db may hold it.
func (t *tracker) forget(i uint32) {
	w := t.at(i)
	if w.flags&fOnDisk != 0 {
		t.del[w.key] = struct{}{}
	}
	if w.flags&fDirty != 0 {
		w.flags &^= fDirty
		t.ndirty--
	}
}

// add records a failure at (Unix nanoseconds, log time) for k, drops the
// times that are more than findtime older than the newest, and returns how
// many remain. Times may arrive out of order.
func (t *tracker) add(k winKey, at, findtime int64) int {
	tk := t.tk(k)
	i, _ := t.find(&tk)
	if i == 0 {
		if t.n >= t.max && t.tail != 0 {
			old := t.tail
			if t.onEvict != nil {
				t.onEvict(t.winKey(t.at(old).key))
			}
			t.removeSlot(old)
		}
		i = t.alloc()
		w := t.at(i)
		w.key = tk
		// A delete of this key still pending: the put replaces it.
		if _, ok := t.del[tk]; ok {
			delete(t.del, tk)
			w.flags |= fOnDisk
		}
		t.insert(i)
		t.perJail[tk.jail]++
		t.pushFront(i)
	} else if t.head != i {
		t.unlink(i)
		t.pushFront(i)
	}
	t.markDirty(i)
	t.appendTime(i, at)
	cut := t.newest(i) - findtime
	ts := t.times(i)
	kept := ts[:0]
	for _, x := range ts {
		if x >= cut {
			kept = append(kept, x)
		}
	}
	t.setTimes(i, kept)
	return len(kept)
}

// load puts a saved window back (on open), unless the tracker is full;
// then the saved window is deleted at the next checkpoint.
func (t *tracker) load(k winKey, times []int64) bool {
	if len(times) == 0 {
		return false
	}
	tk := t.tk(k)
	if old, _ := t.find(&tk); old != 0 {
		t.removeSlot(old)
	}
	if t.n >= t.max {
		t.del[tk] = struct{}{}
		return false
	}
	delete(t.del, tk)
	i := t.alloc()
	w := t.at(i)
	w.key, w.flags = tk, fOnDisk
	t.setTimes(i, times)
	t.insert(i)
	t.perJail[tk.jail]++
	t.pushFront(i)
	return true
}

// get returns the failure times of k (aliasing the tracker's storage), or
// nil when no window of k is held.
func (t *tracker) get(k winKey) []int64 {
	tk, ok := t.lookupKey(k)
	if !ok {
		return nil
	}
	if i, _ := t.find(&tk); i != 0 {
		return t.times(i)
	}
	return nil
}

// remove drops k's window (the next checkpoint deletes it from the state
// db if needed).
func (t *tracker) remove(k winKey) {
	tk, ok := t.lookupKey(k)
	if !ok {
		return
	}
	if i, _ := t.find(&tk); i != 0 {
		t.removeSlot(i)
	}
}

func (t *tracker) removeSlot(i uint32) {
	w := t.at(i)
	_, p := t.find(&w.key)
	t.unindex(p)
	t.unlink(i)
	t.perJail[w.key.jail]--
	t.forget(i)
	t.release(i)
}

// expireOld drops entries from the least recent end while their newest
// failure is older than their jail's find time before now, stopping at the
// first fresh one (so the cost is proportional to what is dropped).
func (t *tracker) expireOld(now int64, findtime func(jail string) (int64, bool)) {
	for i := t.tail; i != 0; i = t.tail {
		ft, ok := findtime(t.names[t.at(i).key.jail])
		if ok && t.newest(i) >= now-ft {
			return
		}
		t.removeSlot(i)
	}
}

// removeJail drops every window of a jail (reload; a full scan is fine there).
func (t *tracker) removeJail(jail string) {
	id, ok := t.ids[jail]
	if !ok || t.perJail[id] == 0 {
		return
	}
	for i := t.head; i != 0; {
		next := t.at(i).next
		if t.at(i).key.jail == id {
			t.removeSlot(i)
		}
		i = next
	}
}

// count returns how many windows a jail holds.
func (t *tracker) count(jail string) int {
	if id, ok := t.ids[jail]; ok {
		return t.perJail[id]
	}
	return 0
}

// jailsHeld returns the names of the jails that hold windows.
func (t *tracker) jailsHeld() []string {
	var out []string
	for id, n := range t.perJail {
		if n > 0 {
			out = append(out, t.names[id])
		}
	}
	return out
}

func (t *tracker) len() int { return t.n }

// keys returns every held key, most recent first.
func (t *tracker) keys() []winKey {
	out := make([]winKey, 0, t.n)
	for i := t.head; i != 0; i = t.at(i).next {
		out = append(out, t.winKey(t.at(i).key))
	}
	return out
}

// pendingWrites is how many keys the next checkpoint writes or deletes.
func (t *tracker) pendingWrites() int {
	return len(t.del) + t.ndirty
}

// snapshot moves the dirty windows and pending deletes into b (encoded
// state db keys and values) and clears them. The commit sorts b, outside
// the engine's mutex.
func (t *tracker) snapshot(b *winBatch) {
	n, size := len(t.del)+t.ndirty, 0
	if n == 0 {
		return
	}
	// The dirty windows are the front of the list; the count, not the
	// first clean window, ends the walks, so a window flagged elsewhere
	// would cost a longer walk, never a lost write.
	for i, seen := t.head, 0; i != 0 && seen < t.ndirty; i = t.at(i).next {
		if t.at(i).flags&fDirty != 0 {
			size += len(t.names[t.at(i).key.jail]) + 18 + 8*len(t.times(i))
			seen++
		}
	}
	for k := range t.del {
		size += len(t.names[k.jail]) + 18
	}
	// The jails' ranks in name order make the sort's first comparison.
	ids := make([]uint16, len(t.names))
	for i := range ids {
		ids[i] = uint16(i)
	}
	slices.SortFunc(ids, func(a, b uint16) int { return strings.Compare(t.names[a], t.names[b]) })
	rank := make([]uint16, len(t.names))
	for r, id := range ids {
		rank[id] = uint16(r)
	}
	b.buf = make([]byte, 0, size)
	b.ents = make([]winEnt, 0, n)
	add := func(k tkey, ts []int64) {
		k0 := uint32(len(b.buf))
		b.buf = t.appendDBKey(b.buf, k)
		k1 := uint32(len(b.buf))
		for _, x := range ts {
			b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(x))
		}
		b.ents = append(b.ents, winEnt{
			hi: binary.BigEndian.Uint64(k.addr[:8]), rank: rank[k.jail],
			k0: k0, k1: k1, v1: uint32(len(b.buf)),
		})
	}
	for i, seen := t.head, 0; i != 0 && seen < t.ndirty; i = t.at(i).next {
		if w := t.at(i); w.flags&fDirty != 0 {
			add(w.key, t.times(i))
			w.flags = w.flags&^fDirty | fOnDisk
			seen++
		}
	}
	t.ndirty = 0
	for k := range t.del {
		add(k, nil)
	}
	clear(t.del)
	if n > 1024 {
		t.del = make(map[tkey]struct{}) // do not keep a flood's worth of map
	}
}

// restore marks again what a failed checkpoint of b did not write: a key
// whose window is held is dirty again (and moved to the front, where the
// dirty windows are), any other key is deleted.
func (t *tracker) restore(b *winBatch) {
	for _, e := range b.ents {
		k, ok := t.parseDBKey(b.buf[e.k0:e.k1])
		if !ok {
			continue
		}
		if i, _ := t.find(&k); i != 0 {
			if t.head != i {
				t.unlink(i)
				t.pushFront(i)
			}
			t.markDirty(i)
		} else {
			t.del[k] = struct{}{}
		}
	}
}

// parseDBKey decodes a key made by appendDBKey, interning its jail.
func (t *tracker) parseDBKey(b []byte) (tkey, bool) {
	k, ok := decodeDBKey(b)
	if !ok {
		return tkey{}, false
	}
	return t.tk(k), true
}

func (t *tracker) pushFront(i uint32) {
	w := t.at(i)
	w.prev = 0
	w.next = t.head
	if t.head != 0 {
		t.at(t.head).prev = i
	}
	t.head = i
	if t.tail == 0 {
		t.tail = i
	}
}

func (t *tracker) unlink(i uint32) {
	w := t.at(i)
	if w.prev != 0 {
		t.at(w.prev).next = w.next
	} else {
		t.head = w.next
	}
	if w.next != 0 {
		t.at(w.next).prev = w.prev
	} else {
		t.tail = w.prev
	}
	w.prev, w.next = 0, 0
}
