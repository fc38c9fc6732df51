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

// Reasons refusal gives for the address classes no jail ever bans.
const (
	whyLoopback    = "loopback address"
	whyUnspecified = "unspecified address"
	whyLinkLocal   = "link-local address"
	whyMulticast   = "multicast address"
	whyBroadcast   = "limited broadcast address (255.255.255.255)"
)

// reservedNet is an address class no jail ever bans.
type reservedNet struct {
	p   netip.Prefix
	why string
}

// reserved4 and reserved6 are the classes refusal checks, by family.
// reserved6 also holds the IPv4-mapped form of each IPv4 class, so that an
// IPv6 prefix wider than /96 that takes in ::ffff:127.0.0.1 is refused as
// loopback.
var reserved4, reserved6 = func() ([]reservedNet, []reservedNet) {
	r4 := []reservedNet{
		{netip.MustParsePrefix("0.0.0.0/32"), whyUnspecified},
		{netip.MustParsePrefix("127.0.0.0/8"), whyLoopback},
		{netip.MustParsePrefix("169.254.0.0/16"), whyLinkLocal},
		{netip.MustParsePrefix("224.0.0.0/4"), whyMulticast},
		{netip.MustParsePrefix("255.255.255.255/32"), whyBroadcast},
	}
	r6 := []reservedNet{
		{netip.MustParsePrefix("::/128"), whyUnspecified},
		{netip.MustParsePrefix("::1/128"), whyLoopback},
		{netip.MustParsePrefix("fe80::/10"), whyLinkLocal},
		{netip.MustParsePrefix("ff00::/8"), whyMulticast},
	}
	for _, r := range r4 {
		mapped := netip.PrefixFrom(netip.AddrFrom16(r.p.Addr().As16()), r.p.Bits()+96)
		r6 = append(r6, reservedNet{mapped, r.why})
	}
	return r4, r6
}()

// refusal says why a prefix must not be banned in a jail, or "" when it may
// be. A prefix that contains a refused address is refused too; an
// IPv4-mapped IPv6 prefix is judged as the IPv4 prefix it maps. It is
// pure: self is the host's own addresses (used when cfg.IgnoreSelf). It
// does not allocate unless it refuses.
func refusal(cfg *Config, p netip.Prefix, self []netip.Addr) string {
	if !p.IsValid() {
		return "not a valid address or prefix"
	}
	p = normPrefix(p)
	if p.Addr().Is4() {
		if p.Bits() < 16 {
			return "prefix wider than /16"
		}
	} else if p.Bits() < 32 {
		return "prefix wider than /32"
	}
	if why := reservedWhy(p); why != "" {
		return why
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

// reservedWhy says which class of addresses no jail bans p overlaps
// (loopback, unspecified, link-local, multicast, broadcast), or "". p is
// unmapped already (normPrefix). It does not allocate.
func reservedWhy(p netip.Prefix) string {
	reserved := reserved6
	if p.Addr().Is4() {
		reserved = reserved4
	}
	for _, r := range reserved {
		if p.Overlaps(r.p) {
			return r.why
		}
	}
	return ""
}

// warnsOnFailure says whether a failure refused for why is logged: an
// address of a class that never sends a real login attempt (link-local,
// multicast, broadcast, unspecified) points at a filter or a log that
// yields nonsense. Loopback, the host's own addresses and ignoreip are
// ignored silently, as always.
func warnsOnFailure(why string) bool {
	switch why {
	case whyLinkLocal, whyMulticast, whyBroadcast, whyUnspecified:
		return true
	}
	return false
}

// maxRefusedLogged is how many refused addresses a jail logs; past it,
// one line says that further ones are not logged.
const maxRefusedLogged = 1000

// refusedLog remembers the addresses a jail logged a refused failure of.
type refusedLog struct {
	seen map[netip.Addr]struct{}
	full bool // the line saying further ones are not logged was written
}

// logRefusedLocked logs, once per jail and address, that a failure of a
// was not counted because of why. It remembers at most maxRefusedLogged
// addresses per jail. mu held; it is called only on a refusal, never on
// the path of a failure that counts.
func (e *Engine) logRefusedLocked(jail string, a netip.Addr, why string) {
	if e.refusedLogs == nil {
		e.refusedLogs = make(map[string]*refusedLog)
	}
	rl := e.refusedLogs[jail]
	if rl == nil {
		rl = &refusedLog{seen: make(map[netip.Addr]struct{})}
		e.refusedLogs[jail] = rl
	}
	if _, ok := rl.seen[a]; ok {
		return
	}
	if len(rl.seen) >= maxRefusedLogged {
		if !rl.full {
			rl.full = true
			e.log.Warn("too many refused addresses; further ones are not logged", keyJail, jail, "limit", maxRefusedLogged)
		}
		return
	}
	rl.seen[a] = struct{}{}
	e.log.Warn("failure not counted: address never banned", keyJail, jail, keyIP, a.String(), keyReason, why)
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
