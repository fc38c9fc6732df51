package jail

import "net/netip"

// winKey names one failure window: a jail and the prefix an address is
// banned by. It is comparable, so looking it up allocates nothing.
type winKey struct {
	jail   string
	prefix netip.Prefix
}

// window holds the failure times (Unix nanoseconds, log time) of one key
// that lie within the jail's find time of the newest one. It is a node of
// the tracker's recency list.
type window struct {
	key    winKey
	times  []int64
	newest int64
	// onDisk says the state db may hold a value for key (it was
	// checkpointed, or loaded, or a delete of it is still pending): a
	// removed window must then be deleted at the next checkpoint.
	onDisk bool

	prev, next *window // prev: more recent, next: less recent
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
// A tracker is not safe for concurrent use; the engine guards it with its
// mutex.
type tracker struct {
	max     int
	m       map[winKey]*window
	head    *window
	tail    *window
	perJail map[string]int

	// onEvict is called for each entry evicted to make room.
	onEvict func(k winKey, onDisk bool)
	// onDiskNow tells whether the state db may still hold k when a new
	// window for k is made.
	onDiskNow func(k winKey) bool
}

func newTracker(max int) *tracker {
	return &tracker{max: max, m: make(map[winKey]*window), perJail: make(map[string]int)}
}

// add records a failure at (Unix nanoseconds, log time) for k, drops the
// times that are more than findtime older than the newest, and returns how
// many remain. Times may arrive out of order.
func (t *tracker) add(k winKey, at, findtime int64) int {
	w := t.m[k]
	if w == nil {
		if len(t.m) >= t.max && t.tail != nil {
			w = t.tail
			t.unlink(w)
			delete(t.m, w.key)
			t.perJail[w.key.jail]--
			if t.onEvict != nil {
				t.onEvict(w.key, w.onDisk)
			}
			w.times = w.times[:0]
			w.newest = 0
		} else {
			w = &window{}
		}
		w.key = k
		w.onDisk = t.onDiskNow != nil && t.onDiskNow(k)
		t.m[k] = w
		t.perJail[k.jail]++
		t.pushFront(w)
	} else if t.head != w {
		t.unlink(w)
		t.pushFront(w)
	}
	w.times = append(w.times, at)
	if at > w.newest || len(w.times) == 1 {
		w.newest = at
	}
	cut := w.newest - findtime
	kept := w.times[:0]
	for _, x := range w.times {
		if x >= cut {
			kept = append(kept, x)
		}
	}
	w.times = kept
	return len(kept)
}

// load puts a saved window back (on open), unless the tracker is full.
func (t *tracker) load(k winKey, times []int64) bool {
	if len(t.m) >= t.max || len(times) == 0 {
		return false
	}
	if old := t.m[k]; old != nil {
		t.remove(k)
	}
	w := &window{key: k, times: times, onDisk: true}
	for _, x := range times {
		if x > w.newest {
			w.newest = x
		}
	}
	t.m[k] = w
	t.perJail[k.jail]++
	t.pushFront(w)
	return true
}

// get returns the window of k, or nil.
func (t *tracker) get(k winKey) *window {
	return t.m[k]
}

// remove drops k's window; it reports whether the state db may hold it.
func (t *tracker) remove(k winKey) (onDisk bool) {
	w := t.m[k]
	if w == nil {
		return false
	}
	t.unlink(w)
	delete(t.m, k)
	t.perJail[k.jail]--
	return w.onDisk
}

// expireOld drops entries from the least recent end while their newest
// failure is older than their jail's find time before now, stopping at the
// first fresh one (so the cost is proportional to what is dropped). It calls
// drop for each key dropped.
func (t *tracker) expireOld(now int64, findtime func(jail string) (int64, bool), drop func(k winKey, onDisk bool)) {
	for w := t.tail; w != nil; w = t.tail {
		ft, ok := findtime(w.key.jail)
		if ok && w.newest >= now-ft {
			return
		}
		drop(w.key, t.remove(w.key))
	}
}

// removeJail drops every window of a jail (reload; a full scan is fine there).
func (t *tracker) removeJail(jail string, drop func(k winKey, onDisk bool)) {
	for k := range t.m {
		if k.jail == jail {
			drop(k, t.remove(k))
		}
	}
	delete(t.perJail, jail)
}

func (t *tracker) len() int { return len(t.m) }

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
