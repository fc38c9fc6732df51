package jail

import (
	"math"
	"net/netip"
	"time"

	"github.com/moatproj/moat/internal/netaddr"
)

// maxBan bounds every computed ban duration, so that escalation can never
// overflow a time.Time.
const maxBan = 100 * 365 * 24 * time.Hour

// banDuration is the length of a ban in a jail for a prefix banned prev
// times before (fail2ban's bantime.increment). A negative result means no
// end. rnd returns a number in [0, 1).
//
// Without increment, or for a first ban, it is cfg.BanTime. Otherwise it is
// BanTime*Factor*m, where m is Multipliers[min(prev, len-1)] when
// multipliers are set and 2^min(prev, 20) when not; then a random duration
// up to RndTime is added, and the result is capped at MaxTime when MaxTime
// is positive.
func banDuration(cfg Config, prev int, rnd func() float64) time.Duration {
	if cfg.BanTime < 0 {
		return -1
	}
	inc := cfg.Increment
	if !inc.Enabled || prev <= 0 {
		return min(cfg.BanTime, maxBan)
	}
	f := inc.Factor
	if f <= 0 {
		f = 1
	}
	var m float64
	if len(inc.Multipliers) > 0 {
		m = inc.Multipliers[min(prev, len(inc.Multipliers)-1)]
	} else {
		m = math.Exp2(float64(min(prev, 20)))
	}
	x := float64(cfg.BanTime) * f * m
	if inc.RndTime > 0 && rnd != nil {
		x += rnd() * float64(inc.RndTime)
	}
	if inc.MaxTime > 0 && x > float64(inc.MaxTime) {
		x = float64(inc.MaxTime)
	}
	if x > float64(maxBan) || math.IsNaN(x) {
		return maxBan
	}
	if x < 0 {
		return 0
	}
	return time.Duration(x)
}

var (
	loop4 = netip.MustParsePrefix("127.0.0.0/8")
	loop6 = netip.MustParsePrefix("::1/128")
	mc4   = netip.MustParsePrefix("224.0.0.0/4")
	mc6   = netip.MustParsePrefix("ff00::/8")
	zero4 = netip.MustParsePrefix("0.0.0.0/32")
	zero6 = netip.MustParsePrefix("::/128")
)

// refusal says why a prefix must not be banned in a jail, or "" when it may
// be. A prefix that contains a refused address is refused too. It is pure:
// self is the host's own addresses (used when cfg.IgnoreSelf).
func refusal(cfg *Config, p netip.Prefix, self []netip.Addr) string {
	if !p.IsValid() {
		return "not a valid address or prefix"
	}
	if p.Addr().Is4() {
		if p.Bits() < 16 {
			return "prefix wider than /16"
		}
		if p.Overlaps(loop4) {
			return "loopback address"
		}
		if p.Overlaps(zero4) {
			return "unspecified address"
		}
		if p.Overlaps(mc4) {
			return "multicast address"
		}
	} else {
		if p.Bits() < 32 {
			return "prefix wider than /32"
		}
		if p.Overlaps(loop6) {
			return "loopback address"
		}
		if p.Overlaps(zero6) {
			return "unspecified address"
		}
		if p.Overlaps(mc6) {
			return "multicast address"
		}
	}
	if cfg.IgnoreSelf {
		for _, a := range self {
			if p.Contains(a) {
				return "one of this host's own addresses (" + a.String() + ")"
			}
		}
	}
	if netaddr.Overlaps(p, cfg.IgnoreIP) {
		return "listed in ignoreip of jail " + cfg.Name
	}
	return ""
}

// cleanAddrs unmaps and de-zones the host's addresses so Contains works.
func cleanAddrs(in []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if a.IsValid() {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	return out
}
