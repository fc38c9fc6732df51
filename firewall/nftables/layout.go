package nftables

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/moatproj/moat/firewall"
)

const (
	chainName = "prerouting"
	// maxCleanName is the longest jail name used verbatim in set names.
	maxCleanName = 48
	// commentPrefix starts the comment of every rule moat writes; the rest
	// is the jail name (URL path escaped, so no quotes or spaces) and its
	// family and ports, so the layout can be
	// compared and the jails recovered from the kernel.
	commentPrefix = "moat jail="
	// maxPortRanges bounds a jail's port ranges (after merging), so its
	// anonymous set fits one netlink attribute.
	maxPortRanges = 1000
)

// family is one address family of a jail: its set and its rule.
type family struct {
	suffix  string // "_v4" or "_v6"
	keyType nftables.SetDatatype
	nfproto byte
	offset  uint32 // of the source address in the network header
	addrLen uint32
}

var families = [2]family{
	{suffix: "_v4", keyType: nftables.TypeIPAddr, nfproto: unix.NFPROTO_IPV4, offset: 12, addrLen: 4},
	{suffix: "_v6", keyType: nftables.TypeIP6Addr, nfproto: unix.NFPROTO_IPV6, offset: 8, addrLen: 16},
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// setBase turns a jail name into the stem of its set names. Names made only
// of ASCII letters, digits and single underscores, starting with a letter,
// at most 48 bytes, are kept as they are. Any other name becomes a cleaned
// stem, a double underscore and 12 hex digits of its SHA-256: clean names
// never contain "__" and hashed ones always do, so two jails never share a
// set.
func setBase(jail string) string {
	if isClean(jail) {
		return jail
	}
	var b strings.Builder
	for _, r := range jail {
		if b.Len() >= 24 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
				b.WriteByte('_')
			}
		}
	}
	stem := strings.TrimRight(b.String(), "_")
	if stem == "" || !isLetter(stem[0]) {
		stem = "j" + stem
	}
	sum := sha256.Sum256([]byte(jail))
	return stem + "__" + hex.EncodeToString(sum[:6])
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isClean(s string) bool {
	if s == "" || len(s) > maxCleanName || !isLetter(s[0]) || strings.Contains(s, "__") || strings.HasSuffix(s, "_") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

// SetName returns the name of the nftables set holding jail's bans of the
// given family (4 or 6), for tests and diagnostics.
func SetName(jail string, ipVersion int) string {
	if ipVersion == 6 {
		return setBase(jail) + families[1].suffix
	}
	return setBase(jail) + families[0].suffix
}

// normPorts sorts and merges port ranges so that the anonymous interval
// set built from them has no overlapping elements.
func normPorts(ports []firewall.PortRange) []firewall.PortRange {
	ps := slices.Clone(ports)
	for i, p := range ps {
		if p.First > p.Last {
			ps[i].First, ps[i].Last = p.Last, p.First
		}
	}
	slices.SortFunc(ps, func(a, b firewall.PortRange) int { return int(a.First) - int(b.First) })
	var out []firewall.PortRange
	for _, p := range ps {
		if n := len(out); n > 0 && int(p.First) <= int(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, p.Last)
			continue
		}
		out = append(out, p)
	}
	return out
}

// comment is the rule comment for a jail; equal comments mean equal rules.
func comment(j firewall.Jail, fam int) string {
	var b strings.Builder
	b.WriteString(commentPrefix)
	b.WriteString(url.PathEscape(j.Name))
	b.WriteString(" family=")
	b.WriteString(strings.TrimPrefix(families[fam].suffix, "_"))
	if ps := normPorts(j.Ports); len(ps) > 0 {
		b.WriteString(" ports=")
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(p.First)))
			if p.Last != p.First {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(int(p.Last)))
			}
		}
	}
	return b.String()
}

// jailFromComment recovers the jail name from a rule comment.
func jailFromComment(c string) (string, bool) {
	rest, ok := strings.CutPrefix(c, commentPrefix)
	if !ok {
		return "", false
	}
	esc, _, _ := strings.Cut(rest, " ")
	name, err := url.PathUnescape(esc)
	return name, err == nil
}

func ruleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// wantComments is the multiset of rule comments the layout for jails has.
func wantComments(jails []firewall.Jail) []string {
	var cs []string
	for _, j := range jails {
		for fam := range families {
			cs = append(cs, comment(j, fam))
		}
	}
	slices.Sort(cs)
	return cs
}

// newSet describes jail's set of family fam. HasTimeout must be set on every
// Set passed to SetAddElements, or the kernel never sees element timeouts.
func newSet(t *nftables.Table, jail string, fam int) *nftables.Set {
	return &nftables.Set{
		Table:      t,
		Name:       setBase(jail) + families[fam].suffix,
		KeyType:    families[fam].keyType,
		Interval:   true,
		HasTimeout: true,
	}
}

// addRule queues the drop rule of jail j for family fam, referring to set,
// and the anonymous sets its port match needs.
//
//	meta nfproto ipv4 ip saddr @set [meta l4proto {tcp,udp} th dport {ports}] counter drop
//
// setIDs numbers the sets moat adds, which a transaction's rules refer to by
// ID. google/nftables would number a set given with ID 0 from a package
// variable it increments under each connection's own lock: a data race
// between two backends in one process (the race detector found it in the
// tests). So every set gets its ID here.
var setIDs atomic.Uint32

func nextSetID() uint32 {
	for {
		if id := setIDs.Add(1); id != 0 {
			return id
		}
	}
}

// anonSetName is the name of an anonymous set, which the kernel numbers.
const anonSetName = "__set%d"

func addRule(cc *nftables.Conn, t *nftables.Table, ch *nftables.Chain, j firewall.Jail, fam int, set *nftables.Set) error {
	f := families[fam]
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.offset, Len: f.addrLen},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
	ps := normPorts(j.Ports)
	if len(ps) > maxPortRanges {
		return fmt.Errorf("jail %q: %d port ranges, at most %d", j.Name, len(ps), maxPortRanges)
	}
	if len(ps) > 0 {
		protos := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetProto, ID: nextSetID(), Name: anonSetName}
		if err := cc.AddSet(protos, []nftables.SetElement{{Key: []byte{unix.IPPROTO_TCP}}, {Key: []byte{unix.IPPROTO_UDP}}}); err != nil {
			return fmt.Errorf("add protocol set: %w", err)
		}
		portSet := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: true, KeyType: nftables.TypeInetService, ID: nextSetID(), Name: anonSetName}
		var els []nftables.SetElement
		for _, p := range ps {
			els = append(els, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p.First)})
			if p.Last != 0xffff {
				els = append(els, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p.Last+1), IntervalEnd: true})
			}
		}
		if err := cc.AddSet(portSet, els); err != nil {
			return fmt.Errorf("add port set: %w", err)
		}
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: protos.Name, SetID: protos.ID},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: portSet.Name, SetID: portSet.ID},
		)
	}
	exprs = append(exprs, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	cc.AddRule(&nftables.Rule{
		Table:    t,
		Chain:    ch,
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment(j, fam)),
	})
	return nil
}
