// Package jailconfig is one jail's settings as moat's configuration gives
// them (thresholds, windows, ban times and their increase, ignore lists,
// ports): plain data, so that the configuration parser can build and check
// them without pulling in the jail engine and its stores. It must not import
// the engine, a store or a firewall backend.
package jailconfig

import (
	"net/netip"
	"time"

	"github.com/moatproj/moat/firewall"
)

// Config is one jail's effective settings.
type Config struct {
	Name     string
	MaxRetry int
	FindTime time.Duration
	// BanTime is the base ban duration; negative means no end.
	BanTime   time.Duration
	Increment Increment
	// IgnoreIP lists addresses and prefixes never banned by this jail.
	IgnoreIP []netip.Prefix
	// IgnoreSelf keeps the host's own addresses from being banned (default true).
	IgnoreSelf bool
	// IPv6Prefix is the prefix length IPv6 addresses are banned by (128: the
	// single address; 64: the /64 it sits in).
	IPv6Prefix int
	// Ports are the host ports the firewall's drop rule covers (all when empty).
	Ports []firewall.PortRange
}

// Increment is fail2ban's bantime.increment for repeat offenders.
type Increment struct {
	Enabled bool
	// Factor multiplies the base ban time (default 1).
	Factor float64
	// MaxTime caps the result (0: no cap).
	MaxTime time.Duration
	// Multipliers, when set, replace the default doubling: the n-th repeat
	// ban lasts BanTime*Factor*Multipliers[min(n, len-1)].
	Multipliers []float64
	// RndTime adds a random duration up to this much (0: none).
	RndTime time.Duration
}
