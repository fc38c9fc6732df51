package jail

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The state database holds, in one bbolt file (<StateDir>/moat.db):
//
//	bans       jail \x00 prefix → JSON Ban          (active bans)
//	counts     jail \x00 prefix → count, last ban   (escalation; kept after unban)
//	windows    jail \x00 prefix → failure times     (checkpointed windows)
//	positions  path             → (inode, offset)…  (newest inode first)
var (
	bktBans      = []byte("bans")
	bktCounts    = []byte("counts")
	bktWindows   = []byte("windows")
	bktPositions = []byte("positions")
)

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
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state db %s: locked by another process", path)
		}
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktBans, bktCounts, bktWindows, bktPositions} {
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

// inodePos is how far one inode of a path was read.
type inodePos struct {
	inode  uint64
	offset int64
	sum    uint32 // follow.Position.Sum: tells a reused inode from the file read
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
	windows   map[winKey][]int64 // nil: delete
	positions map[string][]inodePos
}

func (c *checkpoint) empty() bool {
	return len(c.putBans) == 0 && len(c.delBans) == 0 && len(c.counts) == 0 &&
		len(c.windows) == 0 && len(c.positions) == 0
}

func dbKey(k winKey) []byte {
	return []byte(k.jail + "\x00" + k.prefix.String())
}

func parseDBKey(b []byte) (winKey, error) {
	jail, p, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return winKey{}, fmt.Errorf("bad key %q", b)
	}
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		return winKey{}, fmt.Errorf("bad key %q: %w", b, err)
	}
	return winKey{jail: jail, prefix: pfx}, nil
}

// commit writes c in one fsynced transaction.
func (s *store) commit(c *checkpoint) error {
	if c.empty() {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		bans, counts := tx.Bucket(bktBans), tx.Bucket(bktCounts)
		wins, poss := tx.Bucket(bktWindows), tx.Bucket(bktPositions)
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
		for k, times := range c.windows {
			if times == nil {
				if err := wins.Delete(dbKey(k)); err != nil {
					return err
				}
				continue
			}
			v := make([]byte, 8*len(times))
			for i, t := range times {
				binary.BigEndian.PutUint64(v[8*i:], uint64(t))
			}
			if err := wins.Put(dbKey(k), v); err != nil {
				return err
			}
		}
		for path, list := range c.positions {
			if len(list) == 0 {
				if err := poss.Delete([]byte(path)); err != nil {
					return err
				}
				continue
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
	windows   map[winKey][]int64
	positions map[string][]inodePos
}

// load reads the whole state. Entries that cannot be decoded are skipped
// and reported through bad, so one damaged record does not keep moat down.
func (s *store) load(bad func(bucket string, key []byte, err error)) (*loaded, error) {
	l := &loaded{
		counts:    make(map[winKey]countRec),
		windows:   make(map[winKey][]int64),
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
			l.windows[key] = times
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bktPositions).ForEach(func(k, v []byte) error {
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
	})
	if err != nil {
		return nil, fmt.Errorf("read state db: %w", err)
	}
	return l, nil
}
