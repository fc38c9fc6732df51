// Package firewall holds the contract between moat's jails and the kernel:
// the Ban and Jail types and the Backend interface. Implementations live in
// sub-packages named after what they talk to (nftables, none).
// It must not know jails' thresholds or windows.
package firewall

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"
)

// Jail is what the firewall needs to know of a jail: its name (one set per
// family is made for it) and the host ports its drop rule covers (all ports
// when empty).
type Jail struct {
	Name  string
	Ports []PortRange
}

// PortRange is an inclusive range of TCP/UDP ports; a single port has
// First == Last.
type PortRange struct {
	First, Last uint16
}

// MergePorts sorts ranges (in place) and merges those that overlap or
// touch, as an interval set needs them (it refuses overlaps).
func MergePorts(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b PortRange) int { return cmp.Compare(a.First, b.First) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.First) <= int(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Ban is one banned prefix in one jail. A zero Expires means no end.
type Ban struct {
	Jail    string
	Prefix  netip.Prefix
	Expires time.Time
}

// ErrNotSynced is wrapped by Check before the first successful Sync.
var ErrNotSynced = errors.New("firewall not synced yet")

// Repair kinds.
const (
	RepairLayout  = "layout"  // the table, chain, rules or sets were missing or altered, and rebuilt
	RepairMissing = "missing" // moat bans it, the kernel did not drop it
	RepairStray   = "stray"   // the kernel dropped it, no ban accounts for it
	RepairTimeout = "timeout" // both, but the kernel's element timed out at another time
)

// Repair is one difference between the kernel and moat's bans that a check
// found and repaired.
type Repair struct {
	Kind string
	Jail string
	// First and Last bound the addresses concerned (invalid for a layout
	// repair).
	First, Last netip.Addr
	// Detail says what the kernel held and what it should have, for the log.
	Detail string
}

// CheckReport is what one Check found.
type CheckReport struct {
	// Full says the elements were read back from the kernel; false when
	// the check could tell that nothing changed since the last full one.
	Full bool
	// Deferred says the check could not tell and put the comparison off
	// (full comparisons are spaced): it says nothing of the kernel.
	Deferred bool
	// Repairs lists the repairs made, at most MaxListedRepairs of them;
	// Counts counts all of them by kind.
	Repairs []Repair
	Counts  map[string]int
}

// MaxListedRepairs bounds CheckReport.Repairs (a flushed set of 100,000
// bans is 100,000 repairs: they are counted, not all listed).
const MaxListedRepairs = 20

// Add records a repair: counted by kind, listed while fewer than
// MaxListedRepairs are.
func (r *CheckReport) Add(rp Repair) {
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	r.Counts[rp.Kind]++
	if len(r.Repairs) < MaxListedRepairs {
		r.Repairs = append(r.Repairs, rp)
	}
}

// Matched reports whether the kernel held exactly what it should.
func (r CheckReport) Matched() bool { return len(r.Counts) == 0 }

// Backend enforces bans. Implementations are safe for use by one goroutine
// at a time; the jail engine serialises its calls.
type Backend interface {
	// Name is "nftables" or "none".
	Name() string
	// Sync makes the kernel hold exactly these jails and these bans, each
	// element timing out at its Expires (remaining time computed from now).
	// Bans already expired at now are left out.
	Sync(ctx context.Context, jails []Jail, bans []Ban, now time.Time) error
	// Add adds bans (in one transaction) to the sets of jails given to the
	// last Sync. A ban of a prefix the jail holds already replaces its
	// expiry in place: it is never lifted in between.
	Add(ctx context.Context, bans []Ban, now time.Time) error
	// Delete removes bans; a ban already gone (expired) is not an error.
	Delete(ctx context.Context, bans []Ban) error
	// Check compares the kernel with the bans of the last Sync, Add and
	// Delete calls (the layout and every element) and repairs what differs,
	// in one transaction per run of addresses, so that no ban lapses while
	// it is repaired. It is called every few seconds at most: an
	// implementation makes the common case, nothing changed, cheap. A
	// Backend never synced reports an error wrapping ErrNotSynced.
	Check(ctx context.Context, now time.Time) (CheckReport, error)
	// List reads the bans back from the kernel.
	List(ctx context.Context) ([]Ban, error)
	// Close releases the connection; the table stays in the kernel.
	Close() error
}
