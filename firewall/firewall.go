// Package firewall holds the contract between moat's jails and the kernel:
// the Ban and Jail types and the Backend interface. Implementations live in
// sub-packages named after what they talk to (nftables, none).
// It must not know jails' thresholds or windows.
package firewall

import (
	"cmp"
	"context"
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

// Backend enforces bans. Implementations are safe for use by one goroutine
// at a time; the jail engine serialises its calls.
type Backend interface {
	// Name is "nftables" or "none".
	Name() string
	// Sync makes the kernel hold exactly these jails and these bans, each
	// element timing out at its Expires (remaining time computed from now).
	// Bans already expired at now are left out.
	Sync(ctx context.Context, jails []Jail, bans []Ban, now time.Time) error
	// Add adds bans (in one transaction) to the sets of jails given to the last Sync.
	Add(ctx context.Context, bans []Ban, now time.Time) error
	// Delete removes bans; a ban already gone (expired) is not an error.
	Delete(ctx context.Context, bans []Ban) error
	// Intact reports whether the table, chains, rules and sets made by the
	// last Sync are still in place (cheap; called every second or so). When
	// it returns false the caller calls Sync again with the store's bans.
	Intact(ctx context.Context) (bool, error)
	// List reads the bans back from the kernel.
	List(ctx context.Context) ([]Ban, error)
	// Close releases the connection; the table stays in the kernel.
	Close() error
}
