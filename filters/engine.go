package filters

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

//go:embed builtin/*.conf
var builtinFS embed.FS

// ErrNoFilter is wrapped by Loader.Load when no filter has the name asked for.
var ErrNoFilter = errors.New("no such filter")

// Builtins returns the names of the filters compiled into moat, sorted.
func Builtins() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	var names []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok || n == "common" {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Loader finds and compiles filters. The zero value loads built-ins in
// time.Local. A Loader is safe for concurrent use as long as its fields are
// not changed.
type Loader struct {
	// Dirs are filter.d-style directories searched, in order, for
	// <dir>/<name>.conf and <dir>/<name>.local before the built-ins.
	Dirs []string
	// Location is the zone of dates written without one (nil: time.Local).
	Location *time.Location
	// MatchTimeout bounds one match of a backtracking (regexp2) regex,
	// in wall time: a match that runs longer counts as no match (see
	// Filter.Timeouts). 0 means DefaultMatchTimeout.
	MatchTimeout time.Duration
}

// Load compiles the filter named by spec: a built-in or Dirs name ("sshd"),
// a name with options ("sshd[mode=aggressive]"), or a path to a file (spec
// contains '/' or ends in ".conf"). An unknown name gives an error that
// wraps ErrNoFilter; a bad file or regex gives an error naming the file, the
// line and the regex.
func (l *Loader) Load(spec string) (*Filter, error) {
	src, err := Resolve(spec, l.Dirs)
	if err != nil {
		return nil, err
	}
	name, opts, _ := parseSpec(spec)
	doc := newIniDoc()
	display := name
	switch {
	case src.File == "":
		err = readIni(doc, builtinFS, "builtin/"+src.Builtin+".conf", 0)
	case strings.HasSuffix(src.File, ".local") && filepath.Base(src.File) != filepath.Base(name):
		// NAME.local alone in a filter.d: read as NAME.conf is, with its
		// .local (fail2ban's order).
		err = readIni(doc, rootFS{}, strings.TrimPrefix(strings.TrimSuffix(src.File, ".local")+".conf", "/"), 0)
	default:
		err = readIni(doc, rootFS{}, strings.TrimPrefix(src.File, "/"), 0)
		display = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(name), ".conf"), ".local")
	}
	if err != nil {
		return nil, fmt.Errorf("load filter %q: %w", spec, err)
	}
	f, err := l.build(display, doc, opts)
	if err != nil {
		return nil, fmt.Errorf("load filter %q: %w", spec, err)
	}
	f.source = src
	return f, nil
}

// Inline compiles a filter from regexes given directly (a jail's inline
// failregex/ignoreregex). Errors name the regex by its index.
func (l *Loader) Inline(name string, failregex, ignoreregex []string) (*Filter, error) {
	doc := newIniDoc()
	sec := doc.section("Definition")
	add := func(key string, list []string) {
		v := &iniValue{val: strings.Join(list, "\n"), file: "inline " + key}
		sec.set(key, v)
	}
	add("failregex", failregex)
	add("ignoreregex", ignoreregex)
	f, err := l.build(name, doc, nil)
	if err != nil {
		return nil, fmt.Errorf("inline filter %q: %w", name, err)
	}
	return f, nil
}

// rootFS reads absolute paths (given without the leading '/') from the OS.
type rootFS struct{}

func (rootFS) Open(name string) (fs.File, error) { return os.Open("/" + name) }

func exists(rel string) bool {
	_, err := os.Stat("/" + rel)
	return err == nil
}

// parseSpec splits "name[key=value, key2="v"]" into the name and options.
func parseSpec(spec string) (string, map[string]string, error) {
	spec = strings.TrimSpace(spec)
	open := strings.IndexByte(spec, '[')
	if open < 0 || !strings.HasSuffix(spec, "]") {
		if spec == "" {
			return "", nil, errors.New("empty filter name")
		}
		return spec, nil, nil
	}
	name := strings.TrimSpace(spec[:open])
	opts, err := parseOptions(spec[open+1 : len(spec)-1])
	if err != nil {
		return "", nil, err
	}
	if name == "" {
		return "", nil, errors.New("empty filter name")
	}
	return name, opts, nil
}

// parseOptions reads `key=value, key2="v, w", key3='x'`.
func parseOptions(s string) (map[string]string, error) {
	opts := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("option %q: want key=value", s)
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimSpace(s[eq+1:])
		var val string
		if s != "" && (s[0] == '"' || s[0] == '\'') {
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return nil, fmt.Errorf("option %s: unterminated quote", key)
			}
			val, s = s[1:end+1], s[end+2:]
			s = strings.TrimSpace(s)
			if s != "" && s[0] != ',' {
				return nil, fmt.Errorf("option %s: want ',' after the quoted value", key)
			}
		} else {
			comma := strings.IndexByte(s, ',')
			if comma < 0 {
				comma = len(s)
			}
			val, s = strings.TrimSpace(s[:comma]), s[comma:]
		}
		s = strings.TrimPrefix(s, ",")
		opts[key] = val
	}
	return opts, nil
}

// Filter is a compiled filter. It is immutable and safe for concurrent use.
type Filter struct {
	name   string
	source Source
	loc    *time.Location
	date   dateFunc
	pref   *compiledRegex
	fail   []*compiledRegex
	ignore []*compiledRegex
	// gate is a literal every failregex requires (nil if none): a line
	// without it is no failure, whatever the regexes.
	gate []byte
	// lines, when set, rejects most lines no regex can match in one
	// pass (see lineGate); nil for multi-line filters.
	lines    *lineGate
	timeouts atomic.Int64
	// maxLines is the filter's maxlines: how many lines a multi-line
	// failregex sees at once (1: single-line).
	maxLines int
	// defs are the options the filter was built from, for the report
	// accessors of report.go (never read while matching).
	defs vars
}

// Name is the filter's name (the built-in or file name, without options).
func (f *Filter) Name() string { return f.name }

// Source is where the filter's definition was read: Resolve's answer
// (the zero Source for an inline filter).
func (f *Filter) Source() Source { return f.source }

// Timeouts counts matches abandoned because a backtracking regex ran past
// its time limit (such a line counts as not matched).
func (f *Filter) Timeouts() int64 { return f.timeouts.Load() }

// build compiles the [Definition] of doc with the given options.
func (l *Loader) build(name string, doc *iniDoc, opts map[string]string) (*Filter, error) {
	f := &Filter{name: name, loc: l.Location, date: findDate}
	if f.loc == nil {
		f.loc = time.Local
	}
	v := vars{doc: doc, sec: "Definition", opts: opts}
	f.defs = v
	lookup := func(key string) (string, bool, error) { return v.get(key) }
	f.maxLines = 1
	if ml, ok, err := v.get("maxlines"); err != nil {
		return nil, err
	} else if ok && strings.TrimSpace(ml) != "" {
		if ml, err = substituteTags(ml, lookup); err != nil {
			return nil, fmt.Errorf("maxlines: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(ml))
		if err != nil || n < 1 || n > maxMaxLines {
			return nil, fmt.Errorf("maxlines %q: want a whole number from 1 to %d", ml, maxMaxLines)
		}
		f.maxLines = n
	}
	multiline := false
	list := func(key string) ([]*compiledRegex, error) {
		raw, iv, ok := v.raw(key)
		if !ok {
			return nil, nil
		}
		var from []int
		file := "options"
		if iv != nil {
			from, file = iv.lines, iv.file
		}
		items, lines := splitList(raw, from)
		var out []*compiledRegex
		for i, item := range items {
			where := fmt.Sprintf("%s: %s #%d", file, key, len(out)+1)
			if lines[i] > 0 {
				where = fmt.Sprintf("%s:%d: %s", file, lines[i], key)
			}
			exp, err := v.interpolate(item, 0)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", where, item, err)
			}
			exp, err = substituteTags(exp, lookup)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", where, item, err)
			}
			// A tag or %(x)s may stand for several regexes.
			for _, one := range strings.Split(exp, "\n") {
				if one = strings.TrimSpace(one); one == "" {
					continue
				}
				cr, err := compileRegexML(item, one, where, &f.timeouts, multiline)
				if err != nil {
					return nil, err
				}
				out = append(out, cr)
			}
		}
		return out, nil
	}
	var err error
	multiline = f.maxLines > 1
	f.fail, err = list("failregex")
	multiline = false
	if err != nil {
		return nil, err
	}
	if len(f.fail) == 0 {
		return nil, errors.New("no failregex")
	}
	if f.ignore, err = list("ignoreregex"); err != nil {
		return nil, err
	}
	if dp, ok, err := v.get("datepattern"); err != nil {
		return nil, err
	} else if ok && strings.TrimSpace(dp) != "" {
		// fail2ban's common.conf writes datepattern = <lt_<logtype>/datepattern>.
		if dp, err = substituteTags(dp, lookup); err != nil {
			return nil, fmt.Errorf("datepattern: %w", err)
		}
		if f.date, err = compileDatePattern(dp); err != nil {
			return nil, err
		}
	}
	pref, err := list("prefregex")
	if err != nil {
		return nil, err
	}
	if len(pref) > 0 {
		f.pref = pref[0]
		if !f.pref.hasGroup("content") {
			return nil, fmt.Errorf("%s: prefregex %q has no <F-CONTENT>", f.pref.where, f.pref.src)
		}
	}
	f.gate = commonLiteral(f.fail)
	if l.MatchTimeout > 0 {
		for _, r := range append(append([]*compiledRegex{f.pref}, f.fail...), f.ignore...) {
			if r != nil && r.bt != nil {
				r.bt.MatchTimeout = l.MatchTimeout
			}
		}
	}
	f.lines = f.buildGate()
	if f.pref == nil || !f.pref.hasGroup(idGroups...) {
		for _, r := range f.fail {
			if !r.hasGroup(idGroups...) {
				return nil, fmt.Errorf("%s %q: no failure-id group: want <HOST>, <ADDR>, <IP4>, <IP6>, <DNS>, <SUBNET> or <F-ID>", r.where, r.src)
			}
		}
	}
	return f, nil
}

// ignoreFirst reports whether fail2ban checks the ignoreregexes on the
// whole line before the prefregex and the failregexes: when there are
// fewer of them than failregexes less two.
func (f *Filter) ignoreFirst() bool {
	return len(f.ignore) > 0 && len(f.ignore) < len(f.fail)-2
}

// rejects reports whether text, a line less its date, is missed whatever
// the regexes, by the gates (c is the caller's DFA cache, or nil): the
// literal every failregex needs (in the line if it is in a prefregex's
// content; not where an ignoreregex checked first may still count the
// line ignored), then the lineGate, whose union holds those
// ignoreregexes.
func (f *Filter) rejects(text []byte, c *gateCache) bool {
	if f.gate != nil && !f.ignoreFirst() && !bytes.Contains(text, f.gate) {
		return true
	}
	switch {
	case f.lines == nil:
		return false
	case c != nil:
		return !f.lines.run(c, text)
	default:
		return !f.lines.mayMatch(text)
	}
}

// buildGate returns the lineGate of a single-line filter's failregexes
// (and of its ignoreregexes when scan checks them before the
// failregexes, as an ignored line is counted apart from a missed one), or
// nil when a regex has no RE2 form to put in it.
func (f *Filter) buildGate() *lineGate {
	if f.maxLines > 1 {
		return nil
	}
	rs := f.fail
	if f.ignoreFirst() {
		rs = append(slices.Clone(rs), f.ignore...)
	}
	var srcs []string
	for _, r := range rs {
		switch {
		case r.re != nil:
			srcs = append(srcs, r.re.String())
		case r.super != nil:
			srcs = append(srcs, r.super.String())
		default:
			return nil
		}
	}
	return newLineGate(srcs)
}

// maxMaxLines bounds a filter's maxlines (the lines a Stream buffers).
const maxMaxLines = 1000

// MaxLines is the filter's maxlines: how many lines its failregexes see at
// once. Above 1, only a Stream matches across lines.
func (f *Filter) MaxLines() int { return f.maxLines }

// Match reports whether line is a failure: a failregex matched (the first
// one that does decides, as in fail2ban), no ignoreregex matched, and the
// match gave an address (not a host name, which is never resolved) and was
// not marked <F-NOFAIL>. The Match's Time is the date in the line, or ref
// when it has none. Safe for concurrent use; it allocates only for a match.
func (f *Filter) Match(line string, ref time.Time) (Match, bool) {
	var r Result
	f.examine(line, ref, &r)
	return r.Match, r.Failure
}

// Result is what Examine learned about one line, for tools such as
// `moat regex` that report more than failures.
type Result struct {
	// Match is the failure; valid when Failure is true.
	Match Match
	// Failure is what Match returns.
	Failure bool
	// Failregex is the index (in Failregexes) of the failregex that
	// matched, or -1. A line can match and still be no failure: ignored,
	// <F-NOFAIL>, or a host name instead of an address.
	Failregex int
	// Ignored is set when an ignoreregex matched (see scan for when
	// fail2ban checks them).
	Ignored bool
	// HasDate is set when a date was found in the line; Match.Time is then
	// that date, else the reference time.
	HasDate bool
	// Host is the host text the failregex captured (an address or a name).
	Host string
	// Consumed is set by Stream.Examine and ExamineAll for a multi-line
	// filter: the earlier lines, still buffered before this one (without
	// their dates), that the buffer no longer holds after it (a match took
	// them). fail2ban-regex counts such lines as matched rather than
	// missed.
	Consumed []string
	// PrefMatched is set when the filter's prefregex matched the line
	// (by Stream.Examine and ExamineAll; a line no failregex can match
	// may skip it in Examine).
	PrefMatched bool
	// Hits are all the failregexes that matched, in order; set by
	// Stream.ExamineAll only.
	Hits []Hit
}

// Examine matches line like Match and reports the details. Safe for
// concurrent use.
func (f *Filter) Examine(line string, ref time.Time) Result {
	var r Result
	f.examine(line, ref, &r)
	return r
}

// Failregexes returns the failregexes as written (tags not expanded), in
// the order Result.Failregex counts them.
func (f *Filter) Failregexes() []string {
	out := make([]string, len(f.fail))
	for i, r := range f.fail {
		out[i] = r.src
	}
	return out
}

// Ignoreregexes returns the ignoreregexes as written.
func (f *Filter) Ignoreregexes() []string {
	out := make([]string, len(f.ignore))
	for i, r := range f.ignore {
		out[i] = r.src
	}
	return out
}

// examine is Match and Examine: the line on its own, without the state a
// Stream keeps. It runs scan, the one matching loop, in firstMatch mode:
// without connection groups the first failregex that matches decides.
func (f *Filter) examine(line string, ref time.Time, res *Result) {
	p := scanSpace.Get().(*pooledScan)
	if f.lines != nil {
		p.w.gate = f.lines.get()
	}
	f.scan(line, ref, firstMatch, res, &p.sc, &p.w)
	if f.lines != nil {
		f.lines.put(p.w.gate)
		p.w.gate = nil
	}
	sc := &p.sc
	// Only a Stream reports the prefregex (see Result.PrefMatched).
	res.PrefMatched = false
	if len(sc.hits) > 0 {
		h := &sc.hits[0]
		res.Failregex, res.Host = h.i, h.host
		if h.ignored {
			res.Ignored = true
		} else {
			res.Match, res.Failure = result(&h.g, sc.t)
			res.Match.Time = sc.t
		}
	}
	scanSpace.Put(p)
}

// pooledScan is the working space of Filter.examine.
type pooledScan struct {
	sc lineScan
	w  scanScratch
}

// scanSpace holds pooledScans (without a gate cache: a gate's caches
// belong to its filter, which keeps a free list of them).
var scanSpace = sync.Pool{New: func() any { return new(pooledScan) }}

// scanMode is how far down the failregexes scan goes.
type scanMode uint8

const (
	// firstMatch stops at the first failregex that matches: without
	// connection groups it decides (Filter.Match and Examine).
	firstMatch scanMode = iota
	// firstDecisive stops at the first match that settles the line in
	// a Stream: one ignored, or with an address, id, connection or
	// <F-NOFAIL> (Stream.Match and Examine).
	firstDecisive
	// allMatches tries every failregex (Stream.ExamineAll).
	allMatches
)

// streamMode is the scanMode of Stream.Examine (all false) or ExamineAll.
func streamMode(all bool) scanMode {
	if all {
		return allMatches
	}
	return firstDecisive
}

// lineScan is what scan finds in one line beside its Result: its
// failregex matches, in order (up to the one that decides, in a
// first-match mode), for the caller to make a Result of.
type lineScan struct {
	keep bool   // compute fields (Stream.KeepFields)
	line string // as read, less its line end
	t    time.Time
	hits []scanHit
}

// scanHit is one failregex match of a lineScan.
type scanHit struct {
	i       int
	g       groups // with the prefregex's captures, unless ignored
	host    string
	ignored bool // an ignoreregex matched the text the failregex matched
	fields  pyDict
}

// scanScratch is the working space of scan, for one goroutine.
type scanScratch struct {
	text []byte
	gate *gateCache
}

// scan is the matching loop of every single-line match (and of a
// Filter's, whatever its maxlines): the part of examining line that
// depends on no earlier line, that is the date, the gates, the
// prefregex, the ignoreregexes and the failregexes, in fail2ban's order,
// down the failregexes as far as mode says. It fills in res what needs
// no failregex match (the date, an ignoreregex checked first, the
// prefregex) and lists the matches in sc, of which Filter.examine and a
// Stream (apply, with its connection groups) make the rest of res. Safe
// for concurrent use (with a scratch space each).
func (f *Filter) scan(line string, ref time.Time, mode scanMode, res *Result, sc *lineScan, w *scanScratch) {
	sc.hits = sc.hits[:0]
	*res = Result{Failregex: -1}
	line, ds, de, t := f.undate(line, ref, res)
	sc.line, sc.t = line, t
	w.text = append(append(w.text[:0], line[:ds]...), line[de:]...)
	plain := w.text
	if f.lines != nil && w.gate == nil {
		w.gate = f.lines.newCache()
	}
	if f.rejects(plain, w.gate) {
		if mode == allMatches && f.pref != nil {
			res.PrefMatched = f.pref.matches(plain)
		}
		return
	}
	// fail2ban checks the ignoreregexes up front, on the whole line, when
	// there are fewer of them than failregexes less two; either way it
	// checks them again on the text a failregex matched (the
	// <F-CONTENT> with a prefregex). The result is the same but for
	// counting: an ignored line is counted as ignored, not missed.
	if f.ignoreFirst() && f.ignores(plain) {
		res.Ignored = true
		return
	}
	var pg groups
	var pd pyDict
	body := plain
	if f.pref != nil {
		ok, cs, ce := f.pref.match(plain, &pg)
		if !ok {
			return
		}
		res.PrefMatched = true
		if sc.keep {
			pd, _ = f.pref.pyGroups(plain)
			pd.pop("content")
		}
		if cs >= 0 && ce > cs {
			body = plain[cs:ce]
		}
	}
	if f.gate != nil && !bytes.Contains(body, f.gate) {
		return
	}
	for i, r := range f.fail {
		if !r.prefilter(body) {
			continue
		}
		var fg groups
		if ok, _, _ := r.match(body, &fg); !ok {
			continue
		}
		h := scanHit{i: i, host: hostOf(&fg), ignored: f.ignores(body)}
		if !h.ignored {
			fg.merge(&pg)
			if sc.keep {
				h.fields = withFields(pd, r, body)
			}
		}
		h.g = fg
		sc.hits = append(sc.hits, h)
		// A Stream's first-match mode stops at the match that decides:
		// settle goes past a match only when it has no address, id,
		// connection or <F-NOFAIL>.
		if mode == firstMatch || mode == firstDecisive && (h.ignored || fg.set[gMLFID] || fg.set[gNoFail] || hasID(&fg)) {
			return
		}
	}
}

// undate finds line's date: it returns the line less its line end, the
// bounds of the date in it and the time the line counts at (its date, or
// ref when it has none), and sets res's HasDate and Match.Time.
func (f *Filter) undate(line string, ref time.Time, res *Result) (string, int, int, time.Time) {
	line = trimEOL(line)
	ds, de, t, ok := f.date(line, ref, f.loc)
	res.HasDate = ok
	if !ok || ds == de {
		// An optional date pattern that matched nothing: fail2ban
		// takes the line as undated.
		t = ref
	}
	res.Match.Time = t
	return line, ds, de, t
}

// ignores reports whether an ignoreregex matches text.
func (f *Filter) ignores(text []byte) bool {
	for _, ig := range f.ignore {
		if ig.matches(text) {
			return true
		}
	}
	return false
}

// hasID reports whether captures hold a failure id: an address, a host
// name or an <F-ID>.
func hasID(g *groups) bool {
	return g.set[gIP4] || g.set[gIP6] || g.set[gDNS] || g.set[gFID]
}

// result turns captured groups into a Match.
func result(g *groups, t time.Time) (Match, bool) {
	// <F-MLFGAINED> marks a success (fail2ban forgets the connection's
	// failures); like <F-NOFAIL> it is no failure.
	if g.set[gNoFail] || g.set[gMLFGained] {
		return Match{}, false
	}
	m := Match{Time: t, User: g.val[gUser], ID: g.val[gFID]}
	var s string
	switch {
	case g.set[gIP4] && g.val[gIP4] != "":
		s = g.val[gIP4]
	case g.set[gIP6] && g.val[gIP6] != "":
		s = g.val[gIP6]
	case g.set[gDNS] && g.val[gDNS] != "":
		// A host name: moat never resolves names.
		return Match{}, false
	case g.set[gFID] && g.val[gFID] != "":
		// No address: fail2ban takes the <F-ID> as one. One that is no
		// address is no failure moat can ban, but keeps its ID.
		s = g.val[gFID]
		if _, err := netip.ParseAddr(s); err != nil {
			return Match{Time: t, User: m.User, ID: s}, false
		}
	default:
		return Match{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil && strings.HasSuffix(s, ":") && !strings.HasSuffix(s, "::") {
		a, err = netip.ParseAddr(s[:len(s)-1])
	}
	if err != nil || a.IsUnspecified() {
		return Match{}, false
	}
	m.Addr = a.Unmap().WithZone("")
	if g.set[gCIDR] && g.val[gCIDR] != "" {
		bits, err := strconv.Atoi(g.val[gCIDR])
		if err == nil {
			if m.Addr.Is4() && a.Is4In6() && bits >= 96 {
				bits -= 96
			}
			if p, err := m.Addr.Prefix(bits); err == nil {
				m.Prefix = p
			}
		}
	}
	return m, true
}
