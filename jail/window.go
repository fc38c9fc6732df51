package jail

import (
	"encoding/binary"
	"net/netip"
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
// allocation: enough for maxretry up to inlTimes+1.
const inlTimes = 5

// window holds the failure times (Unix nanoseconds, log time) of one key
// that lie within the jail's find time of the newest one. It is a node of
// the tracker's recency list. It is 96 bytes: key and flags, newest, the
// inline times, the overflow pointer and the list links.
type window struct {
	key tkey
	// n is the number of times in inl (when more is nil).
	n uint8
	// onDisk says the state db may hold a value for key (it was
	// checkpointed, or loaded): a removed window must then be deleted at
	// the next checkpoint.
	onDisk bool
	// dirty says the window is in the tracker's dirty list and changed
	// since the last checkpoint.
	dirty  bool
	newest int64
	inl    [inlTimes]int64
	// more holds every time instead of inl once there are more than
	// inlTimes.
	more *[]int64

	prev, next *window // prev: more recent, next: less recent
}

// times returns the window's failure times; the slice aliases the window.
func (w *window) times() []int64 {
	if w.more != nil {
		return *w.more
	}
	return w.inl[:w.n]
}

// setTimes stores ts (which may alias w's own storage).
func (w *window) setTimes(ts []int64) {
	if len(ts) <= inlTimes {
		n := copy(w.inl[:], ts)
		w.n = uint8(n)
		w.more = nil
		return
	}
	if w.more == nil || &(*w.more)[0] != &ts[0] {
		c := append([]int64(nil), ts...)
		w.more = &c
		return
	}
	*w.more = ts
}

// appendTime adds one time.
func (w *window) appendTime(at int64) {
	if w.more == nil && int(w.n) < inlTimes {
		w.inl[w.n] = at
		w.n++
		return
	}
	if w.more == nil {
		c := make([]int64, inlTimes, 2*inlTimes)
		copy(c, w.inl[:])
		w.more = &c
	}
	*w.more = append(*w.more, at)
}

// tracker holds the failure windows of every jail in a plain map bounded by
// max entries. Entries sit in a list ordered by the arrival of their last
// failure (most recent first).
//
// When the map is full, a failure for a new key evicts the entry that has
// gone longest without a new failure: the tail of the list, whose newest
// failure arrived before every other entry's. Eviction is O(1): no scan,
// and the evicted node is reused for the new key.
//
// The tracker also keeps what the next checkpoint must write: the windows
// changed since the last one (a flag and a list of nodes, so the dirty set
// holds no second copy of the keys) and the keys of removed windows the
// state db may hold.
//
// A tracker is not safe for concurrent use; the engine guards it with its
// mutex.
type tracker struct {
	max  int
	m    map[tkey]*window
	head *window
	tail *window

	// names and ids intern jail names; an id is never reused.
	names   []string
	ids     map[string]uint16
	perJail []int // by jail id

	// dirty lists the nodes whose dirty flag is set (and nodes removed
	// since they were listed, whose flag was cleared).
	dirty []*window
	// del holds the keys of removed windows the state db may hold.
	del map[tkey]struct{}

	// onEvict, when set, is called for each entry evicted to make room.
	onEvict func(k winKey)
}

func newTracker(max int) *tracker {
	return &tracker{max: max, m: make(map[tkey]*window), ids: make(map[string]uint16), del: make(map[tkey]struct{})}
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

// markDirty lists w for the next checkpoint.
func (t *tracker) markDirty(w *window) {
	if !w.dirty {
		w.dirty = true
		t.dirty = append(t.dirty, w)
	}
}

// forget records that w's key left memory: the next checkpoint deletes it
// if the state db may hold it.
func (t *tracker) forget(w *window) {
	if w.onDisk {
		t.del[w.key] = struct{}{}
	}
	w.dirty = false
}

// add records a failure at (Unix nanoseconds, log time) for k, drops the
// times that are more than findtime older than the newest, and returns how
// many remain. Times may arrive out of order.
func (t *tracker) add(k winKey, at, findtime int64) int {
	tk := t.tk(k)
	w := t.m[tk]
	if w == nil {
		if len(t.m) >= t.max && t.tail != nil {
			w = t.tail
			t.unlink(w)
			delete(t.m, w.key)
			t.perJail[w.key.jail]--
			if t.onEvict != nil {
				t.onEvict(t.winKey(w.key))
			}
			dirty := w.dirty
			t.forget(w)
			// The node stays listed in dirty if it was: it is marked
			// again just below, so it is not listed twice.
			*w = window{dirty: dirty}
		} else {
			w = &window{}
		}
		w.key = tk
		// A delete of this key still pending: the put below replaces it.
		if _, ok := t.del[tk]; ok {
			delete(t.del, tk)
			w.onDisk = true
		}
		t.m[tk] = w
		t.perJail[tk.jail]++
		t.pushFront(w)
	} else if t.head != w {
		t.unlink(w)
		t.pushFront(w)
	}
	// Listed already when dirty (an evicted node reused, or a change
	// since the last checkpoint).
	t.markDirty(w)
	w.appendTime(at)
	if at > w.newest || len(w.times()) == 1 {
		w.newest = at
	}
	cut := w.newest - findtime
	ts := w.times()
	kept := ts[:0]
	for _, x := range ts {
		if x >= cut {
			kept = append(kept, x)
		}
	}
	w.setTimes(kept)
	return len(kept)
}

// load puts a saved window back (on open), unless the tracker is full;
// then the saved window is deleted at the next checkpoint.
func (t *tracker) load(k winKey, times []int64) bool {
	if len(times) == 0 {
		return false
	}
	tk := t.tk(k)
	if len(t.m) >= t.max {
		if t.m[tk] == nil {
			t.del[tk] = struct{}{}
		}
		return false
	}
	if old := t.m[tk]; old != nil {
		t.removeNode(old)
	}
	delete(t.del, tk)
	w := &window{key: tk, onDisk: true}
	w.setTimes(times)
	for _, x := range times {
		if x > w.newest {
			w.newest = x
		}
	}
	t.m[tk] = w
	t.perJail[tk.jail]++
	t.pushFront(w)
	return true
}

// get returns the window of k, or nil.
func (t *tracker) get(k winKey) *window {
	tk, ok := t.lookupKey(k)
	if !ok {
		return nil
	}
	return t.m[tk]
}

// remove drops k's window (the next checkpoint deletes it from the state
// db if needed).
func (t *tracker) remove(k winKey) {
	if w := t.get(k); w != nil {
		t.removeNode(w)
	}
}

func (t *tracker) removeNode(w *window) {
	t.unlink(w)
	delete(t.m, w.key)
	t.perJail[w.key.jail]--
	t.forget(w)
}

// expireOld drops entries from the least recent end while their newest
// failure is older than their jail's find time before now, stopping at the
// first fresh one (so the cost is proportional to what is dropped).
func (t *tracker) expireOld(now int64, findtime func(jail string) (int64, bool)) {
	for w := t.tail; w != nil; w = t.tail {
		ft, ok := findtime(t.names[w.key.jail])
		if ok && w.newest >= now-ft {
			return
		}
		t.removeNode(w)
	}
}

// removeJail drops every window of a jail (reload; a full scan is fine there).
func (t *tracker) removeJail(jail string) {
	id, ok := t.ids[jail]
	if !ok || t.perJail[id] == 0 {
		return
	}
	for k, w := range t.m {
		if k.jail == id {
			t.removeNode(w)
		}
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

func (t *tracker) len() int { return len(t.m) }

// pendingWrites is how many keys the next checkpoint writes or deletes.
func (t *tracker) pendingWrites() int {
	n := len(t.del)
	for _, w := range t.dirty {
		if w.dirty {
			n++
		}
	}
	return n
}

// snapshot moves the dirty windows and pending deletes into b (encoded
// state db keys and values) and clears them.
func (t *tracker) snapshot(b *winBatch) {
	n, size := len(t.del), 0
	for _, w := range t.dirty {
		if w.dirty {
			n++
			size += len(t.names[w.key.jail]) + 18 + 8*len(w.times())
		}
	}
	for k := range t.del {
		size += len(t.names[k.jail]) + 18
	}
	b.buf = make([]byte, 0, size)
	b.ents = make([]winEnt, 0, n)
	for _, w := range t.dirty {
		if !w.dirty {
			continue
		}
		k0 := len(b.buf)
		b.buf = t.appendDBKey(b.buf, w.key)
		k1 := len(b.buf)
		for _, x := range w.times() {
			b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(x))
		}
		b.ents = append(b.ents, winEnt{k0: uint32(k0), k1: uint32(k1), v1: uint32(len(b.buf))})
		w.dirty = false
		w.onDisk = true
	}
	for k := range t.del {
		k0 := len(b.buf)
		b.buf = t.appendDBKey(b.buf, k)
		k1 := uint32(len(b.buf))
		b.ents = append(b.ents, winEnt{k0: uint32(k0), k1: k1, v1: k1})
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	if cap(t.dirty) > 1024 {
		t.dirty = nil // do not keep a flood's worth of list
	}
	clear(t.del)
	if n > 1024 {
		t.del = make(map[tkey]struct{})
	}
}

// restore marks again what a failed checkpoint of b did not write: a key
// whose window is held is dirty again, any other key is deleted.
func (t *tracker) restore(b *winBatch) {
	for _, e := range b.ents {
		k, ok := t.parseDBKey(b.buf[e.k0:e.k1])
		if !ok {
			continue
		}
		if w := t.m[k]; w != nil {
			t.markDirty(w)
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

func (t *tracker) pushFront(w *window) {
	w.prev = nil
	w.next = t.head
	if t.head != nil {
		t.head.prev = w
	}
	t.head = w
	if t.tail == nil {
		t.tail = w
	}
}

func (t *tracker) unlink(w *window) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		t.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		t.tail = w.prev
	}
	w.prev, w.next = nil, nil
}
