package filters

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Date templates as fail2ban-regex reports them.
//
// fail2ban finds a line's date with a list of templates, each named after
// its pattern ("{^LN-BEG}(?:DAY )?MON Day %k:Minute:Second…"), and moves a
// template that wins towards the front of the list. fail2ban-regex prints
// the list, in its final order, with the lines each template found. moat
// finds dates its own way; DateTemplates rebuilds fail2ban's list from the
// filter's datepattern and replays fail2ban's choice and reordering so
// `moat regex` prints the same table. It is not used while matching.

// defaultTemplate is one of fail2ban's default date templates: its pattern
// (strptime directives) and its name.
type defaultTemplate struct {
	pattern, name string
}

// defaultTemplates are fail2ban's default date templates, in its order.
// The patterns are matched by moat's datepattern engine; the names are
// what fail2ban prints.
var defaultTemplates = []defaultTemplate{
	{`%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?`, ``},
	{`(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`, ``},
	{`(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?`, ``},
	{`%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S`, ``},
	{`%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?`, ``},
	{`%m/%d/%ExY:%H:%M:%S`, ``},
	{`%m-%d-%ExY %k:%M:%S(?:\.%f)?`, ``},
	{`EPOCH`, `Epoch`},
	{`{^LN-BEG}%H:%M:%S`, ``},
	{`^<%m/%d/%Exy@%H:%M:%S>`, ``},
	{`%Exy%Exm%Exd  ?%H:%M:%S`, ``},
	{`%b %d, %ExY %I:%M:%S %p`, ``},
	{`^%b-%d-%Exy %k:%M:%S`, ``},
	{`%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?`, ``},
	{`(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`, ``},
	{`(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`, ``},
	{`TAI64N`, `TAI64N`},
}

// directiveNames are the names fail2ban gives strptime directives in a
// template's name; a directive not listed keeps its %x spelling.
var directiveNames = map[string]string{
	"%": "%", "A": "DAYNAME", "B": "MONTH", "ExH": "Ex24hour", "ExM": "ExMinute",
	"ExS": "ExSecond", "ExY": "ExYear", "ExZ": "ExZone name", "Exd": "ExDay",
	"Exk": "Ex%k", "Exl": "Ex%l", "Exm": "ExMonth", "Exy": "ExYear2",
	"Exz": "ExZone offset", "H": "24hour", "I": "12hour", "M": "Minute",
	"S": "Second", "U": "Yearweek", "W": "Yearweek", "Y": "Year", "Z": "Zone name",
	"a": "DAY", "b": "MON", "d": "Day", "f": "Microseconds", "j": "Yearday",
	"m": "Month", "p": "AMPM", "w": "Weekday", "y": "Year2", "z": "Zone offset",
}

// directiveChars are the one-letter directives fail2ban knows.
const directiveChars = "dfHIGjmMSUwuVyYzAaBbpZ%WcxXkl"

// templateName names a pattern as fail2ban does: each directive replaced
// by its name.
func templateName(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		if strings.HasPrefix(p[i+1:], "Ex") && i+3 < len(p) && strings.IndexByte("ZzdmHklMSYy", p[i+3]) >= 0 {
			d := p[i+1 : i+4]
			n, ok := directiveNames[d]
			if !ok {
				n = "%" + d
			}
			b.WriteString(n)
			i += 3
			continue
		}
		if strings.IndexByte(directiveChars, p[i+1]) >= 0 {
			d := p[i+1 : i+2]
			n, ok := directiveNames[d]
			if !ok {
				n = "%" + d
			}
			b.WriteString(n)
			i++
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// noWordBoundBegin reports whether a pattern starts with ^, (^, (?:^ or
// ** (possibly after opening parentheses and a flag group): fail2ban then
// adds no word boundary before it.
func noWordBoundBegin(p string) bool {
	q := strings.TrimLeft(p, "(")
	if strings.HasPrefix(q, "**") || strings.HasPrefix(q, "^") {
		return true
	}
	if strings.HasPrefix(q, "?") && len(p) > len(q) {
		// (?flags) or (?:^
		r := q[1:]
		if strings.HasPrefix(r, ":^") {
			return true
		}
		k := 0
		for k < len(r) && isAlnum(r[k]) {
			k++
		}
		if k > 0 && k < len(r) && r[k] == ')' {
			return noWordBoundBegin(r[k+1:])
		}
	}
	return false
}

// lineBound reports whether a pattern is anchored at the line's start or
// end (fail2ban's LINE_BEGIN and LINE_END flags).
func lineBound(p string) bool {
	q := p
	if strings.HasPrefix(q, "(?") {
		if k := strings.IndexByte(q, ')'); k > 0 && !strings.HasPrefix(q, "(?:") && !strings.HasPrefix(q, "(?P") {
			q = q[k+1:]
		}
	}
	if strings.HasPrefix(q, "^") || strings.HasPrefix(q, "(^") && !strings.HasPrefix(q, "(^|") ||
		strings.HasPrefix(q, "(?:^") && !strings.HasPrefix(q, "(?:^|") {
		return true
	}
	if strings.HasSuffix(p, "$") || strings.HasSuffix(p, "$)") {
		k := strings.LastIndexByte(p, '$')
		return k == 0 || p[k-1] != '\\' && p[k-1] != '|'
	}
	return false
}

// dateTemplate is one template of the list being replayed.
type dateTemplate struct {
	name     string
	weight   float64 // fail2ban's template weight: 100 for the anchored defaults
	anchored bool    // LINE_BEGIN or LINE_END: a match ends the search
	wordEnd  bool    // the date must end at a word boundary
	find     dateFunc
	// re, when set, finds the template's whole match (faster than find,
	// which also reads the time); for {^LN-BEG} it allows at most two
	// non-word characters before the date.
	re       *regexp.Regexp
	hits     int
	matched  int // regex matches, winning or not
	used     bool
	distance int
}

func (t *dateTemplate) score() float64 {
	return float64(t.hits) * t.weight / float64(max(1, t.distance))
}

// DateTemplates replays fail2ban's date template list over the lines of a
// log. It is not safe for concurrent use.
type DateTemplates struct {
	ts          []*dateTemplate
	names       map[string]bool
	loc         *time.Location
	last        int
	lastPos     int
	lastEnd     int
	firstUnused int
	desc        string
}

// DateTemplates returns a new replay of the filter's date templates.
func (f *Filter) DateTemplates() *DateTemplates {
	d := &DateTemplates{names: map[string]bool{}, loc: f.loc, last: -1, lastPos: 1, lastEnd: 1 << 30}
	dp, ok := f.DatePatternOption()
	if !ok {
		d.addDefaults(false, "")
		d.desc = "Default Detectors"
		return d
	}
	for _, p := range strings.Split(dp, "\n") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		key := p
		if !strings.Contains(p, "%") {
			key = strings.ToUpper(p)
		}
		switch {
		case key == "{^LN-BEG}" || key == "{DEFAULT}":
			d.addDefaults(key == "{^LN-BEG}", "")
		case strings.Contains(key, "{DATE}"):
			d.addDefaults(false, p)
		case key == "{NONE}":
			d.add(&dateTemplate{name: "^", anchored: true, find: func(string, time.Time, *time.Location) (int, int, time.Time, bool) {
				return 0, 0, time.Time{}, true
			}})
		default:
			d.add(d.custom(p, key))
		}
	}
	switch {
	case len(d.ts) == 0 || len(d.ts) > 2:
		d.desc = "Default Detectors"
	default:
		d.desc = d.ts[0].name
	}
	return d
}

// Description is what fail2ban-regex prints after a datepattern: "Default
// Detectors", or the name of the first template.
func (d *DateTemplates) Description() string { return d.desc }

func (d *DateTemplates) add(t *dateTemplate) {
	if t == nil || d.names[t.name] {
		return
	}
	d.names[t.name] = true
	t.distance = 1 << 30
	if t.weight == 0 {
		t.weight = 1
	}
	d.ts = append(d.ts, t)
}

// compile turns a fail2ban pattern into a moat date finder (nil if moat
// cannot read it: the template then never matches).
func compileTemplate(p string) dateFunc {
	fn, err := compileDatePattern(pyDirectives(p))
	if err != nil {
		return nil
	}
	return fn
}

// pyDirectives spells the directives whose regexes differ most from
// Python's (month and day names, space-padded days and hours) as fail2ban
// does, so that a template matches the lines it matches in fail2ban.
func pyDirectives(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		switch p[i+1] {
		case '%':
			b.WriteString("%%")
		case 'd':
			b.WriteString(`(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])`)
		case 'b':
			b.WriteString(`(?P<b>(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))`)
		case 'a':
			b.WriteString(`(?i:mon|tue|wed|thu|fri|sat|sun)`)
		case 'k':
			b.WriteString(` ?(?P<H>[0-2]?\d)`)
		default:
			b.WriteByte('%')
			continue
		}
		i++
	}
	return b.String()
}

// sepRef is a separator group and its back-reference in a template
// ("(?P<_sep>[-/.])%m(?P=_sep)"), which Go's regexp cannot run.
var sepRef = regexp.MustCompile(`\(\?P<(\w+)>\[([^\]\\]+)\]\)(.*?)\(\?P=(\w+)\)`)

// namedGroup is the start of a named group.
var namedGroup = regexp.MustCompile(`\(\?P<\w+>`)

// spanRegex compiles a template's pattern into a Go regexp that finds its
// whole match only (no groups, no time), or returns nil when Go cannot run
// it. A back-referenced separator becomes one alternative per character.
func spanRegex(p string) *regexp.Regexp {
	start := false
	if b, ok := strings.CutPrefix(p, "{^LN-BEG}"); ok {
		p, start = b, true
	}
	if strings.HasPrefix(p, "{") || strings.Contains(p, "**") {
		return nil
	}
	src, err := expandDirectives(pyDirectives(p))
	if err != nil {
		return nil
	}
	for {
		m := sepRef.FindStringSubmatchIndex(src)
		if m == nil {
			break
		}
		name, chars, mid, ref := src[m[2]:m[3]], src[m[4]:m[5]], src[m[6]:m[7]], src[m[8]:m[9]]
		if name != ref || strings.Contains(mid, "(?P=") {
			return nil
		}
		var alts []string
		for _, c := range chars {
			q := regexp.QuoteMeta(string(c))
			alts = append(alts, q+mid+q)
		}
		src = src[:m[0]] + "(?:" + strings.Join(alts, "|") + ")" + src[m[1]:]
	}
	// Named groups would repeat in the alternatives: make them plain.
	src = namedGroup.ReplaceAllString(src, "(?:")
	tr := translatePython(src)
	if tr.backtrack || strings.Contains(src, "(?P=") {
		return nil
	}
	if start {
		tr.goSrc = `^(?:\W{0,2})?(?:` + tr.goSrc + `)`
	}
	re, err := regexp.Compile(tr.goSrc)
	if err != nil {
		return nil
	}
	return re
}

// custom is the template of a datepattern line.
func (d *DateTemplates) custom(p, key string) *dateTemplate {
	switch key {
	case "EPOCH", "{^LN-BEG}EPOCH", "^EPOCH", "LEPOCH", "{^LN-BEG}LEPOCH", "^LEPOCH":
		name := "Epoch"
		if strings.HasSuffix(key, "LEPOCH") {
			name = "LongEpoch"
		}
		t := &dateTemplate{name: name, wordEnd: true, find: compileTemplate(strings.TrimPrefix(p, "^"))}
		if key != "EPOCH" && key != "LEPOCH" {
			t.name, t.anchored = "{^LN-BEG}"+name, true
			t.find = compileTemplate("{^LN-BEG}" + strings.TrimPrefix(strings.TrimPrefix(strings.ToUpper(p), "{^LN-BEG}"), "^"))
		}
		return t
	case "TAI64N", "{^LN-BEG}TAI64N", "^TAI64N":
		t := &dateTemplate{name: "TAI64N", wordEnd: true, find: compileTemplate(`@[0-9a-f]{24}`)}
		if key != "TAI64N" {
			t.name, t.anchored = "{^LN-BEG}TAI64N", true
			t.find = compileTemplate(`{^LN-BEG}@[0-9a-f]{24}`)
		}
		return t
	}
	return patternTemplate(p, true)
}

// patternTemplate is fail2ban's template of a strptime pattern.
func patternTemplate(p string, wordBegin bool) *dateTemplate {
	body := p
	wordEnd := true
	start := false
	if b, ok := strings.CutPrefix(body, "{UNB}"); ok {
		body, wordBegin, wordEnd = b, false, false
	}
	if b, ok := strings.CutPrefix(body, "{^LN-BEG}"); ok && wordBegin {
		body, start = b, true
	}
	t := &dateTemplate{name: templateName(body), find: compileTemplate(p), re: spanRegex(p)}
	bound := wordBegin && !noWordBoundBegin(body)
	if bound && start {
		t.anchored = true
		if !strings.HasPrefix(t.name, "{^LN-BEG}") {
			t.name = "{^LN-BEG}" + t.name
		}
	}
	if lineBound(body) {
		t.anchored = true
	}
	t.wordEnd = wordEnd && !noWordBoundEnd(body)
	return t
}

// noWordBoundEnd reports whether a pattern ends with $, \b, \s or **.
func noWordBoundEnd(p string) bool {
	q := strings.TrimRight(p, ")")
	if strings.HasSuffix(q, "**") {
		return true
	}
	for _, s := range []string{"$", `\b`, `\s`} {
		if strings.HasSuffix(q, s) {
			k := len(q) - len(s)
			return s != "$" || k == 0 || q[k-1] != '\\'
		}
	}
	return false
}

// unbound strips the boundary markers of a template name or pattern
// ({^LN-BEG}, {UNB}) before it goes into a {DATE} pattern.
func unbound(s string) string {
	s = strings.TrimPrefix(s, "{UNB}")
	s = strings.TrimPrefix(s, "{^LN-BEG}")
	return s
}

// addDefaults adds fail2ban's default templates: all of them (first an
// anchored copy of each unanchored one, then the originals), only the
// anchored ones (lineBegin), or, for a {DATE} pattern, each original put in
// its place.
func (d *DateTemplates) addDefaults(lineBegin bool, prematch string) {
	if prematch != "" {
		for _, dt := range defaultTemplates {
			name, pat := dt.name, dt.pattern
			if name == "" {
				name = templateName(unbound(pat))
			}
			put := func(s string) string {
				i := strings.Index(strings.ToUpper(prematch), "{DATE}")
				if i < 0 || i > 0 && prematch[i-1] == '\\' {
					return prematch
				}
				return prematch[:i] + s + prematch[i+len("{DATE}"):]
			}
			tn := put(unbound(name))
			var t *dateTemplate
			if dt.name != "" {
				// Epoch and TAI64N have no pattern: fail2ban makes a
				// template of the name, an Epoch or TAI64N template again
				// when the prematch is just ^.
				key := tn
				if !strings.Contains(tn, "%") {
					key = strings.ToUpper(tn)
				}
				t = d.custom(tn, key)
			} else {
				t = patternTemplate(put(unbound(pat)), true)
				t.name = tn
			}
			d.add(t)
		}
		return
	}
	var anchoredCopies, originals []*dateTemplate
	for _, dt := range defaultTemplates {
		var t *dateTemplate
		switch dt.pattern {
		case "EPOCH":
			t = &dateTemplate{name: "Epoch", wordEnd: true, find: compileTemplate("EPOCH")}
		case "TAI64N":
			t = &dateTemplate{name: "TAI64N", wordEnd: true, find: compileTemplate(`@[0-9a-f]{24}`)}
		default:
			t = patternTemplate(dt.pattern, true)
		}
		if !t.anchored {
			var c *dateTemplate
			switch dt.pattern {
			case "EPOCH":
				c = &dateTemplate{name: "{^LN-BEG}Epoch", anchored: true, wordEnd: true, find: compileTemplate("{^LN-BEG}EPOCH")}
			case "TAI64N":
				c = &dateTemplate{name: "{^LN-BEG}TAI64N", anchored: true, wordEnd: true, find: compileTemplate(`{^LN-BEG}@[0-9a-f]{24}`)}
			default:
				c = patternTemplate("{^LN-BEG}"+dt.pattern, true)
			}
			c.weight = 100
			anchoredCopies = append(anchoredCopies, c)
		}
		originals = append(originals, t)
	}
	for _, t := range append(anchoredCopies, originals...) {
		if lineBegin && !t.anchored {
			continue
		}
		if len(d.ts) > 0 && d.names[t.name] {
			continue
		}
		d.add(t)
	}
}

// match runs template i on line.
func (d *DateTemplates) match(i int, line string, ref time.Time) (int, int, bool) {
	t := d.ts[i]
	var s, e int
	switch {
	case t.re != nil:
		// fail2ban starts an unanchored date where a word begins (or
		// at a non-word character): search on past a start inside a word.
		for off := 0; ; {
			m := t.re.FindStringIndex(line[off:])
			if m == nil {
				return 0, 0, false
			}
			s, e = off+m[0], off+m[1]
			if t.anchored || s == 0 || s >= len(line) || !isWord(line[s-1]) || !isWord(line[s]) {
				break
			}
			off = s + 1
		}
	case t.find != nil:
		var ok bool
		if s, e, _, ok = t.find(line, ref, d.loc); !ok {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	if t.wordEnd && e > 0 && e < len(line) && isWord(line[e-1]) && isWord(line[e]) {
		return 0, 0, false
	}
	t.matched++
	if t.anchored {
		s = 0
	}
	return s, e, true
}

func isWord(c byte) bool { return isAlnum(c) || c == '_' || c >= 0x80 }

// Observe finds the date of one log line as fail2ban would and counts the
// template that found it.
func (d *DateTemplates) Observe(line string, ref time.Time) {
	line = leadingRunes(line)
	n := len(d.ts)
	win, dist, end := -1, 0, 0
	found, fdist, fend := -1, 1<<31, 0
	ignore := -1
	if d.last >= 0 && d.last < n {
		i := d.last
		s, e, ok := d.match(i, line, ref)
		if d.ts[i].anchored {
			ignore = i
			if ok {
				win, dist, end = i, s, e
			}
		} else if ok {
			if n == 1 || s == d.lastPos && e == d.lastEnd {
				win, dist, end = i, s, e
			} else {
				found, fdist, fend = i, s, e
			}
		} else {
			ignore = i
		}
	}
	if win < 0 {
		for i := 0; i < n; i++ {
			if i == ignore {
				continue
			}
			s, e, ok := d.match(i, line, ref)
			if !ok {
				continue
			}
			t := d.ts[i]
			if i+1 >= n || t.anchored || s == 0 && t.hits > 0 && d.ts[i+1].matched == 0 {
				win, dist, end = i, s, e
				break
			}
			if s > t.distance || s > d.lastPos {
				if s < fdist {
					found, fdist, fend = i, s, e
				}
				continue
			}
			win, dist, end = i, s, e
			break
		}
		if win < 0 && found >= 0 {
			win, dist, end = found, fdist, fend
		}
	}
	if win < 0 {
		return
	}
	t := d.ts[win]
	t.hits++
	t.used = true
	t.distance = dist
	if d.firstUnused == win {
		d.firstUnused++
	}
	d.lastPos, d.lastEnd = dist, end
	if win != 0 && win != d.last {
		win = d.reorder(win)
	}
	d.last = win
}

// reorder moves a template that won towards the front as fail2ban does,
// and returns its new index.
func (d *DateTemplates) reorder(num int) int {
	t := d.ts[num]
	w := t.score()
	pos := num / 2
	if d.firstUnused < num {
		pos = d.firstUnused
	}
	movable := func(p int) bool { return w > d.ts[p].score() || !d.ts[p].used }
	if !movable(pos) {
		if pos == num-1 {
			return num
		}
		pos = num - 1
		if !movable(pos) {
			return num
		}
	}
	copy(d.ts[pos+1:num+1], d.ts[pos:num])
	d.ts[pos] = t
	for d.firstUnused < len(d.ts) && d.ts[d.firstUnused].hits > 0 {
		d.firstUnused++
	}
	return pos
}

// TemplateHits is one line of fail2ban-regex's "Date template hits".
type TemplateHits struct {
	Name string
	Hits int
}

// Hits lists the templates in their current order with their hits.
func (d *DateTemplates) Hits() []TemplateHits {
	out := make([]TemplateHits, len(d.ts))
	for i, t := range d.ts {
		out[i] = TemplateHits{t.name, t.hits}
	}
	return out
}

// leadingRunes writes each of the first two characters of line that is a
// multi-byte non-word character (a byte order mark) as one byte: fail2ban
// counts characters where it allows two of them before a line-start date.
func leadingRunes(line string) string {
	var b []byte
	i := 0
	for n := 0; n < 2 && i < len(line); n++ {
		r, size := utf8.DecodeRuneInString(line[i:])
		if size > 1 && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			if b == nil {
				b = append(b, line[:i]...)
			}
			b = append(b, 0x01)
		} else if b != nil {
			b = append(b, line[i:i+size]...)
		}
		i += size
	}
	if b == nil {
		return line
	}
	return string(append(b, line[i:]...))
}
