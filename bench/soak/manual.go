package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Manual bans and unbans live in ranges no writer uses, so their model
// needs no knowledge of when the daemon read a line.
var (
	manualV4 = mustPrefix("203.0.113.0/24")
	manualV6 = mustPrefix("2001:db8:f000::/36")
)

// mban is the model of one active manual ban: its expiry is known to lie
// in [lo, hi] (the daemon takes its clock during the CLI call), or never.
type mban struct {
	jail    string
	p       netip.Prefix
	never   bool
	lo, hi  time.Time
	short   bool // made with a --for of a few seconds
	probe   bool // the lapse probe's ban: never lifted
	unknown bool // a CLI call on it failed: its state is not known
}

func (b *mban) String() string {
	exp := "no end"
	if !b.never {
		exp = "expiry " + b.hi.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s in %s (%s)", fmtPrefix(b.p), b.jail, exp)
}

// activeUntil reports whether b is surely active at every instant up to t.
func (b *mban) activeUntil(t time.Time) bool { return b.never || b.lo.After(t) }

// manual makes the manual bans and unbans and keeps their model.
type manual struct {
	s      *soak
	r      *rand.Rand
	bans   map[string]map[netip.Prefix]*mban
	counts map[string]int
	cliOK  int
	// expectedErr counts calls that failed as the model said they must
	// (an unban of something not banned).
	expectedErr int
	deferred    int // bans recorded but not yet in the firewall (a flush)
	// deferredUnban counts unbans answered with an error although they
	// were carried out (the firewall refused the delete).
	deferredUnban int
}

// listed returns the bans `moat bans --json` lists now in jails, keyed as
// unban keys them ("JAIL ADDR-OR-PREFIX").
func (m *manual) listed(jails []*jailSpec) (map[string]bool, error) {
	out := map[string]bool{}
	for _, j := range jails {
		o, _, err := m.s.cli("bans", "--json", "--jail", j.name)
		if err != nil {
			return nil, err
		}
		var bs []banJSON
		if err := json.Unmarshal([]byte(o), &bs); err != nil {
			return nil, err
		}
		for _, b := range bs {
			out[b.Jail+" "+b.IP] = true
		}
	}
	return out, nil
}

func newManual(s *soak) *manual {
	m := &manual{s: s, r: s.rng(31), bans: map[string]map[netip.Prefix]*mban{}, counts: map[string]int{}}
	for _, j := range s.jails {
		m.bans[j.name] = map[netip.Prefix]*mban{}
	}
	// The probe's ban, made in setup.
	p := netip.PrefixFrom(s.probe.addr, 32)
	m.bans[s.probe.jail][p] = &mban{jail: s.probe.jail, p: p, lo: s.begin.Add(3 * time.Hour), hi: time.Now().Add(3 * time.Hour), probe: true}
	return m
}

func (m *manual) jail(name string) *jailSpec {
	for _, j := range m.s.jails {
		if j.name == name {
			return j
		}
	}
	return nil
}

func (m *manual) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-m.s.ctx.Done():
			return
		case <-time.After(time.Duration(200+m.r.IntN(250)) * time.Millisecond):
		}
		m.step()
	}
}

// step makes one operation, chosen to overlap with the bans in force.
func (m *manual) step() {
	j := m.s.jails[m.r.IntN(len(m.s.jails))]
	m.prune(time.Now())
	shortOK := time.Until(m.s.end) > 20*time.Second
	existing := m.pick(j.name)
	switch p := m.r.IntN(100); {
	case p < 16 || existing == nil:
		m.ban(j, m.fresh(), m.long(), "fresh")
	case p < 30:
		m.ban(j, m.inside(existing.p), m.long(), "inside")
	case p < 37:
		m.ban(j, m.outside(existing.p), m.long(), "around")
	case p < 45:
		d := m.long()
		if shortOK && m.r.IntN(3) == 0 {
			d = m.short()
		}
		m.ban(j, existing.p, d, "again")
	case p < 59:
		m.unban(j, m.addrIn(existing.p, j.name), "inside")
	case p < 66:
		if existing.probe {
			m.unban(j, m.addrIn(existing.p, j.name), "inside")
		} else {
			m.unban(j, existing.p, "exact")
		}
	case p < 70:
		m.unban(j, m.notBanned(j.name), "not banned")
	case p < 80:
		if !shortOK {
			m.ban(j, m.inside(existing.p), m.long(), "inside")
			break
		}
		switch m.r.IntN(3) {
		case 0:
			m.ban(j, m.fresh(), m.short(), "short")
		case 1:
			m.ban(j, m.inside(existing.p), m.short(), "short inside")
		default:
			m.ban(j, m.outside(existing.p), m.short(), "short around")
		}
	case p < 85:
		m.unban(nil, m.addrIn(existing.p, ""), "every jail")
	default:
		// IPv6: a /48, a /64 or a single address (which the jail bans
		// by its ipv6_prefix).
		bits := []int{48, 64, 128}[m.r.IntN(3)]
		m.ban(j, netip.PrefixFrom(randomIn(m.r, manualV6), bits).Masked(), m.long(), "v6")
	}
}

func (m *manual) long() string {
	if m.r.IntN(25) == 0 {
		return "-1"
	}
	return []string{"30m", "45m", "1h", "2h"}[m.r.IntN(4)]
}

func (m *manual) short() string { return []string{"3s", "5s", "8s"}[m.r.IntN(3)] }

// fresh is a random prefix of the manual ranges, IPv4 or IPv6.
func (m *manual) fresh() netip.Prefix {
	if m.r.IntN(3) > 0 {
		bits := []int{24, 26, 27, 28, 28, 29, 30, 31, 32, 32, 32}[m.r.IntN(11)]
		return netip.PrefixFrom(randomIn(m.r, manualV4), bits).Masked()
	}
	bits := []int{36, 40, 48, 48, 56, 64, 64, 128}[m.r.IntN(8)]
	return netip.PrefixFrom(randomIn(m.r, manualV6), bits).Masked()
}

// inside is a prefix strictly inside p, or an address of it.
func (m *manual) inside(p netip.Prefix) netip.Prefix {
	max := p.Addr().BitLen()
	if p.Bits() >= max {
		return p
	}
	bits := p.Bits() + 1 + m.r.IntN(max-p.Bits())
	if m.r.IntN(3) == 0 {
		bits = max
	}
	return netip.PrefixFrom(randomIn(m.r, p), bits).Masked()
}

// outside is a prefix that contains p, within the manual ranges.
func (m *manual) outside(p netip.Prefix) netip.Prefix {
	min := manualV4.Bits()
	if p.Addr().Is6() {
		min = manualV6.Bits()
	}
	if p.Bits() <= min {
		return p
	}
	bits := min + m.r.IntN(p.Bits()-min)
	return netip.PrefixFrom(p.Addr(), bits).Masked()
}

// addrIn is a single address of p (as a /32 or /128), never the probe's
// address in the probe's jail (jail "": every jail).
func (m *manual) addrIn(p netip.Prefix, jail string) netip.Prefix {
	for {
		a := randomIn(m.r, p)
		if a == m.s.probe.addr && (jail == "" || jail == m.s.probe.jail) {
			if p.Bits() == 32 {
				return netip.PrefixFrom(a.Prev(), 32)
			}
			continue
		}
		return netip.PrefixFrom(a, a.BitLen())
	}
}

// notBanned is an address of the manual ranges no ban of jail covers.
func (m *manual) notBanned(jail string) netip.Prefix {
	for i := 0; i < 100; i++ {
		rng := manualV4
		if m.r.IntN(2) == 0 {
			rng = manualV6
		}
		a := randomIn(m.r, rng)
		covered := false
		for _, b := range m.bans[jail] {
			if b.p.Contains(a) {
				covered = true
				break
			}
		}
		if !covered {
			return netip.PrefixFrom(a, a.BitLen())
		}
	}
	return netip.PrefixFrom(mustAddr("2001:db8:ffff:ffff::1"), 128)
}

// pick is a random active ban of jail (nil when none).
func (m *manual) pick(jail string) *mban {
	var bs []*mban
	for _, b := range m.bans[jail] {
		if !b.unknown && !b.probe {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return nil
	}
	sort.Slice(bs, func(i, k int) bool { return bs[i].p.String() < bs[k].p.String() })
	return bs[m.r.IntN(len(bs))]
}

// prune forgets bans that have surely expired by now.
func (m *manual) prune(now time.Time) {
	for _, bs := range m.bans {
		for p, b := range bs {
			if !b.never && !b.unknown && b.hi.Before(now.Add(-2*time.Second)) {
				delete(bs, p)
			}
		}
	}
}

var (
	banLineRE   = regexp.MustCompile(`^banned (\S+) in (\S+) (?:until (\S+)|with no end)`)
	unbanLineRE = regexp.MustCompile(`^unbanned (\S+) in (\S+)$`)
)

// ban runs `moat ban` and updates the model: a ban of an active ban keeps
// the later expiry; a single IPv6 address is banned by the jail's
// ipv6_prefix.
func (m *manual) ban(j *jailSpec, asked netip.Prefix, dur, why string) {
	p := asked
	if asked.IsSingleIP() {
		p = j.key(asked.Addr())
	}
	if j.name == m.s.probe.jail && p == netip.PrefixFrom(m.s.probe.addr, 32) {
		// The probe's ban is left alone: it watches reloads.
		p = netip.PrefixFrom(m.s.probe.addr.Prev(), 32)
		asked = p
	}
	m.counts["ban "+why]++
	args := []string{"--jail", j.name, "--for", dur, fmtPrefix(asked)}
	m.s.opsMu.Lock()
	m.s.mark("%s", "moat ban "+strings.Join(args, " "))
	t0 := time.Now()
	out, errOut, err := m.s.cli("ban", args...)
	t1 := time.Now()
	m.s.opsMu.Unlock()
	cmd := "moat ban " + strings.Join(args, " ")
	nb := &mban{jail: j.name, p: p}
	switch dur {
	case "-1":
		nb.never = true
	default:
		d, _ := time.ParseDuration(dur)
		nb.lo, nb.hi = t0.Add(d), t1.Add(d)
		nb.short = d < time.Minute
	}
	if e := m.bans[j.name][p]; e != nil {
		nb = merge(e, nb)
	}
	m.bans[j.name][p] = nb
	if err != nil {
		if strings.Contains(errOut, "recorded") {
			// Durable, the firewall refused it (a flush): it is retried.
			m.deferred++
			m.s.probs.note("%s at %s: %s", cmd, m.s.elapsed(), strings.TrimSpace(errOut))
		} else {
			nb.unknown = true
			m.s.probs.fail("cli", "%s at %s failed: %v: %s", cmd, m.s.elapsed(), err, strings.TrimSpace(errOut+out))
			return
		}
	} else {
		m.cliOK++
	}
	if err != nil {
		return
	}
	sm := banLineRE.FindStringSubmatch(strings.TrimSpace(out))
	if sm == nil {
		m.s.probs.note("%s: output not understood: %q", cmd, strings.TrimSpace(out))
		return
	}
	if sm[1] != fmtPrefix(p) || sm[2] != j.name {
		m.s.probs.fail("cli-ban", "%s banned %s in %s; expected %s in %s (output %q)", cmd, sm[1], sm[2], fmtPrefix(p), j.name, strings.TrimSpace(out))
	}
	if sm[3] == "" {
		if !nb.never {
			m.s.probs.fail("cli-ban", "%s: moat says the ban has no end; the model says it ends in [%s, %s] (output %q)",
				cmd, nb.lo.Format(time.RFC3339), nb.hi.Format(time.RFC3339), strings.TrimSpace(out))
		}
		return
	}
	until, perr := time.Parse(time.RFC3339, sm[3])
	if perr != nil {
		m.s.probs.note("%s: expiry not understood: %q", cmd, sm[3])
		return
	}
	if nb.never || until.Before(nb.lo.Add(-1500*time.Millisecond)) || until.After(nb.hi.Add(500*time.Millisecond)) {
		want := "no end"
		if !nb.never {
			want = fmt.Sprintf("[%s, %s]", nb.lo.Format(time.RFC3339Nano), nb.hi.Format(time.RFC3339Nano))
		}
		m.s.probs.fail("cli-ban", "%s at %s: moat keeps it until %s; expected %s (a ban of an active ban keeps the later expiry) (output %q)",
			cmd, m.s.elapsed(), sm[3], want, strings.TrimSpace(out))
	}
}

// merge is the ban b made over the active (or maybe expired) ban e: the
// later expiry wins, no end beats any.
func merge(e, b *mban) *mban {
	out := *b
	out.probe = e.probe || b.probe
	out.unknown = e.unknown || b.unknown
	switch {
	case e.never || b.never:
		out.never = true
		out.short = false
	default:
		if e.lo.After(out.lo) {
			out.lo = e.lo
		}
		if e.hi.After(out.hi) {
			out.hi = e.hi
		}
		out.short = e.short && b.short
	}
	return &out
}

// unban runs `moat unban` (jail nil: every jail) and checks what it lifted
// against the model: every ban of the jail equal to the target or, for an
// address, containing it.
func (m *manual) unban(j *jailSpec, target netip.Prefix, why string) {
	m.counts["unban "+why]++
	args := []string{fmtPrefix(target)}
	jails := m.s.jails
	if j != nil {
		args = []string{"--jail", j.name, fmtPrefix(target)}
		jails = []*jailSpec{j}
	}
	cmd := "moat unban " + strings.Join(args, " ")
	m.s.opsMu.Lock()
	m.s.mark("%s", cmd)
	out, errOut, err := m.s.cli("unban", args...)
	t1 := time.Now()
	m.s.opsMu.Unlock()
	var match []*mban
	unknown := false
	for _, js := range jails {
		for _, b := range m.bans[js.name] {
			if b.p == target || (target.IsSingleIP() && b.p.Contains(target.Addr())) {
				match = append(match, b)
				unknown = unknown || b.unknown
			}
		}
	}
	key := func(jail string, p netip.Prefix) string { return jail + " " + fmtPrefix(p) }
	sure := map[string]*mban{}
	maybe := map[string]*mban{}
	for _, b := range match {
		if b.activeUntil(t1) {
			sure[key(b.jail, b.p)] = b
		} else {
			maybe[key(b.jail, b.p)] = b
		}
	}
	for _, b := range match {
		delete(m.bans[b.jail], b.p)
	}
	if unknown {
		return // a failed call made the model unsure of these
	}
	if err != nil {
		if strings.Contains(errOut, "not banned") {
			if len(sure) > 0 {
				m.s.probs.fail("cli-unban", "%s at %s: moat says not banned; the model has %s", cmd, m.s.elapsed(), mbanList(sure))
			} else {
				m.expectedErr++
			}
			return
		}
		// An unban is durable before it goes to the kernel: when the
		// firewall refuses the delete (the table is gone after a flush) the
		// daemon says the unban is recorded but not yet out of the
		// firewall, and the kernel is repaired later. Which it was is read
		// back from the list.
		still, lerr := m.listed(jails)
		if lerr != nil || !strings.Contains(errOut, "recorded, but not yet out of the firewall") {
			m.s.probs.fail("cli", "%s at %s failed: %v: %s", cmd, m.s.elapsed(), err, strings.TrimSpace(errOut+out))
			for _, b := range match {
				b.unknown = true
				m.bans[b.jail][b.p] = b
			}
			return
		}
		kept := 0
		for _, b := range match {
			if still[key(b.jail, b.p)] {
				kept++
				b.unknown = true // neither lifted nor surely in force
				m.bans[b.jail][b.p] = b
			}
		}
		if kept > 0 {
			m.s.probs.fail("cli", "%s at %s failed (%s) and %d of the bans it had to lift are still listed", cmd, m.s.elapsed(), strings.TrimSpace(errOut), kept)
			return
		}
		m.deferredUnban++
		m.s.probs.note("%s at %s answered %q, but lifted %s (the daemon's log has the firewall error; it resyncs the kernel)",
			cmd, m.s.elapsed(), strings.TrimSpace(errOut), mbanList(sure))
		return
	}
	m.cliOK++
	lifted := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		sm := unbanLineRE.FindStringSubmatch(strings.TrimSpace(l))
		if sm == nil {
			m.s.probs.note("%s: output line not understood: %q", cmd, l)
			continue
		}
		k := sm[2] + " " + sm[1]
		lifted[k] = true
		if sure[k] == nil && maybe[k] == nil {
			m.s.probs.fail("cli-unban", "%s at %s lifted %s in %s, which the model does not have (model: %s)", cmd, m.s.elapsed(), sm[1], sm[2], mbanList(sure))
		}
	}
	for k, b := range sure {
		if !lifted[k] {
			m.s.probs.fail("cli-unban", "%s at %s did not lift %s, which contains or equals the target (output %q)", cmd, m.s.elapsed(), b, strings.TrimSpace(out))
		}
	}
	if len(sure) == 0 && len(maybe) == 0 {
		m.s.probs.fail("cli-unban", "%s at %s succeeded (%q); the model had nothing to lift", cmd, m.s.elapsed(), strings.TrimSpace(out))
	}
}

func mbanList(bs map[string]*mban) string {
	if len(bs) == 0 {
		return "nothing"
	}
	var ss []string
	for _, b := range bs {
		ss = append(ss, b.String())
	}
	sort.Strings(ss)
	return strings.Join(ss, ", ")
}

func (m *manual) summary() string {
	var ks []string
	total := 0
	for k, n := range m.counts {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(ks)
	return fmt.Sprintf("%d (%d answered as the model said, %d refused as expected: not banned; during flushes %d bans recorded with the firewall deferred, %d unbans recorded with the firewall deferred) [%s]",
		total, m.cliOK, m.expectedErr, m.deferred, m.deferredUnban, strings.Join(ks, ", "))
}

// fmtPrefix writes a single address bare and a wider prefix in CIDR form,
// as moat does.
func fmtPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
