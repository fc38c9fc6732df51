package filters

import (
	"bytes"
	"slices"
	"strings"
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

	lines  []string // the buffered lines (maxlines > 1), oldest first
	prev   []string // lines before the current one, for Result.Consumed
	joined []byte
	body   []byte // a single-line prefregex's content and '\n'
	groups map[string]*mlGroup
	order  []mlKey // groups in the order they opened (entries may be stale)
	seq    uint64
}

// mlGroup is what a connection group has gathered.
type mlGroup struct {
	g groups
	// user is the first user the group saw, and users2 is set once it
	// saw another one.
	user    string
	users2  bool
	pending bool // a failure was seen before the group had an address
	opened  time.Time
	seq     uint64
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

func (s *Stream) examine(line string, ref time.Time, res *Result, all bool) {
	f := s.f
	if f.maxLines > 1 {
		// Count the buffered lines this line's match takes away, as
		// fail2ban-regex does (the oldest of a full buffer would go
		// anyway).
		before := append(s.prev[:0], s.lines...)
		s.prev = before
		if len(before) >= f.maxLines {
			before = before[1:]
		}
		defer func() {
			for _, l := range before {
				if !slices.Contains(s.lines, l) {
					res.Consumed++
				}
			}
		}()
	}
	res.Failregex = -1
	line = strings.TrimRight(line, "\r\n")
	ds, de, t, ok := f.date(line, ref, f.loc)
	res.HasDate = ok
	if !ok || ds == de {
		t = ref // an optional date pattern that matched nothing
	}
	res.Match.Time = t
	multi := f.maxLines > 1
	// org is the buffer the failregexes run on, as lines (multi-line
	// filters only); buf is the same with '\n' after each line.
	var org []string
	var buf []byte
	if multi {
		s.lines = append(s.lines, line[:ds]+line[de:])
		if n := len(s.lines) - f.maxLines; n > 0 {
			s.lines = append(s.lines[:0], s.lines[n:]...)
		}
		org = s.lines
		buf = s.join(org)
	} else {
		buf = append(append(append(s.joined[:0], line[:ds]...), line[de:]...), '\n')
		s.joined = buf
	}
	// single-line regexes see the text without its final newline (Python's
	// $ matches before it, Go's does not).
	plain := buf[:len(buf)-1]
	if f.lines != nil && !f.lines.mayMatch(plain) {
		if all && f.pref != nil {
			res.PrefMatched = f.pref.matches(plain)
		}
		return
	}

	if len(f.ignore) > 0 && len(f.ignore) < len(f.fail)-2 {
		for _, ig := range f.ignore {
			if ig.matches(plain) {
				res.Ignored = true
				return
			}
		}
	}
	var pg groups
	body := buf
	if f.pref != nil {
		ok, cs, ce := f.pref.match(plain, &pg)
		if !ok {
			return
		}
		res.PrefMatched = true
		if cs >= 0 && ce > cs {
			if multi {
				content := string(plain[cs:ce])
				s.lines = append(s.lines[:0], content)
				body = append([]byte(content), '\n')
			} else {
				s.body = append(append(s.body[:0], plain[cs:ce]...), '\n')
				body = s.body
			}
		}
	}
	if f.gate != nil && !bytes.Contains(body, f.gate) {
		return
	}
	for i, r := range f.fail {
		if all && multi && i > 0 {
			// An earlier match took its lines out of the buffer:
			// the next failregexes see what is left.
			body = s.join(s.lines)
		}
		text := body
		if !multi {
			text = body[:len(body)-1]
		}
		if !r.prefilter(text) {
			continue
		}
		var fg groups
		ok, _, _ := r.match(text, &fg)
		if !ok {
			continue
		}
		if !all {
			res.Failregex = i
		}
		host := ""
		for _, k := range [...]int{gIP4, gIP6, gDNS} {
			if fg.set[k] && fg.val[k] != "" {
				host = fg.val[k]
				break
			}
		}
		if !all {
			res.Host = host
		}
		matched, unmatched := splitMatched(text, &fg, org, multi)
		if len(f.ignore) > 0 {
			ig := text
			if multi {
				ig = []byte(strings.Join(matched, "\n"))
			}
			ignored := false
			for _, re := range f.ignore {
				if re.matches(ig) {
					ignored = true
					break
				}
			}
			if ignored {
				res.Ignored = true
				if !all {
					if multi {
						s.lines = append(s.lines[:0], unmatched...)
					}
					return
				}
				continue
			}
		}
		if multi {
			s.lines = append(s.lines[:0], unmatched...)
		}
		fg.merge(&pg)
		g := &fg
		var grp *mlGroup
		nofail := false
		if fg.set[gMLFID] {
			grp, nofail = s.merge(fg.val[gMLFID], &fg, ref)
			g = &grp.g
		} else {
			nofail = fg.set[gNoFail]
		}
		if nofail && !all {
			return
		}
		m, ok, id := result2(g, t)
		if !id && grp == nil {
			// No address, id or connection: fail2ban reports the
			// failregex as wrong and tries the next one.
			if !all {
				res.Failregex, res.Host = -1, ""
			}
			continue
		}
		if !id {
			// A failure of a connection whose address is not known
			// yet: the group counts it once a later line gives one.
			grp.pending = true
			if !all {
				return
			}
		}
		if grp != nil && host == "" {
			for _, k := range [...]int{gIP4, gIP6, gDNS} {
				if g.set[k] && g.val[k] != "" {
					host = g.val[k]
					break
				}
			}
		}
		if !all {
			res.Match, res.Failure = m, ok
			return
		}
		res.Hits = append(res.Hits, Hit{Failregex: i, Match: m, Failure: ok && !nofail, Host: host, NoFail: nofail, Pending: !id})
		if ok && !nofail && res.Failregex < 0 {
			res.Failregex, res.Match, res.Failure, res.Host = i, m, true, host
		}
	}
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
// buffered. text is org joined (or a prefregex's content, counted in lines
// of org as fail2ban does).
func splitMatched(text []byte, g *groups, org []string, multi bool) (matched, unmatched []string) {
	if !multi || len(org) <= 1 {
		return org, nil
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
	matched = append([]string(nil), org[lc1:lc2]...)
	unmatched = append([]string(nil), org[:lc1]...)
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
			if matched[j] == sk {
				unmatched = append(unmatched, matched[j])
				matched = append(matched[:j], matched[j+1:]...)
				n = j
				break
			}
		}
	}
	unmatched = append(unmatched, org[lc2:]...)
	return matched, unmatched
}

// merge adds the captures of cur to the connection group id and returns
// the merged captures and whether they are no failure. It follows
// fail2ban: <F-MLFGAINED> (a success) and <F-NOFAIL> make the line no
// failure unless the group had a failure waiting for its address or saw
// more than one user; <F-MLFFORGET> closes the group after this line.
func (s *Stream) merge(id string, cur *groups, now time.Time) (*mlGroup, bool) {
	gained := cur.set[gMLFGained]
	if gained && !cur.set[gNoFail] {
		cur.set[gNoFail], cur.val[gNoFail] = true, cur.val[gMLFGained]
	}
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
		e.g.set[gNoFail], e.g.set[gMLFGained] = false, false
		if gained {
			e.pending = false
		}
		for i := range cur.set {
			if cur.set[i] {
				e.g.set[i], e.g.val[i] = true, cur.val[i]
			}
		}
		if forget {
			delete(s.groups, id)
		}
	} else {
		e = &mlGroup{g: *cur, opened: now}
		e.g.skips = nil
		e.user = user
		if !forget {
			s.open(id, e)
		}
	}
	if e.pending || e.users2 {
		e.pending = false
		e.g.set[gNoFail], e.g.set[gMLFGained] = false, false
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
