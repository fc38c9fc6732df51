package filters

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxGroups is how many connection groups (<F-MLFID> values) a
// Stream keeps open at once, as fail2ban does; the oldest is forgotten
// first.
const DefaultMaxGroups = 100

// DefaultGroupAge is how long a Stream keeps a connection group after it
// opened (measured on the reference times given to Stream.Match).
const DefaultGroupAge = 5 * time.Minute

// Stream matches the lines of one log source in order, with the state
// fail2ban keeps between lines: the last maxlines lines for multi-line
// failregexes (<SKIPLINES>), and the groups of lines that share an
// <F-MLFID> (a connection id such as sshd's pid), whose captures add up
// until a line makes the group a failure, marks it <F-NOFAIL> or
// <F-MLFGAINED>, or forgets it (<F-MLFFORGET>). Its state is bounded by
// MaxGroups and the filter's maxlines.
//
// A Stream is not safe for concurrent use: use one per log source, from one
// goroutine. The Filter it came from may be shared.
type Stream struct {
	f *Filter
	// MaxGroups caps the open connection groups (DefaultMaxGroups);
	// GroupAge expires a group that old (DefaultGroupAge). Set them
	// before the first Match.
	MaxGroups int
	GroupAge  time.Duration
	// KeepMatches makes failures carry the lines they are made of
	// (Match.Lines), gathered per connection group as fail2ban does for
	// its matches; off, a Stream keeps no lines. Set it before the
	// first Match.
	KeepMatches bool
	// KeepFields makes failures carry fail2ban's dictionary of them
	// (Match.Fields: every named group, merged over the connection
	// group), as fail2ban-regex -o row prints it. Set it before the
	// first Match.
	KeepFields bool

	lines  []string // the buffered lines (maxlines > 1), oldest first
	full   []string // the same as read, with their dates (KeepMatches)
	prev   []string // lines before the current one, for Result.Consumed
	joined []byte
	groups map[string]*mlGroup
	order  []mlKey // groups in the order they opened (entries may be stale)
	seq    uint64

	// single-line filters: the scan of the line being examined, and
	// those of ExamineLines with their workers' scratch space
	one      lineScan
	scratch1 scanScratch
	scans    []lineScan
	scratch  []*scanScratch
}

// mlGroup is what a connection group has gathered.
type mlGroup struct {
	g groups
	// user is the first user the group saw, and users2 is set once it
	// saw another one.
	user    string
	users2  bool
	pending bool // a failure was seen before the group had an address
	// matches and nofailMatches are the lines fail2ban lists as the
	// group's failure (Stream.KeepMatches only)
	matches, nofailMatches []string
	fields                 pyDict // KeepFields only
	opened                 time.Time
	seq                    uint64
}

type mlKey struct {
	id  string
	seq uint64
}

// Stream returns a new Stream over f, empty.
func (f *Filter) Stream() *Stream {
	return &Stream{f: f, MaxGroups: DefaultMaxGroups, GroupAge: DefaultGroupAge}
}

// Match reports whether line, read after the lines given before, is a
// failure; see Filter.Match for Time. A failure can be made of several
// lines: the address may come from an earlier line of the same connection.
func (s *Stream) Match(line string, ref time.Time) (Match, bool) {
	var r Result
	s.examine(line, ref, &r, false)
	return r.Match, r.Failure
}

// Examine is Match with the details of Filter.Examine: the first failregex
// that matches decides, as in fail2ban's daemon and fail2ban-regex -o.
func (s *Stream) Examine(line string, ref time.Time) Result {
	var r Result
	s.examine(line, ref, &r, false)
	return r
}

// ExamineAll is Examine as fail2ban-regex runs a filter for its report
// (without -o): every failregex is tried on the line, each match adds to
// the connection group in turn, and Result.Hits lists them all. The line
// counts as ignored when any hit is <F-NOFAIL> or an ignoreregex matched,
// else as matched when there is any hit. Result.Failregex, Match and
// Failure are those of the first hit that is a failure.
func (s *Stream) ExamineAll(line string, ref time.Time) Result {
	var r Result
	s.examine(line, ref, &r, true)
	return r
}

// OpenGroups is how many connection groups the Stream holds now.
func (s *Stream) OpenGroups() int { return len(s.groups) }

// Hit is one failregex match that ExamineAll reports.
type Hit struct {
	// Failregex is the index of the failregex.
	Failregex int
	// Match is the failure the match makes (with the captures of its
	// connection group); Failure says whether it is one.
	Match   Match
	Failure bool
	// Host is the host text of the match or its group: an address, a
	// name, or "" when the group has no address yet (Pending).
	Host string
	// NoFail is set for an <F-NOFAIL> or <F-MLFGAINED> match.
	NoFail bool
	// Pending is set when the match has no address or id yet: its
	// connection group counts it once a later line gives one.
	Pending bool
}

// examine is Match, Examine (all false) and ExamineAll (all true). A
// single-line filter's line goes through scan, the matching loop Filter.Match
// also runs, then apply (the connection groups); a multi-line filter's
// through the buffer of its last maxlines lines, below.
func (s *Stream) examine(line string, ref time.Time, res *Result, all bool) {
	f := s.f
	if f.maxLines <= 1 {
		s.one.keep = s.KeepFields
		f.scan(line, ref, streamMode(all), res, &s.one, &s.scratch1)
		s.apply(&s.one, ref, res, all)
		return
	}
	// A multi-line filter: count the buffered lines this line's match
	// takes away, as fail2ban-regex does (the oldest of a full buffer
	// would go anyway).
	before := append(s.prev[:0], s.lines...)
	s.prev = before
	if len(before) >= f.maxLines {
		before = before[1:]
	}
	defer func() {
		for _, l := range before {
			if !slices.Contains(s.lines, l) {
				res.Consumed = append(res.Consumed, l)
			}
		}
	}()
	res.Failregex = -1
	line, ds, de, t := f.undate(line, ref, res)
	// org is the buffer the failregexes run on, as lines; body is the
	// same with '\n' after each line.
	s.lines = append(s.lines, line[:ds]+line[de:])
	if s.KeepMatches {
		// The lines as read, beside the buffer (for Match.Lines).
		s.full = append(s.full, line)
		if len(s.full) > len(s.lines) {
			s.full = s.full[len(s.full)-len(s.lines):]
		}
	}
	if n := len(s.lines) - f.maxLines; n > 0 {
		s.lines = append(s.lines[:0], s.lines[n:]...)
		if len(s.full) > len(s.lines) {
			s.full = append(s.full[:0], s.full[len(s.full)-len(s.lines):]...)
		}
	}
	org := slices.Clone(s.lines)
	body := s.join(org)
	if f.ignoreFirst() && f.ignores(body[:len(body)-1]) {
		res.Ignored = true
		return
	}
	var pg groups
	if f.pref != nil {
		plain := body[:len(body)-1]
		ok, cs, ce := f.pref.match(plain, &pg)
		if !ok {
			return
		}
		res.PrefMatched = true
		if cs >= 0 && ce > cs {
			content := string(plain[cs:ce])
			s.lines = append(s.lines[:0], content)
			body = append([]byte(content), '\n')
		}
	}
	if f.gate != nil && !bytes.Contains(body, f.gate) {
		return
	}
	for i, r := range f.fail {
		if all && i > 0 {
			// An earlier match took its lines out of the buffer:
			// the next failregexes see what is left.
			body = s.join(s.lines)
		}
		if !r.prefilter(body) {
			continue
		}
		var fg groups
		if ok, _, _ := r.match(body, &fg); !ok {
			continue
		}
		host := hostOf(&fg)
		if !all {
			res.Failregex, res.Host = i, host
		}
		mi, ui := splitMatched(body, &fg, org)
		matched := pick(org, mi)
		s.lines = append(s.lines[:0], pick(org, ui)...)
		var lines []string
		if s.KeepMatches {
			// With a prefregex the buffer held the content only: the
			// lines go without their dates.
			lines = matched
			if full := pick(s.full, mi); f.pref == nil && full != nil {
				lines = full
			}
			s.full = pick(s.full, ui)
		}
		if len(f.ignore) > 0 && f.ignores([]byte(strings.Join(matched, "\n"))) {
			res.Ignored = true
			if !all {
				return
			}
			continue
		}
		fg.merge(&pg)
		var fields pyDict
		if s.KeepFields {
			pd, _ := f.pref.pyGroupsOrNil(body[:len(body)-1])
			fields = withFields(pd, r, body)
		}
		if s.settle(i, &fg, host, t, ref, res, all, lines, fields) {
			return
		}
	}
}

// apply is the rest of examining a scanned line, into the res scan
// filled: its matches, in order, against the connection groups.
func (s *Stream) apply(sc *lineScan, ref time.Time, res *Result, all bool) {
	for k := range sc.hits {
		h := &sc.hits[k]
		if !all {
			res.Failregex, res.Host = h.i, h.host
		}
		if h.ignored {
			res.Ignored = true
			if !all {
				return
			}
			continue
		}
		var lines []string
		if s.KeepMatches {
			lines = []string{sc.line}
		}
		if s.settle(h.i, &h.g, h.host, sc.t, ref, res, all, lines, h.fields) {
			return
		}
	}
}

// ExamineLines examines lines in order into out (as long as lines), as
// Examine (all false) or ExamineAll (all true) would one by one. For a
// single-line filter the matching, which needs no earlier line, runs on
// up to workers goroutines; only the connection groups are then kept in
// order. A multi-line filter examines one line after the other.
func (s *Stream) ExamineLines(lines []string, ref time.Time, all bool, workers int, out []Result) {
	if s.f.maxLines > 1 || workers <= 1 || len(lines) < 2*scanBlock {
		for i, l := range lines {
			out[i] = Result{}
			s.examine(l, ref, &out[i], all)
		}
		return
	}
	if cap(s.scans) < len(lines) {
		s.scans = make([]lineScan, len(lines))
	}
	scans := s.scans[:len(lines)]
	for len(s.scratch) < workers {
		s.scratch = append(s.scratch, &scanScratch{})
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(sp *scanScratch) {
			defer wg.Done()
			for {
				lo := int(next.Add(scanBlock)) - scanBlock
				if lo >= len(lines) {
					return
				}
				for i := lo; i < min(lo+scanBlock, len(lines)); i++ {
					scans[i].keep = s.KeepFields
					s.f.scan(lines[i], ref, streamMode(all), &out[i], &scans[i], sp)
				}
			}
		}(s.scratch[w])
	}
	wg.Wait()
	for i := range scans {
		s.apply(&scans[i], ref, &out[i], all)
	}
}

// scanBlock is how many lines an ExamineLines worker takes at a time.
const scanBlock = 64

// settle applies failregex i's match (captures g, with the prefregex's,
// and the host text it took) to the stream's connection groups and fills
// res. It reports whether the line is decided: in first-match mode (all
// false) the first match that is not a wrong one (no address, id or
// connection) decides; ExamineAll goes on and lists every match.
func (s *Stream) settle(i int, fg *groups, host string, t, ref time.Time, res *Result, all bool, lines []string, fields pyDict) bool {
	g := fg
	var grp *mlGroup
	nofail := false
	if fg.set[gMLFID] {
		grp, nofail = s.merge(fg.val[gMLFID], fg, ref, lines, fields)
		g = &grp.g
	} else {
		nofail = fg.set[gNoFail]
	}
	if nofail && !all {
		return true
	}
	m, ok, id := result2(g, t)
	if s.KeepMatches && (ok || m.ID != "") {
		if grp != nil {
			m.Lines = slices.Clone(grp.matches)
		} else {
			m.Lines = slices.Clone(lines)
		}
	}
	if s.KeepFields && (ok || m.ID != "") {
		if grp != nil {
			fields = grp.fields
		}
		m.Fields = []Field(fields.clone())
	}
	if !id && grp == nil {
		// No address, id or connection: fail2ban reports the
		// failregex as wrong and tries the next one.
		if !all {
			res.Failregex, res.Host = -1, ""
		}
		return false
	}
	if !id {
		// A failure of a connection whose address is not known
		// yet: the group counts it once a later line gives one.
		grp.pending = true
		if !all {
			return true
		}
		m.Time = t
	}
	if grp != nil && host == "" {
		host = hostOf(g)
	}
	if !all {
		res.Match, res.Failure = m, ok
		return true
	}
	res.Hits = append(res.Hits, Hit{Failregex: i, Match: m, Failure: ok && !nofail, Host: host, NoFail: nofail, Pending: !id})
	if ok && !nofail && res.Failregex < 0 {
		res.Failregex, res.Match, res.Failure, res.Host = i, m, true, host
	}
	return false
}

// hostOf is the host text of captures: the address or name, or "".
func hostOf(g *groups) string {
	for _, k := range [...]int{gIP4, gIP6, gDNS} {
		if g.set[k] && g.val[k] != "" {
			return g.val[k]
		}
	}
	return ""
}

// join writes lines, each followed by '\n', into s.joined.
func (s *Stream) join(lines []string) []byte {
	b := s.joined[:0]
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\n')
	}
	s.joined = b
	return b
}

// splitMatched splits org into the lines a multi-line match used and the
// rest (before and after it, and those its <SKIPLINES> spanned), which stay
// buffered; it gives them as indexes into org. text is org joined (or a
// prefregex's content, counted in lines of org as fail2ban does).
func splitMatched(text []byte, g *groups, org []string) (matched, unmatched []int) {
	if len(org) <= 1 {
		return upTo(0, len(org)), nil
	}
	start, end := g.start, g.end
	first := bytes.LastIndexByte(text[:min(start+1, len(text))], '\n') + 1
	last := len(text)
	if end > 0 {
		if k := bytes.IndexByte(text[end-1:], '\n'); k >= 0 {
			last = end - 1 + k + 1
		}
	}
	lc1 := min(bytes.Count(text[:first], []byte{'\n'}), len(org))
	lc2 := min(max(bytes.Count(text[:last], []byte{'\n'}), lc1), len(org))
	matched = upTo(lc1, lc2)
	unmatched = upTo(0, lc1)
	var skipped []string
	for _, sp := range g.skips {
		skipped = append(skipped, strings.Split(strings.TrimSuffix(string(text[sp[0]:sp[1]]), "\n"), "\n")...)
	}
	n := 0
	for _, sk := range skipped {
		if sk == "" && len(skipped) == 1 {
			break
		}
		for j := n; j < len(matched); j++ {
			if org[matched[j]] == sk {
				unmatched = append(unmatched, matched[j])
				matched = append(matched[:j], matched[j+1:]...)
				n = j
				break
			}
		}
	}
	unmatched = append(unmatched, upTo(lc2, len(org))...)
	return matched, unmatched
}

// upTo is the indexes from i to j (not included).
func upTo(i, j int) []int {
	out := make([]int, 0, max(0, j-i))
	for ; i < j; i++ {
		out = append(out, i)
	}
	return out
}

// pick returns the elements of l at idx (nil when l is shorter).
func pick(l []string, idx []int) []string {
	out := make([]string, 0, len(idx))
	for _, i := range idx {
		if i >= len(l) {
			return nil
		}
		out = append(out, l[i])
	}
	return out
}

// merge adds the captures of cur to the connection group id and returns
// the merged captures and whether they are no failure. It follows
// fail2ban: <F-MLFGAINED> (a success) and <F-NOFAIL> make the line no
// failure unless the group had a failure waiting for its address or saw
// more than one user; <F-MLFFORGET> closes the group after this line.
func (s *Stream) merge(id string, cur *groups, now time.Time, lines []string, fields pyDict) (*mlGroup, bool) {
	gained := cur.set[gMLFGained]
	if gained && !cur.set[gNoFail] {
		cur.set[gNoFail], cur.val[gNoFail] = true, cur.val[gMLFGained]
	}
	nofail := cur.set[gNoFail]
	forget := cur.set[gMLFForget]
	cur.set[gMLFForget], cur.val[gMLFForget] = false, ""
	user := ""
	if cur.set[gUser] {
		user = cur.val[gUser]
	}
	e := s.lookup(id, now)
	if e != nil {
		if user != "" {
			if e.user == "" {
				e.user = user
			} else if e.user != user {
				e.users2 = true
			}
		}
		wasNoFail := e.g.set[gNoFail] || e.g.set[gMLFGained]
		e.g.set[gNoFail], e.g.set[gMLFGained] = false, false
		if gained {
			e.pending = false
		}
		if !wasNoFail && !e.pending {
			// The lines of a failure already reported are not
			// matches of the next one.
			e.matches = nil
		}
		for i := range cur.set {
			if cur.set[i] {
				e.g.set[i], e.g.val[i] = true, cur.val[i]
			}
		}
		if forget {
			delete(s.groups, id)
		}
		if s.KeepFields {
			mergeFields(e, fields, true, forget)
		}
	} else {
		e = &mlGroup{g: *cur, opened: now}
		e.g.skips = nil
		e.user = user
		if !forget {
			s.open(id, e)
		}
		if s.KeepFields {
			mergeFields(e, fields, false, forget)
		}
	}
	if e.pending || e.users2 {
		e.pending = false
		e.g.set[gNoFail], e.g.set[gMLFGained] = false, false
		nofail, gained = false, false
		e.fields.pop("nofail")
		e.fields.pop("mlfgained")
	}
	if s.KeepMatches {
		// fail2ban's matches: a failure takes the lines its group held
		// back while it looked like no failure, then its own (but for a
		// success, which ends the failures).
		switch {
		case !nofail:
			m := append(e.nofailMatches, e.matches...)
			if !gained {
				m = append(m, lines...)
			}
			e.matches, e.nofailMatches = m, nil
		case !forget:
			e.nofailMatches = append(e.nofailMatches, lines...)
		}
	}
	return e, e.g.set[gNoFail]
}

// lookup returns the open group id, or nil (also when it has expired).
func (s *Stream) lookup(id string, now time.Time) *mlGroup {
	e := s.groups[id]
	if e == nil {
		return nil
	}
	if s.GroupAge > 0 && now.Sub(e.opened) >= s.GroupAge {
		delete(s.groups, id)
		return nil
	}
	return e
}

// open stores a new group, forgetting the oldest ones when MaxGroups are
// open (and, while at it, those that have expired).
func (s *Stream) open(id string, e *mlGroup) {
	if s.groups == nil {
		s.groups = map[string]*mlGroup{}
	}
	max := s.MaxGroups
	if max <= 0 {
		max = DefaultMaxGroups
	}
	for len(s.groups) >= max && len(s.order) > 0 {
		k := s.order[0]
		s.order = s.order[1:]
		if old := s.groups[k.id]; old != nil && old.seq == k.seq {
			delete(s.groups, k.id)
		}
	}
	s.seq++
	e.seq = s.seq
	s.groups[id] = e
	s.order = append(s.order, mlKey{id, e.seq})
	// Drop the stale keys of forgotten groups so order stays bounded.
	if len(s.order) > 2*max+16 {
		live := s.order[:0]
		for _, k := range s.order {
			if g := s.groups[k.id]; g != nil && g.seq == k.seq {
				live = append(live, k)
			}
		}
		s.order = append([]mlKey(nil), live...)
	}
}

// result2 is result for merged captures, where <F-NOFAIL> has already
// been decided; it also reports whether they hold a failure id at all (an
// address, a host name or an <F-ID>).
func result2(g *groups, t time.Time) (Match, bool, bool) {
	hasID := false
	for _, k := range [...]int{gIP4, gIP6, gDNS, gFID} {
		if g.set[k] {
			hasID = true
		}
	}
	if !hasID {
		return Match{}, false, false
	}
	c := *g
	c.set[gNoFail], c.set[gMLFGained] = false, false
	m, ok := result(&c, t)
	return m, ok, true
}
