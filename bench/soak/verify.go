package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"
)

// verifyStats are the final check's counts, for the summary.
type verifyStats struct {
	expected, expAuto, expManual int
	listed, enforced             int
	kernelElems                  int
	negatives, negSampled        int
	negCovered                   int
}

// rng is an inclusive range of addresses of one family.
type rng struct{ first, last netip.Addr }

func (r rng) String() string {
	if r.first == r.last {
		return r.first.String()
	}
	return r.first.String() + "-" + r.last.String()
}

func prefixRange(p netip.Prefix) rng {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return rng{p.Addr(), last}
}

// merge sorts ranges and joins overlapping and adjacent ones.
func mergeRanges(rs []rng) []rng {
	rs = append([]rng(nil), rs...)
	sort.Slice(rs, func(i, k int) bool { return rs[i].first.Less(rs[k].first) })
	var out []rng
	for _, r := range rs {
		if n := len(out); n > 0 {
			l := &out[n-1]
			if !l.last.Less(r.first) || l.last.Next() == r.first {
				if l.last.Less(r.last) {
					l.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the parts of a (merged) not in b (merged).
func subtract(a, b []rng) []rng {
	var out []rng
	for _, r := range a {
		cur := r
		ok := true
		for _, x := range b {
			if !ok {
				break
			}
			if x.last.Less(cur.first) || cur.last.Less(x.first) {
				continue
			}
			if cur.first.Less(x.first) {
				out = append(out, rng{cur.first, x.first.Prev()})
			}
			if x.last.Less(cur.last) {
				cur.first = x.last.Next()
			} else {
				ok = false
			}
		}
		if ok {
			out = append(out, cur)
		}
	}
	return out
}

func covers(rs []rng, a netip.Addr) bool {
	i := sort.Search(len(rs), func(i int) bool { return a.Less(rs[i].first) })
	return i > 0 && !rs[i-1].last.Less(a)
}

// kelem is one element of a kernel set as nft lists it.
type kelem struct {
	r     rng
	never bool          // no timeout
	left  time.Duration // expires in
}

// parseNftSet reads `nft -j list set`: elements are an address, a prefix
// or a range, bare or inside {"elem": {"val": …, "timeout": …, "expires": …}}.
func parseNftSet(out string) ([]kelem, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %v", err)
	}
	var els []kelem
	for _, o := range doc.Nftables {
		raw, ok := o["set"]
		if !ok {
			continue
		}
		var set struct {
			Elem []json.RawMessage `json:"elem"`
		}
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, err
		}
		for _, e := range set.Elem {
			k, err := parseElem(e)
			if err != nil {
				return nil, fmt.Errorf("element %s: %v", e, err)
			}
			els = append(els, k)
		}
	}
	return els, nil
}

func parseElem(e json.RawMessage) (kelem, error) {
	var wrapped struct {
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Timeout *float64        `json:"timeout"`
			Expires *float64        `json:"expires"`
		} `json:"elem"`
	}
	if json.Unmarshal(e, &wrapped) == nil && wrapped.Elem != nil {
		r, err := parseVal(wrapped.Elem.Val)
		k := kelem{r: r, never: wrapped.Elem.Timeout == nil}
		if wrapped.Elem.Expires != nil {
			k.left = time.Duration(*wrapped.Elem.Expires * float64(time.Second))
		} else if wrapped.Elem.Timeout != nil {
			k.left = time.Duration(*wrapped.Elem.Timeout * float64(time.Second))
		}
		return k, err
	}
	r, err := parseVal(e)
	return kelem{r: r, never: true}, err
}

func parseVal(v json.RawMessage) (rng, error) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		a, err := netip.ParseAddr(s)
		return rng{a, a}, err
	}
	var o struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []string `json:"range"`
	}
	if err := json.Unmarshal(v, &o); err != nil {
		return rng{}, err
	}
	switch {
	case o.Prefix != nil:
		a, err := netip.ParseAddr(o.Prefix.Addr)
		if err != nil {
			return rng{}, err
		}
		return prefixRange(netip.PrefixFrom(a, o.Prefix.Len)), nil
	case len(o.Range) == 2:
		a, err := netip.ParseAddr(o.Range[0])
		if err != nil {
			return rng{}, err
		}
		b, err := netip.ParseAddr(o.Range[1])
		return rng{a, b}, err
	}
	return rng{}, fmt.Errorf("unknown element %s", v)
}

// expBan is a ban the ledger says must be in force at the end.
type expBan struct {
	jail  string
	p     netip.Prefix
	auto  bool
	fails int
	m     *mban
}

// listedBan is one ban of `moat bans --json`.
type listedBan struct {
	b     banJSON
	p     netip.Prefix
	r     rng
	never bool
	exp   time.Time
}

func fam(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "v4"
	}
	return "v6"
}

// verify is the final check: (1) the list is the ledger, (2) the kernel
// enforces every listed ban for as long as moat lists it, (3) the kernel
// covers nothing the ledger says is not banned.
func (s *soak) verify() {
	v := &verifyStats{}
	s.verified = v
	now := time.Now()

	// What must be banned, and what is unknown (a failed CLI call, a
	// short ban expiring right now).
	expected := map[string]map[netip.Prefix]*expBan{}
	unknown := map[string][]rng{}
	for _, j := range s.jails {
		expected[j.name] = map[netip.Prefix]*expBan{}
	}
	s.led.mu.Lock()
	for _, j := range s.jails {
		for k, n := range s.led.fails[j.name] {
			if n >= j.maxretry {
				expected[j.name][k] = &expBan{jail: j.name, p: k, auto: true, fails: n}
				v.expAuto++
			}
		}
	}
	s.led.mu.Unlock()
	for jail, bs := range s.man.bans {
		for p, b := range bs {
			switch {
			case b.unknown:
				unknown[jail] = append(unknown[jail], prefixRange(p))
			case b.never || b.lo.After(now.Add(time.Second)):
				if e := expected[jail][p]; e != nil {
					s.probs.note("jail %s: %s is both a writer's ban and a manual one", jail, p)
				}
				expected[jail][p] = &expBan{jail: jail, p: p, m: b}
				v.expManual++
			case b.hi.Before(now.Add(-time.Second)):
				// expired
			default:
				unknown[jail] = append(unknown[jail], prefixRange(p))
			}
		}
	}
	for jail := range unknown {
		unknown[jail] = mergeRanges(unknown[jail])
	}
	for _, e := range expected {
		v.expected += len(e)
	}
	inUnknown := func(jail string, r rng) bool {
		for _, u := range unknown[jail] {
			if !(u.last.Less(r.first) || r.last.Less(u.first)) {
				return true
			}
		}
		return false
	}

	// (1) moat bans --json against the ledger.
	out, errOut, err := s.cli("bans", "--json")
	if err != nil {
		s.probs.fail("list", "moat bans --json: %v: %s", err, errOut)
		return
	}
	var raw []banJSON
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		s.probs.fail("list", "moat bans --json: %v", err)
		return
	}
	listed := map[string]map[netip.Prefix]*listedBan{}
	for _, j := range s.jails {
		listed[j.name] = map[netip.Prefix]*listedBan{}
	}
	for _, b := range raw {
		p, err := netip.ParsePrefix(b.IP)
		if err != nil {
			a, aerr := netip.ParseAddr(b.IP)
			if aerr != nil {
				s.probs.fail("list", "moat bans --json: bad ip %q in jail %s", b.IP, b.Jail)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		lb := &listedBan{b: b, p: p, r: prefixRange(p), never: b.ExpiresAt == nil}
		if b.ExpiresAt != nil {
			lb.exp = *b.ExpiresAt
		}
		if listed[b.Jail] == nil {
			s.probs.fail("list", "moat bans --json lists %s in jail %q, which is not configured", b.IP, b.Jail)
			continue
		}
		if listed[b.Jail][p] != nil {
			s.probs.fail("list", "moat bans --json lists %s in jail %s twice", b.IP, b.Jail)
		}
		listed[b.Jail][p] = lb
		v.listed++
	}
	for _, j := range s.jails {
		for p, e := range expected[j.name] {
			lb := listed[j.name][p]
			if lb == nil {
				if !inUnknown(j.name, prefixRange(p)) {
					s.probs.fail("list-missing", "jail %s: %s must be banned (%s) but moat bans --json does not list it", j.name, fmtPrefix(p), e.why(j))
				}
				continue
			}
			s.checkExpiry(j, e, lb, now)
		}
		for p, lb := range listed[j.name] {
			if expected[j.name][p] != nil || inUnknown(j.name, lb.r) {
				continue
			}
			s.probs.fail("list-extra", "jail %s: moat bans --json lists %s (banned at %s, %d failures, count %d), which the ledger says must not be banned: %s",
				j.name, lb.b.IP, lb.b.BannedAt.Format(time.RFC3339), lb.b.Failures, lb.b.Count, s.whyNot(j, p))
		}
	}

	// (2) and (3): the kernel.
	r := s.rng(99)
	var negSample []negCheck
	for _, j := range s.jails {
		for _, fm := range []string{"v4", "v6"} {
			set := j.name + "_" + fm
			t0 := time.Now()
			kout, kerr, err := nftOut(s.ns, "-j", "list", "set", "inet", "moat", set)
			if err != nil {
				s.probs.fail("kernel", "nft -j list set inet moat %s: %v: %s", set, err, firstLine(kerr))
				continue
			}
			els, err := parseNftSet(kout)
			if err != nil {
				s.probs.fail("kernel", "set %s: %v", set, err)
				continue
			}
			v.kernelElems += len(els)
			var kr []rng
			for _, e := range els {
				kr = append(kr, e.r)
			}
			kunion := mergeRanges(kr)
			var lr, er []rng
			var lbs []*listedBan
			for p, lb := range listed[j.name] {
				if fam(p) == fm {
					lr = append(lr, lb.r)
					lbs = append(lbs, lb)
				}
			}
			sort.Slice(lbs, func(i, k int) bool { return lbs[i].r.first.Less(lbs[k].r.first) })
			for p := range expected[j.name] {
				if fam(p) == fm {
					er = append(er, prefixRange(p))
				}
			}
			lunion, eunion := mergeRanges(lr), mergeRanges(er)

			// (2) every listed ban covered by the kernel's elements…
			bad := map[*listedBan]bool{}
			for _, lb := range lbs {
				if miss := subtract([]rng{lb.r}, kunion); len(miss) > 0 {
					bad[lb] = true
					s.probs.fail("kernel-missing", "jail %s: moat lists %s, but no element of set %s covers %s", j.name, lb.b.IP, set, rngList(miss))
				}
			}
			// … and found by the kernel's own lookup (nft get element):
			// an address, or a prefix's first and last address.
			for _, miss := range s.getElements(set, lbs) {
				bad[miss.lb] = true
				s.probs.fail("kernel-missing", "jail %s: moat lists %s, but `nft get element inet moat %s { %s }` finds nothing: %s",
					j.name, miss.lb.b.IP, set, miss.addr, miss.detail)
			}
			v.enforced += len(lbs) - len(bad)
			// … for as long as moat lists it.
			s.checkKernelExpiry(j.name, set, els, lbs, t0)
			// Nothing in the kernel that moat does not list.
			for _, x := range subtract(kunion, lunion) {
				s.probs.fail("kernel-extra", "jail %s: set %s covers %s, which moat does not list as banned (%s)", j.name, set, x, s.whyNotRange(j, x))
			}

			// (3) addresses that must not be banned: those the writers
			// used below maxretry, and those just outside each ban.
			var cands []negCheck
			s.led.mu.Lock()
			for k, n := range s.led.fails[j.name] {
				if n >= j.maxretry || fam(k) != fm {
					continue
				}
				for _, a := range s.led.addrs[j.name][k] {
					cands = append(cands, negCheck{j.name, set, a, fmt.Sprintf("%d failures written for %s (maxretry %d)", n, fmtPrefix(k), j.maxretry)})
				}
				if !k.IsSingleIP() {
					kr := prefixRange(k)
					cands = append(cands, negCheck{j.name, set, kr.first, fmt.Sprintf("first address of %s, %d failures (maxretry %d)", k, n, j.maxretry)},
						negCheck{j.name, set, kr.last, fmt.Sprintf("last address of %s, %d failures (maxretry %d)", k, n, j.maxretry)})
				}
			}
			s.led.mu.Unlock()
			for _, x := range eunion {
				if x.first.Prev().IsValid() {
					cands = append(cands, negCheck{j.name, set, x.first.Prev(), "just below " + x.String() + ", which must be banned"})
				}
				if x.last.Next().IsValid() {
					cands = append(cands, negCheck{j.name, set, x.last.Next(), "just above " + x.String() + ", which must be banned"})
				}
			}
			for _, c := range cands {
				if covers(eunion, c.addr) || inUnknown(j.name, rng{c.addr, c.addr}) {
					continue
				}
				v.negatives++
				if covers(kunion, c.addr) {
					v.negCovered++
					s.probs.fail("kernel-covers-unbanned", "jail %s: set %s covers %s, which must not be banned: %s", j.name, set, c.addr, c.why)
					negSample = append(negSample, c)
				} else if r.IntN(len(cands)+1) < 40 {
					negSample = append(negSample, c)
				}
			}
		}
	}
	// The kernel's own lookup for a sample of the addresses that must
	// not be banned.
	if len(negSample) > 200 {
		negSample = negSample[:200]
	}
	for _, c := range negSample {
		v.negSampled++
		if ok, _ := s.nftHas(c.set, c.addr); ok {
			s.probs.fail("kernel-covers-unbanned", "jail %s: `nft get element inet moat %s { %s }` finds it, but it must not be banned: %s", c.jail, c.set, c.addr, c.why)
		}
	}
	s.checkRules()
	s.probe.check(s.logs.scan().reloads)
}

type negCheck struct {
	jail, set string
	addr      netip.Addr
	why       string
}

func (e *expBan) why(j *jailSpec) string {
	if e.auto {
		return fmt.Sprintf("%d failures written, maxretry %d", e.fails, j.maxretry)
	}
	if e.m.never {
		return "manual ban with no end"
	}
	return fmt.Sprintf("manual ban until %s", e.m.lo.Format(time.RFC3339))
}

// whyNot says why the ledger does not expect a ban of p in j.
func (s *soak) whyNot(j *jailSpec, p netip.Prefix) string {
	if manualV4.Overlaps(p) || manualV6.Overlaps(p) {
		return "no manual ban of it is in force in the model"
	}
	n := s.led.count(j.name, p)
	if n == 0 {
		return "no failure was written for it"
	}
	return fmt.Sprintf("only %d failures written for it (maxretry %d)", n, j.maxretry)
}

func (s *soak) whyNotRange(j *jailSpec, x rng) string {
	if x.first == x.last {
		return s.whyNot(j, j.key(x.first))
	}
	return "a range no listed ban covers"
}

func rngList(rs []rng) string {
	var ss []string
	for _, r := range rs {
		ss = append(ss, r.String())
	}
	return strings.Join(ss, ", ")
}

// checkExpiry compares a listed ban's expiry with the ledger's: a writer's
// ban lasts bantime (1h); a manual one what the model says.
func (s *soak) checkExpiry(j *jailSpec, e *expBan, lb *listedBan, now time.Time) {
	if e.auto {
		switch {
		case lb.never:
			s.probs.fail("expiry", "jail %s: %s is listed with no end; bantime is 1h", j.name, lb.b.IP)
		case lb.exp.Sub(lb.b.BannedAt) < time.Hour-time.Second || lb.exp.Sub(lb.b.BannedAt) > time.Hour+time.Second:
			s.probs.fail("expiry", "jail %s: %s banned at %s until %s: not bantime 1h", j.name, lb.b.IP, lb.b.BannedAt.Format(time.RFC3339), lb.exp.Format(time.RFC3339))
		}
		return
	}
	m := e.m
	switch {
	case m.never && !lb.never:
		s.probs.fail("expiry", "jail %s: %s is listed until %s; the model says no end", j.name, lb.b.IP, lb.exp.Format(time.RFC3339))
	case !m.never && lb.never:
		s.probs.fail("expiry", "jail %s: %s is listed with no end; the model says [%s, %s]", j.name, lb.b.IP, m.lo.Format(time.RFC3339), m.hi.Format(time.RFC3339))
	case !m.never && (lb.exp.Before(m.lo.Add(-1500*time.Millisecond)) || lb.exp.After(m.hi.Add(500*time.Millisecond))):
		s.probs.fail("expiry", "jail %s: %s is listed until %s; the model says between %s and %s (a ban of an active ban keeps the later expiry)",
			j.name, lb.b.IP, lb.exp.Format(time.RFC3339), m.lo.Format(time.RFC3339Nano), m.hi.Format(time.RFC3339Nano))
	}
}

// checkKernelExpiry checks every kernel element against the listed bans it
// overlaps: it must last at least as long as each of them (or the kernel
// stops dropping an address moat still lists), and not beyond the latest
// listed ban that covers each of its parts (or the kernel goes on
// dropping an address after moat's ban of it ended).
func (s *soak) checkKernelExpiry(jail, set string, els []kelem, lbs []*listedBan, at time.Time) {
	// The daemon lets an element's timeout be 2 s off the ban's expiry;
	// nft shows whole seconds and the list truncates to the second.
	const tol = 4 * time.Second
	for _, e := range els {
		var over []*listedBan
		for _, lb := range lbs {
			if !(lb.r.last.Less(e.r.first) || e.r.last.Less(lb.r.first)) {
				over = append(over, lb)
			}
		}
		if len(over) == 0 {
			continue // kernel-extra reports it
		}
		kexp := at.Add(e.left)
		for _, lb := range over {
			if e.never {
				continue
			}
			if lb.never {
				s.probs.fail("kernel-expiry", "jail %s: element %s of %s expires in %s, but moat lists %s (which it overlaps) with no end",
					jail, e.r, set, e.left.Round(time.Second), lb.b.IP)
			} else if kexp.Before(lb.exp.Add(-tol)) {
				s.probs.fail("kernel-expiry", "jail %s: element %s of %s expires at %s, but moat lists %s (which it overlaps) until %s",
					jail, e.r, set, kexp.Format(time.RFC3339), lb.b.IP, lb.exp.Format(time.RFC3339))
			}
		}
		// Each part of the element: the latest ban that covers it.
		cuts := []netip.Addr{e.r.first}
		for _, lb := range over {
			if e.r.first.Less(lb.r.first) {
				cuts = append(cuts, lb.r.first)
			}
			if n := lb.r.last.Next(); n.IsValid() && e.r.first.Less(n) && !e.r.last.Less(n) {
				cuts = append(cuts, n)
			}
		}
		sort.Slice(cuts, func(i, k int) bool { return cuts[i].Less(cuts[k]) })
		for i, c := range cuts {
			if i > 0 && c == cuts[i-1] {
				continue
			}
			never, latest, any := false, time.Time{}, false
			for _, lb := range over {
				if lb.r.first.Less(c) || lb.r.first == c {
					if !lb.r.last.Less(c) {
						any = true
						never = never || lb.never
						if lb.exp.After(latest) {
							latest = lb.exp
						}
					}
				}
			}
			if !any || never {
				continue
			}
			if e.never {
				s.probs.fail("kernel-expiry", "jail %s: element %s of %s has no end, but the listed bans covering %s end by %s",
					jail, e.r, set, c, latest.Format(time.RFC3339))
			} else if kexp.After(latest.Add(tol)) {
				s.probs.fail("kernel-expiry", "jail %s: element %s of %s expires at %s, after every listed ban covering %s (the latest ends %s)",
					jail, e.r, set, kexp.Format(time.RFC3339), c, latest.Format(time.RFC3339))
			}
		}
	}
}

type getMiss struct {
	lb     *listedBan
	addr   netip.Addr
	detail string
}

// getElements looks up each listed ban in the kernel with nft get element,
// 64 addresses at a time (one at a time to find which ones failed).
func (s *soak) getElements(set string, lbs []*listedBan) []getMiss {
	type pt struct {
		lb *listedBan
		a  netip.Addr
	}
	var pts []pt
	for _, lb := range lbs {
		pts = append(pts, pt{lb, lb.r.first})
		if lb.r.last != lb.r.first {
			pts = append(pts, pt{lb, lb.r.last})
		}
	}
	var miss []getMiss
	for i := 0; i < len(pts); i += 64 {
		batch := pts[i:min(i+64, len(pts))]
		var as []string
		for _, p := range batch {
			as = append(as, p.a.String())
		}
		if _, _, err := nftOut(s.ns, "get", "element", "inet", "moat", set, "{ "+strings.Join(as, ", ")+" }"); err == nil {
			continue
		}
		for _, p := range batch {
			if ok, detail := s.nftHas(set, p.a); !ok {
				miss = append(miss, getMiss{p.lb, p.a, detail})
			}
		}
	}
	return miss
}

// nftHas asks nft whether an element of set covers a, retrying what nft
// cannot tell (an interrupted dump).
func (s *soak) nftHas(set string, a netip.Addr) (bool, string) {
	var errOut string
	for i := 0; i < 10; i++ {
		var err error
		_, errOut, err = nftOut(s.ns, "get", "element", "inet", "moat", set, "{ "+a.String()+" }")
		if err == nil {
			return true, ""
		}
		if strings.Contains(errOut, "No such file or directory") {
			return false, firstLine(errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false, "nft could not tell: " + firstLine(errOut)
}

var dportRE = regexp.MustCompile(`th dport (\{ [^}]* \}|\S+)`)

// checkRules checks that the chain drops traffic from every set, on the
// ports of the configuration in force.
func (s *soak) checkRules() {
	out, err := nftCmd(s.ns, "list", "chain", "inet", "moat", "prerouting")
	if err != nil {
		s.probs.fail("rules", "nft list chain inet moat prerouting: %v: %s", err, firstLine(out))
		return
	}
	for _, j := range s.jails {
		want := strings.Trim(j.ports, "[]")
		if s.cfgAlt && j.altPorts != "" {
			want = strings.ReplaceAll(strings.Trim(j.altPorts, "[]"), `"`, "")
		}
		for _, fm := range []string{"v4", "v6"} {
			set := "@" + j.name + "_" + fm + " "
			found := false
			for _, l := range strings.Split(out, "\n") {
				if !strings.Contains(l, set) || !strings.Contains(l, " drop") {
					continue
				}
				found = true
				got := ""
				if sm := dportRE.FindStringSubmatch(l); sm != nil {
					got = strings.Trim(sm[1], "{ }")
				}
				if got != want {
					s.probs.fail("rules", "jail %s: the rule for %s drops on ports %q; the configuration in force says %q: %s", j.name, strings.TrimSpace(set), got, want, strings.TrimSpace(l))
				}
			}
			if !found {
				s.probs.fail("rules", "jail %s: no rule of chain prerouting drops traffic from %s", j.name, strings.TrimSpace(set))
			}
		}
	}
}
