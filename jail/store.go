package jail

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The state database holds, in one bbolt file (<StateDir>/moat.db):
//
//	bans       key → JSON Ban                        (active bans)
//	counts     key → count, last ban                 (escalation; kept after unban)
//	windows    key → failure times                   (checkpointed windows)
//	positions  path → (inode, offset, sum)…          (newest inode first)
//	cursors    key → 1, cursor                       (journal streams)
//
// A key is the jail name, a 0 byte, the 16-byte address (IPv4 mapped) and
// the prefix length counted in 128 bits (dbKey); numbers are big-endian.
//
// A stream read by cursor (sources.Position.Cursor, the systemd journal)
// is kept in cursors, never in positions: a database written before cursors
// existed opens unchanged (the bucket is created empty), and a moat from
// before them ignores the bucket rather than taking a cursor for a damaged
// file position. The value is a format byte (cursorV1) and the cursor's
// bytes, so that a later format can be told apart. A key is in at most one
// of the two buckets.
var (
	bktBans      = []byte("bans")
	bktCounts    = []byte("counts")
	bktWindows   = []byte("windows")
	bktPositions = []byte("positions")
	bktCursors   = []byte("cursors")
)

// cursorV1 is the first byte of a cursors value: the cursor follows.
const cursorV1 = 1

// store is the durable half of the engine's state. Every write is one
// bbolt transaction, fsynced before Update returns.
type store struct {
	db *bolt.DB
}

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open state db: %w", err)
	}
	path := filepath.Join(dir, "moat.db")
	// A large initial map (address space only: pages are mapped as they
	// are read) keeps bbolt from remapping while the file grows under a
	// flood, which costs a copy of every node the transaction touched.
	// Elsewhere than Linux the file might be grown to the map's size.
	opts := &bolt.Options{Timeout: 2 * time.Second}
	if runtime.GOOS == "linux" && strconv.IntSize == 64 {
		opts.InitialMmapSize = 1 << 30
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state db %s: locked by another process", path)
		}
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktBans, bktCounts, bktWindows, bktPositions, bktCursors} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state db %s: create buckets: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// countRec is a prefix's ban history in a jail.
type countRec struct {
	n    int
	last int64 // Unix nanoseconds of the last ban
}

// inodePos is how far one inode of a path was read; or, for a stream read
// by cursor, the only entry of its key, with cursor set and the rest 0.
type inodePos struct {
	inode  uint64
	offset int64
	sum    uint32 // sources.Position.Sum: tells a reused inode from the file read
	cursor string // sources.Position.Cursor
}

// posRecLen is the size of one encoded inodePos: inode, offset, sum.
const posRecLen = 20

// checkpoint is one transaction's worth of changes: the bans made or
// lifted, the counts of bans made, and the dirty windows and positions as of
// one instant (taken under the engine's mutex, so they are consistent).
type checkpoint struct {
	putBans   []Ban
	delBans   []winKey
	counts    map[winKey]countRec
	windows   winBatch
	positions map[string][]inodePos
}

// winBatch is a checkpoint's windows, encoded: one buffer holds every key
// and value, so a flood of a million dirty windows costs two allocations
// here, not two per window.
type winBatch struct {
	buf  []byte
	ents []winEnt
}

// winEnt is one window of a winBatch: key buf[k0:k1], value buf[k1:v1]
// (big-endian Unix nanoseconds); an empty value deletes the key. rank (the
// jail's place in name order) and hi (the address's first 8 bytes) decide
// most comparisons of the sort without touching buf.
type winEnt struct {
	hi         uint64
	k0, k1, v1 uint32
	rank       uint16
}

// sort orders the entries by key: bbolt inserts in key order append to
// its nodes, where random order moves half a node per insert.
func (b *winBatch) sort() {
	buf := b.buf
	slices.SortFunc(b.ents, func(x, y winEnt) int {
		if x.rank != y.rank {
			return cmp.Compare(x.rank, y.rank)
		}
		if x.hi != y.hi {
			return cmp.Compare(x.hi, y.hi)
		}
		return bytes.Compare(buf[x.k0:x.k1], buf[y.k0:y.k1])
	})
}

func (c *checkpoint) empty() bool {
	return len(c.putBans) == 0 && len(c.delBans) == 0 && len(c.counts) == 0 &&
		len(c.windows.ents) == 0 && len(c.positions) == 0
}

// dbKey is the state db key of k: jail name, 0, the 16-byte address (IPv4
// mapped) and the prefix length counted in 128 bits (an IPv4 /32 is 128).
// The windows bucket uses the same form (tracker.appendDBKey).
func dbKey(k winKey) []byte {
	b := make([]byte, 0, len(k.jail)+18)
	b = append(b, k.jail...)
	b = append(b, 0)
	a := k.prefix.Addr().As16()
	b = append(b, a[:]...)
	return append(b, prefixBits(k.prefix))
}

// decodeDBKey is the inverse of dbKey.
func decodeDBKey(b []byte) (winKey, bool) {
	if len(b) < 18 || b[len(b)-18] != 0 {
		return winKey{}, false
	}
	j := len(b) - 18
	tk := tkey{addr: [16]byte(b[j+1 : j+17]), bits: b[j+17]}
	if tk.bits > 128 {
		return winKey{}, false
	}
	p := tk.prefix()
	if p != p.Masked() {
		return winKey{}, false
	}
	return winKey{jail: string(b[:j]), prefix: p}, true
}

func parseDBKey(b []byte) (winKey, error) {
	k, ok := decodeDBKey(b)
	if !ok {
		return winKey{}, fmt.Errorf("bad key %q", b)
	}
	return k, nil
}

// commit writes c in one fsynced transaction.
func (s *store) commit(c *checkpoint) error {
	if c.empty() {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		bans, counts := tx.Bucket(bktBans), tx.Bucket(bktCounts)
		wins, poss := tx.Bucket(bktWindows), tx.Bucket(bktPositions)
		curs := tx.Bucket(bktCursors)
		for _, k := range c.delBans {
			if err := bans.Delete(dbKey(k)); err != nil {
				return err
			}
		}
		for _, b := range c.putBans {
			v, err := json.Marshal(b)
			if err != nil {
				return err
			}
			if err := bans.Put(dbKey(winKey{b.Jail, b.Prefix}), v); err != nil {
				return err
			}
		}
		for k, r := range c.counts {
			var v [16]byte
			binary.BigEndian.PutUint64(v[:8], uint64(r.n))
			binary.BigEndian.PutUint64(v[8:], uint64(r.last))
			if err := counts.Put(dbKey(k), v[:]); err != nil {
				return err
			}
		}
		// Keys arrive in order: pack the pages fuller than bbolt's half
		// (most of a flood's keys are new).
		wins.FillPercent = 0.9
		c.windows.sort()
		buf := c.windows.buf
		for _, e := range c.windows.ents {
			k := buf[e.k0:e.k1:e.k1]
			if e.v1 == e.k1 {
				if err := wins.Delete(k); err != nil {
					return err
				}
				continue
			}
			// bbolt keeps the value until the commit: buf outlives it.
			if err := wins.Put(k, buf[e.k1:e.v1:e.v1]); err != nil {
				return err
			}
		}
		for path, list := range c.positions {
			if len(list) == 0 || list[0].cursor != "" {
				if err := poss.Delete([]byte(path)); err != nil {
					return err
				}
				if len(list) == 0 {
					if err := curs.Delete([]byte(path)); err != nil {
						return err
					}
					continue
				}
				v := append([]byte{cursorV1}, list[0].cursor...)
				if err := curs.Put([]byte(path), v); err != nil {
					return err
				}
				continue
			}
			if err := curs.Delete([]byte(path)); err != nil {
				return err
			}
			v := make([]byte, posRecLen*len(list))
			for i, ip := range list {
				binary.BigEndian.PutUint64(v[posRecLen*i:], ip.inode)
				binary.BigEndian.PutUint64(v[posRecLen*i+8:], uint64(ip.offset))
				binary.BigEndian.PutUint32(v[posRecLen*i+16:], ip.sum)
			}
			if err := poss.Put([]byte(path), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write state db: %w", err)
	}
	return nil
}

// loaded is everything read back on open.
type loaded struct {
	bans      []Ban
	counts    map[winKey]countRec
	windows   []savedWin
	positions map[string][]inodePos
}

// savedWin is one window read back.
type savedWin struct {
	k     winKey
	times []int64
}

// load reads the whole state. Entries that cannot be decoded are skipped
// and reported through bad, so one damaged record does not keep moat down.
func (s *store) load(bad func(bucket string, key []byte, err error)) (*loaded, error) {
	l := &loaded{
		counts:    make(map[winKey]countRec),
		positions: make(map[string][]inodePos),
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bktBans).ForEach(func(k, v []byte) error {
			var b Ban
			if err := json.Unmarshal(v, &b); err != nil || !b.Prefix.IsValid() {
				bad("bans", k, fmt.Errorf("decode ban: %v", err))
				return nil
			}
			l.bans = append(l.bans, b)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bktCounts).ForEach(func(k, v []byte) error {
			key, err := parseDBKey(k)
			if err != nil || len(v) != 16 {
				bad("counts", k, fmt.Errorf("decode count: %v", err))
				return nil
			}
			l.counts[key] = countRec{
				n:    int(binary.BigEndian.Uint64(v[:8])),
				last: int64(binary.BigEndian.Uint64(v[8:])),
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bktWindows).ForEach(func(k, v []byte) error {
			key, err := parseDBKey(k)
			if err != nil || len(v)%8 != 0 {
				bad("windows", k, fmt.Errorf("decode window: %v", err))
				return nil
			}
			times := make([]int64, len(v)/8)
			for i := range times {
				times[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
			}
			l.windows = append(l.windows, savedWin{key, times})
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bktPositions).ForEach(func(k, v []byte) error {
			if len(v)%posRecLen != 0 {
				bad("positions", k, errors.New("decode position: bad length"))
				return nil
			}
			list := make([]inodePos, len(v)/posRecLen)
			for i := range list {
				list[i] = inodePos{
					inode:  binary.BigEndian.Uint64(v[posRecLen*i:]),
					offset: int64(binary.BigEndian.Uint64(v[posRecLen*i+8:])),
					sum:    binary.BigEndian.Uint32(v[posRecLen*i+16:]),
				}
			}
			l.positions[string(k)] = list
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bktCursors).ForEach(func(k, v []byte) error {
			if len(v) < 2 || v[0] != cursorV1 {
				bad("cursors", k, errors.New("decode cursor: unknown format"))
				return nil
			}
			l.positions[string(k)] = []inodePos{{cursor: string(v[1:])}}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read state db: %w", err)
	}
	return l, nil
}
