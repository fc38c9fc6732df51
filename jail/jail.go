// Package jail turns failures into bans: per-jail windows and thresholds,
// escalation for repeat offenders, ignore lists, the active-ban state in
// go-memdb made durable in the state directory, and the control API served
// to the CLI (sub-package control).
// It must not know nftables or HTTP routing: it talks to the kernel through
// the small Firewall interface it declares.
package jail

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatproj/moat/jail/jailconfig"
)

// Config and Increment are jailconfig's: plain data the configuration
// parser builds without importing the engine.
type (
	Config    = jailconfig.Config
	Increment = jailconfig.Increment
)

// Failure is one failure found in a log line (or reported by the proxy).
// Time is the time written in the line, not the time it was read.
type Failure struct {
	Jail string
	Addr netip.Addr
	Time time.Time
}

// TooOld is a failure Engine.Failures dropped because its time was more
// than its jail's FindTime before now.
type TooOld struct {
	Failure
	FindTime time.Duration
}

// Ban is one active ban as the engine and the control API report it.
type Ban struct {
	Jail     string       `json:"jail"`
	Prefix   netip.Prefix `json:"ip"`
	BannedAt time.Time    `json:"banned_at"`
	// Expires is the zero time for a ban without end.
	Expires time.Time `json:"expires_at"`
	// Count is how many times this prefix has been banned in this jail,
	// this ban included.
	Count int `json:"count"`
	// Failures is the number of failures that led to the ban (0 for a
	// manual ban).
	Failures int `json:"failures"`
	// Previous is set only on what a ban returns (and notifies) when the
	// prefix was already banned in the jail: that ban as it stood before.
	// The ban kept the later of the two expiries. It is never stored nor
	// listed by Bans.
	Previous *Ban `json:"-"`
}

// Status is one jail's counters, as `moat status` shows them.
type Status struct {
	Jail            string   `json:"jail"`
	Files           []string `json:"files"`
	CurrentlyFailed int      `json:"currently_failed"`
	TotalFailed     int      `json:"total_failed"`
	// TooOld counts failures dropped because their time was more than
	// findtime before the moment they were read: they can never lead to a
	// ban (a log read from its start, a clock gone wrong).
	TooOld          int            `json:"too_old"`
	CurrentlyBanned int            `json:"currently_banned"`
	TotalBanned     int            `json:"total_banned"`
	Banned          []netip.Prefix `json:"banned"`
}

// ErrUnknownJail is returned (wrapped) for a jail name that is not configured.
var ErrUnknownJail = errors.New("unknown jail")

// ErrNotBanned is returned (wrapped) by an unban of a prefix that is not banned.
var ErrNotBanned = errors.New("not banned")

// RefusedError is returned when a ban is refused: a loopback, unspecified,
// link-local, multicast or broadcast address, one of the host's own
// addresses, an ignoreip entry, a prefix holding any of these, or a prefix
// too wide. Reason says which.
type RefusedError struct {
	Prefix netip.Prefix
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to ban %s: %s", e.Prefix, e.Reason)
}
