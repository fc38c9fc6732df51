package proxy

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// limitShards is the number of independently locked parts of a Limiter's
// map; fewer when MaxKeys is small, so that each holds at least
// minPerShard keys and eviction has some choice.
const (
	limitShards = 64
	minPerShard = 16
)

// idleScan is how many buckets an insert into a full shard inspects looking
// for an idle one before it evicts the least recently seen instead.
const idleScan = 32

// LimiterOptions tune a Limiter; the zero value is usable.
type LimiterOptions struct {
	// IPv6Prefix is the prefix length IPv6 clients are keyed by
	// (DefaultIPv6Prefix when 0; values above 128 mean 128).
	IPv6Prefix int
	// Exempt lists clients that are never limited.
	Exempt []netip.Prefix
	// MaxKeys is a hard cap on the keys tracked (DefaultMaxKeys when 0 or
	// less).
	MaxKeys int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Limiter is a token bucket per client address: Limit.Rate tokens a second,
// Limit.Burst at most, one token a request. IPv4-mapped IPv6 addresses
// count as their IPv4 address, zones are ignored, and IPv6 addresses share
// the bucket of their enclosing /IPv6Prefix.
//
// Buckets live in a sharded map holding at most MaxKeys of them. When a
// shard is full, a new key takes the place of an idle bucket (one refilled
// to full, which behaves exactly as a new one, so dropping it changes no
// decision) or, when none is found among the few inspected, of the least
// recently seen (CLOCK, approximate). Memory therefore stays bounded under a
// flood of distinct addresses, and only clients that are evicted while
// still partly drained can ever be given more than their due.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	rate      float64
	burst     int
	unlimited bool
	v6bits    int
	exempt    []netip.Prefix
	now       func() time.Time
	seed      maphash.Seed
	mask      uint64
	perShard  int
	shards    []limitShard
	epoch     time.Time // the zero of Limiter.clock
	name      string    // the policy name as a structured-field string
	policy    string    // the RateLimit-Policy value
}

// limitKey is a client key: the 16-byte form of an IPv4 address, or of an
// IPv6 address masked to the limiter's prefix.
type limitKey struct{ hi, lo uint64 }

// bucket is one client's token bucket in a shard's slab.
type bucket struct {
	lim rate.Limiter
	key limitKey
	// fullAt is when, by Limiter.clock, the bucket is full again if
	// not used (so it can be dropped without changing any decision).
	fullAt int64
	// ref is set on each use after the first and cleared by the CLOCK hand.
	ref bool
}

type limitShard struct {
	mu      sync.Mutex
	index   map[limitKey]int32
	buckets []bucket
	hand    int // CLOCK hand: the next eviction candidate
	scan    int // where the next search for an idle bucket starts
	_       [64]byte
}

// NewLimiter returns a Limiter for l. name is the policy's name in the
// RateLimit and RateLimit-Policy headers. A Burst below 1 counts as 1; a Rate
// of +Inf limits nothing; a Rate of zero or less (which configuration
// validation refuses) gives each client Burst requests and no refill.
func NewLimiter(name string, l Limit, o LimiterOptions) *Limiter {
	lm := &Limiter{
		rate:   l.Rate,
		burst:  max(l.Burst, 1),
		v6bits: o.IPv6Prefix,
		now:    o.Now,
		seed:   maphash.MakeSeed(),
		name:   sfString(name),
	}
	if math.IsNaN(lm.rate) || lm.rate < 0 {
		lm.rate = 0
	}
	lm.unlimited = math.IsInf(lm.rate, 1)
	if lm.v6bits <= 0 {
		lm.v6bits = DefaultIPv6Prefix
	}
	lm.v6bits = min(lm.v6bits, 128)
	if lm.now == nil {
		lm.now = time.Now
	}
	lm.epoch = lm.now()
	for _, p := range o.Exempt {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		lm.exempt = append(lm.exempt, p.Masked())
	}
	maxKeys := o.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := limitShards
	for n > 1 && n*minPerShard > maxKeys {
		n /= 2
	}
	lm.mask = uint64(n - 1)
	lm.perShard = min(maxKeys/n, math.MaxInt32) // slab indexes are int32
	lm.shards = make([]limitShard, n)
	for i := range lm.shards {
		lm.shards[i].index = make(map[limitKey]int32)
	}

	// w: seconds to refill the whole burst, at least 1.
	w := int64(1)
	switch {
	case lm.unlimited:
	case lm.rate > 0:
		w = max(ceilSeconds(durationOf(float64(lm.burst)/lm.rate)), 1)
	default:
		w = math.MaxInt32 // never refilled; a large finite number for the header
	}
	lm.policy = lm.name + ";q=" + strconv.Itoa(lm.burst) + ";w=" + strconv.FormatInt(w, 10)
	return lm
}

// Decision is what a Limiter decided for one request, and what the
// response's rate-limit headers say.
type Decision struct {
	// Allowed is whether the request may go on.
	Allowed bool
	// Exempt is set when the client is exempt; nothing else is then set
	// but Allowed.
	Exempt bool
	// Limit is the bucket size (the burst).
	Limit int
	// Remaining is the whole tokens left after this request.
	Remaining int
	// Reset is how long until a token is back: zero while some remain.
	Reset time.Duration
	// RetryAfter is Reset on a refusal, zero when allowed.
	RetryAfter time.Duration

	name, policy string // from the Limiter, for SetHeaders
}

// Allow takes a token from a's bucket, if there is one, and reports the
// decision. It is safe for concurrent use and does not allocate for a key
// already tracked. An invalid address has a bucket of its own.
func (l *Limiter) Allow(a netip.Addr) Decision {
	if l.isExempt(a) {
		return Decision{Allowed: true, Exempt: true}
	}
	d := Decision{Allowed: true, Limit: l.burst, name: l.name, policy: l.policy}
	if l.unlimited {
		d.Remaining = l.burst
		return d
	}
	k := l.key(a)
	now := l.now()
	s := &l.shards[l.shardOf(k)]

	s.mu.Lock()
	i, ok := s.index[k]
	if !ok {
		i = l.insert(s, k, now)
	}
	b := &s.buckets[i]
	// Only a key seen again is marked: a flood of addresses each seen once
	// is evicted before the clients that keep coming back.
	b.ref = ok
	// With s.mu held nothing else touches the bucket, so AllowN succeeds
	// exactly when a whole token is there now; a refusal then costs one
	// lock of the bucket, not two.
	tokens := b.lim.TokensAt(now)
	d.Allowed = tokens >= 1 && b.lim.AllowN(now, 1)
	if d.Allowed {
		tokens--
	}
	b.fullAt = addNanos(l.clock(now), l.untilFull(tokens))
	s.mu.Unlock()

	if tokens >= 1 {
		d.Remaining = int(tokens)
	} else {
		d.Reset = l.untilTokens(1 - tokens)
	}
	if !d.Allowed {
		d.RetryAfter = d.Reset
	}
	return d
}

// Len returns the number of keys tracked. It is safe for concurrent use.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

func (l *Limiter) isExempt(a netip.Addr) bool {
	if len(l.exempt) == 0 {
		return false
	}
	a = a.Unmap()
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// key is a's bucket key: IPv4 (mapped or not) as itself, IPv6 masked to
// the limiter's prefix, zones dropped.
func (l *Limiter) key(a netip.Addr) limitKey {
	a = a.Unmap()
	b := a.As16()
	k := limitKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
	if a.Is6() && l.v6bits < 128 {
		switch {
		case l.v6bits <= 64:
			k.hi &^= math.MaxUint64 >> l.v6bits
			k.lo = 0
		default:
			k.lo &^= math.MaxUint64 >> (l.v6bits - 64)
		}
	}
	return k
}

func (l *Limiter) shardOf(k limitKey) uint64 {
	return maphash.Comparable(l.seed, k) & l.mask
}

// insert gives k a bucket in s, full at now, evicting another key when s
// is at its cap, and returns its index. s.mu is held.
func (l *Limiter) insert(s *limitShard, k limitKey, now time.Time) int32 {
	var i int
	if len(s.buckets) < l.perShard {
		if len(s.buckets) == cap(s.buckets) {
			// Grow by doubling but never past the cap, so a full shard
			// holds no slack.
			grown := make([]bucket, len(s.buckets), min(max(2*cap(s.buckets), 16), l.perShard))
			copy(grown, s.buckets)
			s.buckets = grown
		}
		s.buckets = append(s.buckets, bucket{})
		i = len(s.buckets) - 1
	} else {
		i = l.victim(s, l.clock(now))
		delete(s.index, s.buckets[i].key)
	}
	b := &s.buckets[i]
	// A zero rate.Limiter has no tokens and rate.NewLimiter allocates. Give
	// the slot's limiter its burst and a rate of one token a second since
	// long ago, which fills it at now, then the real rate from now on.
	long := now.Add(-1 << 62)
	b.lim = rate.Limiter{}
	b.lim.SetBurstAt(long, l.burst)
	b.lim.SetLimitAt(long, 1)
	b.lim.SetLimitAt(now, rate.Limit(l.rate))
	b.key = k
	b.fullAt = l.clock(now)
	b.ref = false
	s.index[k] = int32(i)
	return int32(i)
}

// victim picks the bucket of a full shard to reuse: an idle one among the
// next idleScan, else the first the CLOCK hand finds not used since it
// last passed. s.mu is held.
func (l *Limiter) victim(s *limitShard, now int64) int {
	n := len(s.buckets)
	for range min(idleScan, n) {
		i := s.scan
		s.scan++
		if s.scan == n {
			s.scan = 0
		}
		if s.buckets[i].fullAt <= now {
			return i
		}
	}
	for {
		i := s.hand
		s.hand++
		if s.hand == n {
			s.hand = 0
		}
		b := &s.buckets[i]
		if !b.ref {
			return i
		}
		b.ref = false
	}
}

// untilFull is how long a bucket holding tokens takes to fill.
func (l *Limiter) untilFull(tokens float64) time.Duration {
	return l.untilTokens(float64(l.burst) - tokens)
}

// untilTokens is how long n tokens take to come back.
func (l *Limiter) untilTokens(n float64) time.Duration {
	if n <= 0 {
		return 0
	}
	if l.rate <= 0 {
		return math.MaxInt64
	}
	return durationOf(n / l.rate)
}

// durationOf converts seconds to a Duration, to the nearest nanosecond
// (float error would otherwise turn 1ms into 1.000001ms), saturating.
func durationOf(sec float64) time.Duration {
	ns := math.Round(sec * float64(time.Second))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// clock is t in nanoseconds since the limiter was made, by the monotonic
// clock when t has a reading (so stepping the wall clock makes no bucket
// look idle early).
func (l *Limiter) clock(t time.Time) int64 {
	return int64(t.Sub(l.epoch))
}

// addNanos is n+d, saturating.
func addNanos(n int64, d time.Duration) int64 {
	if n > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return n + int64(d)
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// SetHeaders adds the IETF RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers, structured-field form) to h and,
// on a refusal, sets Retry-After in whole seconds (at least 1). The fields
// are added, not set, so the decisions of several limiters (a global and a
// route's) each list their policy. It writes nothing for an exempt client.
func (d Decision) SetHeaders(h http.Header) {
	if d.Exempt || d.policy == "" {
		return
	}
	var buf [64]byte
	h["Ratelimit-Policy"] = append(h["Ratelimit-Policy"], d.policy)
	h["Ratelimit"] = append(h["Ratelimit"], string(d.appendValue(buf[:0])))
	if !d.Allowed {
		h["Retry-After"] = []string{strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10)}
	}
}

// appendFields appends the fields SetHeaders sets for an allowed request,
// written out, for the fast path.
func (d Decision) appendFields(b []byte) []byte {
	if d.Exempt || d.policy == "" {
		return b
	}
	b = append(append(append(b, "Ratelimit-Policy: "...), d.policy...), "\r\nRatelimit: "...)
	return append(d.appendValue(b), "\r\n"...)
}

// appendValue appends the RateLimit field's value.
func (d Decision) appendValue(b []byte) []byte {
	b = append(append(b, d.name...), ";r="...)
	b = strconv.AppendInt(b, int64(max(d.Remaining, 0)), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, ceilSeconds(d.Reset), 10)
}

// sfString quotes s as a structured-field string (RFC 8941): printable
// ASCII only, with '"' and '\' escaped; other bytes become '?'.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
