package filters

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
)

// datepattern support (a filter's [Definition] datepattern option).
//
// Each non-blank line of the option is one template, tried in order:
//
//	{^LN-BEG}       the default formats, but only at the line's start (after
//	                at most two non-alphanumeric characters)
//	{^LN-BEG}PAT    PAT, only at the line's start
//	{NONE}          no date: every line takes the reference time, nothing is cut
//	{EPOCH}         Unix seconds (with fraction); {LEPOCH} milliseconds too;
//	                EPOCH and LEPOCH without braces too, as fail2ban reads them
//	PRE{DATE}POST   the default formats where the regex puts {DATE}
//	PAT             a regex with strptime directives, searched anywhere
//
// Directives: %Y %ExY %y %m %Exm %d %Exd %e %H %ExH %k %I %l %M %ExM %S %ExS
// %f %p %b %B %a %A %z %Z %s %%. In a .conf file '%' is written "%%" because of
// interpolation, as in fail2ban. The whole text the template matched is cut
// out of the line before the failregex runs.

// directives maps a strptime directive to its regex (group named by field).
var directives = map[string]string{
	"Y":   `(?P<Y>\d{4})`,
	"ExY": `(?P<Y>20\d\d)`,
	"y":   `(?P<y>\d\d)`,
	"Exy": `(?P<y>\d\d)`,
	"m":   `(?P<m>1[0-2]|0?[1-9])`,
	"Exm": `(?P<m>1[0-2]|0[1-9])`,
	"d":   `(?P<d>3[01]|[12]\d|0?[1-9])`,
	"Exd": `(?P<d>3[01]|[12]\d|0[1-9])`,
	"e":   `(?P<d>3[01]|[12]\d| ?[1-9])`,
	"H":   `(?P<H>2[0-3]|[01]?\d)`,
	"ExH": `(?P<H>2[0-3]|[01]\d)`,
	"k":   `(?P<H>2[0-3]|[01]?\d| \d)`,
	"I":   `(?P<I>1[0-2]|0?[1-9])`,
	"l":   `(?P<I>1[0-2]| ?[1-9])`,
	"M":   `(?P<M>[0-5]?\d)`,
	"ExM": `(?P<M>[0-5]\d)`,
	"S":   `(?P<S>6[01]|[0-5]?\d)`,
	"ExS": `(?P<S>6[01]|[0-5]\d)`,
	"f":   `(?P<f>\d{1,6})`,
	"p":   `(?P<p>[AaPp][Mm])`,
	"b":   `(?P<b>[A-Za-z]{3,9})`,
	"B":   `(?P<b>[A-Za-z]{3,9})`,
	"a":   `[A-Za-z]{3,9}`,
	"A":   `[A-Za-z]{3,9}`,
	"z":   `(?P<z>Z|[+-]\d\d(?::?\d\d)?)`,
	"Z":   `(?P<Z>[A-Z]{3,5}|Z)`,
	"s":   `(?P<s>\d{10,11})`,
	"%":   `%`,
}

// template is one compiled datepattern line.
type template struct {
	lineStart bool
	none      bool
	builtin   bool // the default formats
	re        *regexp.Regexp
	idx       map[string]int
	bt        *regexp2.Regexp // when the pattern needs backtracking
	// dateGroup is the group whose text is the date (fail2ban: a pattern
	// with an unnamed group cuts that group, else the whole match); 0 is
	// the whole match.
	dateGroup int
	// epoch marks an EPOCH or LEPOCH template (see findEpoch).
	epoch     bool
	epochMode epochMode
	epochLong bool
}

// epochTemplate recognises the Unix-time templates as fail2ban names them
// (case aside, as fail2ban upper-cases a pattern without '%').
func epochTemplate(line string) (mode epochMode, long, ok bool) {
	if strings.Contains(line, "%") {
		return 0, false, false
	}
	switch strings.ToUpper(line) {
	case "EPOCH":
		return epochAnchored, false, true
	case "{^LN-BEG}EPOCH", "^EPOCH":
		return epochLineBegin, false, true
	case "{EPOCH}":
		return epochWord, false, true
	case "LEPOCH":
		return epochAnchored, true, true
	case "{^LN-BEG}LEPOCH", "^LEPOCH":
		return epochLineBegin, true, true
	case "{LEPOCH}":
		return epochWord, true, true
	}
	return 0, false, false
}

// compileDatePattern turns a datepattern option into a dateFunc.
func compileDatePattern(value string) (dateFunc, error) {
	var ts []template
	for _, line := range strings.Split(value, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var t template
		if mode, long, ok := epochTemplate(line); ok {
			t.epoch, t.epochMode, t.epochLong = true, mode, long
			ts = append(ts, t)
			continue
		}
		if rest, ok := strings.CutPrefix(line, "{^LN-BEG}"); ok {
			t.lineStart, line = true, rest
		}
		switch line {
		case "":
			t.builtin = true
			ts = append(ts, t)
			continue
		case "{NONE}":
			t.none = true
			ts = append(ts, t)
			continue
		}
		// fail2ban's "**" at either end only turns off its word-boundary
		// check, which moat adds only for a fraction (below): drop it.
		unboundEnd := strings.HasSuffix(line, "**")
		line = strings.TrimSuffix(strings.TrimPrefix(line, "**"), "**")
		// fail2ban ends a date where a word ends (unless the pattern ends
		// with $, \b, \s or **): a fraction longer than %f's 6 digits is
		// then given up by backtracking and the date ends before it. moat
		// does the same for patterns with %f, on regexp2.
		wordEnd := strings.Contains(line, "%f") && !strings.Contains(line, "{DATE}") && !unboundEnd &&
			!strings.HasSuffix(line, "$") && !strings.HasSuffix(line, `\b`) && !strings.HasSuffix(line, `\s`)
		switch line {
		case "{TAI64N}", "TAI64N":
			line = `{DATE}`
		}
		// {DATE} stands for the default formats: a loose regex finds the
		// span, the default parsers read it.
		line = strings.Replace(line, "{DATE}", "(?P<_date>"+defaultDateRegex+")", 1)
		src, err := expandDirectives(line)
		if err != nil {
			return nil, fmt.Errorf("datepattern %q: %w", line, err)
		}
		tr := translatePython(src)
		if wordEnd {
			tr.backtrack, tr.btSrc = true, tr.btSrc+`(?=\b|\W|$)`
		}
		if tr.backtrack {
			bt, err := regexp2.Compile(tr.btSrc, regexp2.None)
			if err != nil {
				return nil, fmt.Errorf("datepattern %q: %w", line, err)
			}
			bt.MatchTimeout = backtrackTimeout
			t.bt = bt
			ts = append(ts, t)
			continue
		}
		re, err := regexp.Compile(tr.goSrc)
		if err != nil {
			return nil, fmt.Errorf("datepattern %q: %w", line, err)
		}
		t.re, t.idx = re, map[string]int{}
		for i, n := range re.SubexpNames() {
			if i > 0 && n == "" && t.dateGroup == 0 {
				t.dateGroup = i
			}
			if n != "" {
				if _, dup := t.idx[n]; !dup {
					t.idx[n] = i
				}
			}
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return findDate, nil
	}
	return func(line string, ref time.Time, loc *time.Location) (int, int, time.Time, bool) {
		if loc == nil {
			loc = time.Local
		}
		for _, t := range ts {
			if s, e, tm, ok := t.find(line, ref, loc); ok {
				return s, e, tm, true
			}
			if t.none {
				return 0, 0, time.Time{}, false
			}
		}
		return 0, 0, time.Time{}, false
	}, nil
}

// lineStartOK reports whether a date at s counts as at the line's start.
func lineStartOK(line string, s int) bool {
	if s > 2 {
		return false
	}
	for i := 0; i < s; i++ {
		if isWordByte(line[i]) { // Python's \w: '_' and letters beyond ASCII too
			return false
		}
	}
	return true
}

func (t template) find(line string, ref time.Time, loc *time.Location) (int, int, time.Time, bool) {
	if t.none {
		return 0, 0, time.Time{}, false
	}
	if t.epoch {
		return findEpoch(line, t.epochMode, t.epochLong)
	}
	if t.builtin {
		s, e, tm, ok := findDate(line, ref, loc)
		if ok && (!t.lineStart || lineStartOK(line, s)) {
			return s, e, tm, true
		}
		return 0, 0, time.Time{}, false
	}
	if t.bt != nil {
		return t.findBacktrack(line, ref, loc)
	}
	m := t.re.FindStringSubmatchIndex(line)
	if m == nil || (t.lineStart && !lineStartOK(line, m[0])) {
		return 0, 0, time.Time{}, false
	}
	start, end := m[0], m[1]
	if g := t.dateGroup; g > 0 && m[2*g] >= 0 {
		start, end = m[2*g], m[2*g+1]
	}
	get := func(name string) (string, bool) {
		i, ok := t.idx[name]
		if !ok || m[2*i] < 0 {
			return "", false
		}
		return line[m[2*i]:m[2*i+1]], true
	}
	if i, ok := t.idx["_date"]; ok && m[2*i] >= 0 {
		tm, ok := defaultDateAt(line, m[2*i], ref, loc)
		return start, end, tm, ok
	}
	tm, ok := buildTime(get, ref, loc)
	return start, end, tm, ok
}

// defaultDateRegex finds (loosely) any of the default formats, for {DATE}.
const defaultDateRegex = `(?:[+-]\d{2}(?::?\d{2})? )?(?:[A-Z][a-z]{2} )?[A-Z][a-z]{2} {1,2}\d{1,2}(?: \d{4})? \d{2}:\d{2}:\d{2}(?:\.\d+)?(?: \d{4})?` +
	`|\d{4}[-/.]\d{2}[-/.]\d{2}(?:T| {1,2})\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s*` + zoneRegex + `)?` +
	`|\d{2}[-/][A-Z][a-z]{2}[-/]\d{4}[ :]?\d{2}:\d{2}:\d{2}(?:\.\d+)?(?: ` + zoneRegex + `)?` +
	`|\d{2}[-/]\d{2}[-/](?:\d{4}|\d{2}) \d{1,2}:\d{2}:\d{2}` +
	`|\d{2}/\d{2}/\d{4}:\d{2}:\d{2}:\d{2}` +
	`|\d{2}-\d{2}-\d{4} \d{1,2}:\d{2}:\d{2}(?:\.\d+)?` +
	`|\d{6} {1,2}\d{1,2}:\d{2}:\d{2}` +
	`|\d{8}(?:T| {1,2})\d{6}(?:[.,]\d+)?(?:\s*` + zoneRegex + `)?` +
	`|[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2} [AaPp][Mm]` +
	`|\d{10,11}(?:\.\d{3,6})?` +
	`|@[0-9a-f]{24}`

// zoneRegex is fail2ban's %z (what zone reads), ending a word.
const zoneRegex = `(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)\b`

// defaultDateAt reads a default-format date (epoch and TAI64N included)
// starting at i.
func defaultDateAt(line string, i int, ref time.Time, loc *time.Location) (time.Time, bool) {
	if e, ok := epochAt(line, i, 0, false); ok {
		return epochTime(line[i:e], false), true
	}
	if _, t, ok := parseTAI64N(line, i); ok {
		return t, true
	}
	_, t, ok := dateAt(line, i, ref, loc)
	return t, ok
}

// findBacktrack is find for a template that runs on regexp2.
func (t template) findBacktrack(line string, ref time.Time, loc *time.Location) (int, int, time.Time, bool) {
	m, err := t.bt.FindStringMatch(line)
	if err != nil || m == nil {
		return 0, 0, time.Time{}, false
	}
	// regexp2 counts runes; turn its offsets into bytes.
	byteAt := func(r int) int {
		for i := range line {
			if r == 0 {
				return i
			}
			r--
		}
		return len(line)
	}
	s, e := byteAt(m.Index), byteAt(m.Index+m.Length)
	if t.lineStart && !lineStartOK(line, s) {
		return 0, 0, time.Time{}, false
	}
	// regexp2 numbers unnamed groups first: group "1", if the pattern has
	// one, is the date (as in find).
	for _, n := range t.bt.GetGroupNames() {
		if n == "1" {
			if g := m.GroupByNumber(1); g != nil && len(g.Captures) > 0 {
				s, e = byteAt(g.Index), byteAt(g.Index+g.Length)
			}
			break
		}
	}
	get := func(name string) (string, bool) {
		g := m.GroupByName(name)
		if g == nil || len(g.Captures) == 0 {
			return "", false
		}
		return g.String(), true
	}
	if g := m.GroupByName("_date"); g != nil && len(g.Captures) > 0 {
		tm, ok := defaultDateAt(line, byteAt(g.Index), ref, loc)
		return s, e, tm, ok
	}
	tm, ok := buildTime(get, ref, loc)
	return s, e, tm, ok
}

// buildTime assembles the fields a template captured.
func buildTime(get func(string) (string, bool), ref time.Time, loc *time.Location) (time.Time, bool) {
	num := func(name string, def int) int {
		if s, ok := get(name); ok {
			if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				return v
			}
		}
		return def
	}
	if s, ok := get("s"); ok {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		ns := 0
		if ms, ok := get("ms"); ok {
			v, _ := strconv.Atoi(ms)
			ns = v * 1e6
		} else if f, ok := get("f"); ok {
			ns = fracNanos(f)
		}
		return time.Unix(sec, int64(ns)), true
	}
	refIn := ref.In(loc)
	_, hasYear := get("Y")
	year := num("Y", refIn.Year())
	if y, ok := get("y"); ok {
		v, _ := strconv.Atoi(y)
		year, hasYear = 2000+v, true
	}
	mon := time.Month(num("m", int(refIn.Month())))
	if b, ok := get("b"); ok && len(b) >= 3 {
		mm, ok := month(strings.ToUpper(b[:1])+strings.ToLower(b[1:3]), 0)
		if !ok {
			return time.Time{}, false
		}
		mon = mm
	}
	day := num("d", refIn.Day())
	hour := num("H", 0)
	if _, ok := get("I"); ok {
		hour = num("I", 12) % 12
		if p, ok := get("p"); ok && strings.EqualFold(p, "pm") {
			hour += 12
		}
	}
	// fail2ban reads %f but keeps whole seconds.
	if z, ok := get("z"); ok {
		if zl, _, ok := zone(z, 0, false); ok {
			loc = zl
		}
	} else if z, ok := get("Z"); ok && (z == "UTC" || z == "GMT" || z == "Z") {
		loc = time.UTC
	}
	if !validDay(year, mon, day) {
		return time.Time{}, false
	}
	t := time.Date(year, mon, day, hour, num("M", 0), num("S", 0), 0, loc)
	if !hasYear && t.After(ref.Add(24*time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	return t, true
}

func fracNanos(f string) int {
	ns, _ := fraction("."+f, 0, ".")
	return ns
}

// expandDirectives replaces strptime directives in pat with regex groups.
func expandDirectives(pat string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(pat); i++ {
		if pat[i] != '%' {
			b.WriteByte(pat[i])
			continue
		}
		if i+1 >= len(pat) {
			return "", fmt.Errorf("trailing %%")
		}
		name := pat[i+1 : i+2]
		if strings.HasPrefix(pat[i+1:], "Ex") && i+3 < len(pat) {
			name = pat[i+1 : i+4]
		}
		re, ok := directives[name]
		if !ok {
			return "", fmt.Errorf("unknown directive %%%s", name)
		}
		b.WriteString(re)
		i += len(name)
	}
	return b.String(), nil
}
