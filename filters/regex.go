package filters

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// Regexes in filter files are Python's re syntax. Most of it is RE2 syntax
// too, and those run on Go's regexp (linear time). The rest (lookarounds,
// backreferences, conditionals, atomic groups, verbose mode, possessive
// quantifiers) runs on regexp2, a backtracking engine, bounded by
// backtrackTimeout. A backtracking regex only runs on a line that first
// passes its literal prefilter and its RE2 superset (the pattern with the
// lookarounds dropped, backreferences made wildcards, conditionals made
// alternations), so most lines never reach it.

// DefaultMatchTimeout bounds one regexp2 match (catastrophic
// backtracking) unless Loader.MatchTimeout says otherwise.
const DefaultMatchTimeout = 100 * time.Millisecond

// backtrackTimeout is the limit regexes are compiled with.
const backtrackTimeout = DefaultMatchTimeout

// maxPrefilters is how many required literals a regex checks at most.
const maxPrefilters = 3

// engine says which engine runs a regex.
type engine int

const (
	engineGo engine = iota
	engineBacktrack
)

func (e engine) String() string {
	if e == engineGo {
		return "go"
	}
	return "regexp2"
}

// translation is a Python regex rewritten for each engine.
type translation struct {
	goSrc    string // Go regexp syntax (valid when !backtrack)
	btSrc    string // regexp2 (.NET) syntax
	superSrc string // Go syntax; matches every line btSrc matches ("" if none)
	// backtrack says the pattern needs features Go's regexp lacks.
	backtrack bool
}

// translatePython rewrites a Python regex. It never fails: what it cannot
// read is passed through and left to the compilers to reject.
func translatePython(src string) translation {
	var g, bt, sup strings.Builder
	t := translation{}
	noSuper := false
	// drop counts open groups whose content is left out of the superset
	// (lookarounds, a conditional's condition).
	type group struct{ dropSuper, cond bool }
	var stack []group
	drop := 0
	emit := func(goS, btS, supS string) {
		g.WriteString(goS)
		bt.WriteString(btS)
		if drop == 0 {
			sup.WriteString(supS)
		}
	}
	n := len(src)
	for i := 0; i < n; {
		c := src[i]
		switch {
		case c == '\\' && i+1 < n:
			e := src[i+1]
			switch {
			case e == 'Z':
				emit(`\z`, `\z`, `\z`)
			case e >= '1' && e <= '9':
				j := i + 1
				for j < n && j < i+3 && src[j] >= '0' && src[j] <= '9' {
					j++
				}
				t.backtrack = true
				emit(src[i:j], src[i:j], `(?s:.*?)`)
				i = j
				continue
			case e == 'w':
				emit(`\w`, `\w`, `[\p{L}\p{M}\p{N}\p{Pc}]`)
			case e == 'd':
				emit(`\d`, `\d`, `\p{Nd}`)
			case e == 's':
				emit(`\s`, `\s`, `[\s\v\x{85}\p{Z}]`)
			case e == 'b' || e == 'B':
				emit(src[i:i+2], src[i:i+2], ``)
			default:
				emit(src[i:i+2], src[i:i+2], src[i:i+2])
			}
			i += 2
		case c == '[':
			j := classEnd(src, i)
			cls := src[i:j]
			emit(cls, cls, superClass(cls))
			i = j
		case c == '(':
			rest := src[i:]
			switch {
			case strings.HasPrefix(rest, "(?P<"):
				end := strings.IndexByte(rest, '>')
				if end < 0 {
					emit(rest, rest, rest)
					i = n
					continue
				}
				name := rest[4:end]
				emit(rest[:end+1], "(?<"+name+">", rest[:end+1])
				stack = append(stack, group{})
				i += end + 1
			case strings.HasPrefix(rest, "(?P="):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					emit(rest, rest, rest)
					i = n
					continue
				}
				t.backtrack = true
				emit(rest[:end+1], `\k<`+rest[4:end]+`>`, `(?s:.*?)`)
				i += end + 1
			case strings.HasPrefix(rest, "(?#"):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					end = len(rest) - 1
				}
				i += end + 1
			case strings.HasPrefix(rest, "(?="), strings.HasPrefix(rest, "(?!"),
				strings.HasPrefix(rest, "(?<="), strings.HasPrefix(rest, "(?<!"):
				l := 3
				if rest[2] == '<' {
					l = 4
				}
				t.backtrack = true
				emit(rest[:l], rest[:l], "")
				stack = append(stack, group{dropSuper: true})
				drop++
				i += l
			case strings.HasPrefix(rest, "(?("):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					emit(rest, rest, rest)
					i = n
					continue
				}
				t.backtrack = true
				emit(rest[:end+1], rest[:end+1], "(?:")
				stack = append(stack, group{cond: true})
				i += end + 1
			case strings.HasPrefix(rest, "(?>"):
				t.backtrack = true
				emit("(?>", "(?>", "(?:")
				stack = append(stack, group{})
				i += 3
			case strings.HasPrefix(rest, "(?"):
				// Inline flags: (?aiLmsux) or (?flags:...) / (?-flags:...).
				j := 2
				for j < len(rest) && strings.IndexByte("aiLmsux-", rest[j]) >= 0 {
					j++
				}
				flags := rest[2:j]
				if strings.Contains(flags, "x") {
					t.backtrack = true
					noSuper = true
				}
				goFlags := strings.Map(func(r rune) rune {
					if strings.ContainsRune("ims-", r) {
						return r
					}
					return -1
				}, flags)
				term := ""
				if j < len(rest) && (rest[j] == ':' || rest[j] == ')') {
					term = rest[j : j+1]
					j++
				}
				if term == ":" {
					stack = append(stack, group{})
				}
				var out string
				switch {
				case term == ":" && strings.Trim(goFlags, "-") == "":
					out = "(?:"
				case term == ")" && strings.Trim(goFlags, "-") == "":
					out = ""
				default:
					out = "(?" + strings.TrimSuffix(goFlags, "-") + term
				}
				btFlags := rest[:j]
				if term != "" {
					btFlags = "(?" + strings.Map(func(r rune) rune {
						if strings.ContainsRune("imsx-", r) {
							return r
						}
						return -1
					}, flags) + term
					if btFlags == "(?)" || btFlags == "(?-)" {
						btFlags = ""
					} else if btFlags == "(?:" || btFlags == "(?-:" {
						btFlags = "(?:"
					}
				}
				emit(out, btFlags, out)
				i += j
			default:
				emit("(", "(", "(")
				stack = append(stack, group{})
				i++
			}
		case c == ')':
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if top.dropSuper {
					drop--
					g.WriteByte(')')
					bt.WriteByte(')')
					i++
					continue
				}
				if top.cond {
					emit(")", ")", "|)")
					i++
					continue
				}
			}
			emit(")", ")", ")")
			i++
		case c == '{':
			// Python's {,n} is {0,n}.
			if i+1 < n && src[i+1] == ',' {
				j := i + 2
				for j < n && src[j] >= '0' && src[j] <= '9' {
					j++
				}
				if j > i+2 && j < n && src[j] == '}' {
					q := "{0," + src[i+2:j] + "}"
					emit(q, q, q)
					i = j + 1
					i = possessive(src, i, &t)
					continue
				}
			}
			emit("{", "{", "{")
			i++
		case c == '*' || c == '+' || c == '?' || c == '}':
			emit(src[i:i+1], src[i:i+1], src[i:i+1])
			i++
			if c != '?' || i < 2 || src[i-2] != '(' {
				i = possessive(src, i, &t)
			}
		default:
			emit(src[i:i+1], src[i:i+1], src[i:i+1])
			i++
		}
	}
	t.goSrc, t.btSrc = g.String(), bt.String()
	if t.backtrack && !noSuper {
		t.superSrc = sup.String()
	}
	return t
}

// possessive skips a Python 3.11 possessive '+' after a quantifier at i
// (which Go and regexp2 lack; it is read as greedy) and marks backtracking.
func possessive(src string, i int, t *translation) int {
	if i < len(src) && src[i] == '+' {
		t.backtrack = true
		return i + 1
	}
	return i
}

// classEnd returns the index after the character class starting at i.
func classEnd(src string, i int) int {
	j := i + 1
	if j < len(src) && src[j] == '^' {
		j++
	}
	if j < len(src) && src[j] == ']' {
		j++
	}
	for j < len(src) {
		switch src[j] {
		case '\\':
			j += 2
			continue
		case ']':
			return j + 1
		}
		j++
	}
	return len(src)
}

// superClass widens \w, \d and \s inside a class to Unicode, as regexp2 reads them.
func superClass(cls string) string {
	if !strings.Contains(cls, `\`) {
		return cls
	}
	var b strings.Builder
	for i := 0; i < len(cls); i++ {
		if cls[i] == '\\' && i+1 < len(cls) {
			switch cls[i+1] {
			case 'w':
				b.WriteString(`\p{L}\p{M}\p{N}\p{Pc}`)
			case 'd':
				b.WriteString(`\p{Nd}`)
			case 's':
				b.WriteString(`\s\v\x{85}\p{Z}`)
			default:
				b.WriteString(cls[i : i+2])
			}
			i++
			continue
		}
		b.WriteByte(cls[i])
	}
	return b.String()
}

// groupNames are the groups a match result reads.
var groupNames = [...]string{"ip4", "ip6", "dns", "cidr", "user", "fid", "nofail", "content", "mlfgained", "mlfid", "mlfforget"}

const (
	gIP4 = iota
	gIP6
	gDNS
	gCIDR
	gUser
	gFID
	gNoFail
	gContent
	gMLFGained
	gMLFID
	gMLFForget
	nGroups
)

// compiledRegex is one failregex, ignoreregex or prefregex ready to run.
// It is safe for concurrent use.
type compiledRegex struct {
	src    string // as written in the file, tags unexpanded
	where  string // file:line or index, for errors
	engine engine
	lits   [][]byte // every match contains all of these
	// anyOf are sets of literals of which every match contains at
	// least one (from alternations such as (a|b)).
	anyOf [][][]byte
	// prefixes, when set, are literals one of which every match starts
	// with (the regex is anchored at the start of the text).
	prefixes [][]byte
	// first, when set, holds the bytes a match can start with (the
	// regex is anchored at the start of the text).
	first *[256]bool
	// btNames are, for each of groupNames, the regexp2 groups that give
	// it: the group itself, then its alt_ alternatives.
	btNames [nGroups][]string
	all     [][]byte // every required literal (for the filter gate)
	re      *regexp.Regexp
	// head is re without a final (?P<content>.+)$, or nil: a match of
	// head that leaves a rest of the line matches re with the same
	// groups, and costs less (see match).
	head    *regexp.Regexp
	bt      *regexp2.Regexp
	super   *regexp.Regexp // RE2 superset of bt, or nil
	idx     [nGroups][]int // Go: submatch indexes of each named group
	skipIdx []int          // Go: submatch indexes of the <SKIPLINES> groups
	// multiline is set for a failregex of a filter with maxlines > 1: it
	// runs on several lines joined by '\n', with ^ and $ at each line.
	multiline bool
	timeouts  *atomic.Int64
	// superRuns and superRejects count the first runs of super; once
	// it turns out to reject few texts that pass the prefilter, it is
	// skipped (superOff): it only ever saves a regexp2 run.
	superRuns, superRejects atomic.Int64
	superOff                atomic.Bool
}

// superTrial is how many runs decide whether super is worth running, and
// superWorth the share of them it must reject (1 in superWorth).
const (
	superTrial = 2048
	superWorth = 8
)

// superRulesOut reports whether super rules text out, and keeps the count
// that decides whether to go on asking it.
func (cr *compiledRegex) superRulesOut(text []byte) bool {
	if cr.super == nil || cr.superOff.Load() {
		return false
	}
	rejected := !cr.super.Match(text)
	if n := cr.superRuns.Add(1); n <= superTrial {
		if rejected {
			cr.superRejects.Add(1)
		}
		if n == superTrial && cr.superRejects.Load()*superWorth < superTrial {
			cr.superOff.Store(true)
		}
	}
	return rejected
}

// compileRegex translates and compiles expanded (the regex with its tags
// substituted); src and where only label errors.
func compileRegex(src, expanded, where string, timeouts *atomic.Int64) (*compiledRegex, error) {
	return compileRegexML(src, expanded, where, timeouts, false)
}

// compileRegexML is compileRegex; multiline compiles with Python's
// re.MULTILINE, as fail2ban does a filter's failregexes when maxlines > 1.
func compileRegexML(src, expanded, where string, timeouts *atomic.Int64, multiline bool) (*compiledRegex, error) {
	tr := translatePython(expanded)
	if multiline {
		tr.goSrc, tr.btSrc = "(?m)"+tr.goSrc, "(?m)"+tr.btSrc
		if tr.superSrc != "" {
			tr.superSrc = "(?m)" + tr.superSrc
		}
	}
	cr := &compiledRegex{src: src, where: where, timeouts: timeouts, multiline: multiline}
	var goErr error
	if !tr.backtrack {
		cr.re, goErr = regexp.Compile(tr.goSrc)
		if goErr == nil {
			cr.engine = engineGo
			for i, name := range groupNames {
				for j, n := range cr.re.SubexpNames() {
					if n == name {
						cr.idx[i] = append(cr.idx[i], j)
					}
				}
				// fail2ban merges alt_user, alt_user_2, … into user
				// when user took no part in the match.
				for j, n := range cr.re.SubexpNames() {
					if isAltName(n, name) {
						cr.idx[i] = append(cr.idx[i], j)
					}
				}
			}
			for j, n := range cr.re.SubexpNames() {
				if n == skipGroup {
					cr.skipIdx = append(cr.skipIdx, j)
				}
			}
			cr.all = allRequiredLiterals(tr.goSrc)
			cr.lits = cr.all[:min(len(cr.all), maxPrefilters)]
			cr.anyOf = requiredAlternatives(tr.goSrc)
			cr.prefixes = anchoredPrefixes(tr.goSrc)
			cr.first = anchoredFirstBytes(tr.goSrc)
			cr.head = contentHead(cr.re)
			return cr, nil
		}
		// Valid Python that Go's parser rejects (a repeat over 1000,
		// say) may still run on regexp2.
		tr.superSrc = ""
	}
	bt, err := regexp2.Compile(tr.btSrc, regexp2.None)
	if err != nil {
		if goErr != nil {
			err = errors.Join(err, goErr)
		}
		return nil, fmt.Errorf("%s: compile regex %q: %w", where, src, err)
	}
	bt.MatchTimeout = backtrackTimeout
	cr.engine, cr.bt = engineBacktrack, bt
	for i, name := range groupNames {
		cr.btNames[i] = []string{name}
		for _, n := range bt.GetGroupNames() {
			if isAltName(n, name) {
				cr.btNames[i] = append(cr.btNames[i], n)
			}
		}
	}
	if tr.superSrc != "" {
		if s, err := regexp.Compile(tr.superSrc); err == nil {
			cr.super = s
			cr.all = allRequiredLiterals(tr.superSrc)
			cr.lits = cr.all[:min(len(cr.all), maxPrefilters)]
			cr.anyOf = requiredAlternatives(tr.superSrc)
			cr.prefixes = anchoredPrefixes(tr.superSrc)
			cr.first = anchoredFirstBytes(tr.superSrc)
		}
	}
	return cr, nil
}

// isAltName reports whether group n is an alternative of base: alt_BASE
// or alt_BASE_N.
func isAltName(n, base string) bool {
	rest, ok := strings.CutPrefix(n, "alt_"+base)
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	if rest[0] != '_' || len(rest) == 1 {
		return false
	}
	for _, c := range rest[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// commonLiteral returns the longest literal that every regex of rs
// requires, or nil: a line without it can match none of them.
func commonLiteral(rs []*compiledRegex) []byte {
	if len(rs) == 0 {
		return nil
	}
	var best []byte
	for _, cand := range rs[0].all {
		if len(cand) <= len(best) {
			continue
		}
		inAll := true
		for _, r := range rs[1:] {
			found := false
			for _, l := range r.all {
				if bytes.Contains(l, cand) {
					found = true
					break
				}
			}
			if !found {
				inAll = false
				break
			}
		}
		if inAll {
			best = cand
		}
	}
	return best
}

// hasGroup reports whether the regex has a group with one of names.
func (cr *compiledRegex) hasGroup(names ...string) bool {
	var all []string
	if cr.engine == engineGo {
		all = cr.re.SubexpNames()
	} else {
		all = cr.bt.GetGroupNames()
	}
	for _, n := range all {
		for _, want := range names {
			if n == want {
				return true
			}
		}
	}
	return false
}

// idGroups are the groups that identify a failure, one of which every
// failregex (or the prefregex) must have, as fail2ban requires.
var idGroups = []string{"ip4", "ip6", "dns", "fid", "mlfid"}

// groups is what a regex captured: for each named group, whether it took
// part in the match and its text.
type groups struct {
	set [nGroups]bool
	val [nGroups]string
	// start and end are the byte span of the whole match, and skips the
	// spans of its <SKIPLINES> groups; set only for multiline regexes.
	start, end int
	skips      [][2]int
}

// merge copies into g the groups o has that g lacks.
func (g *groups) merge(o *groups) {
	for i := range g.set {
		if !g.set[i] && o.set[i] {
			g.set[i], g.val[i] = true, o.val[i]
		}
	}
}

// prefilter reports whether text may match: it contains every required literal.
func (cr *compiledRegex) prefilter(text []byte) bool {
	if cr.first != nil && (len(text) == 0 || !cr.first[text[0]]) {
		return false
	}
	if cr.prefixes != nil {
		found := false
		for _, p := range cr.prefixes {
			if bytes.HasPrefix(text, p) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, l := range cr.lits {
		if !bytes.Contains(text, l) {
			return false
		}
	}
	for _, set := range cr.anyOf {
		found := false
		for _, l := range set {
			if bytes.Contains(text, l) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matches reports whether the regex matches text, without captures.
func (cr *compiledRegex) matches(text []byte) bool {
	if !cr.prefilter(text) {
		return false
	}
	if cr.engine == engineGo {
		return cr.re.Match(text)
	}
	if cr.superRulesOut(text) {
		return false
	}
	ok, err := cr.bt.MatchString(string(text))
	if err != nil {
		cr.timeouts.Add(1)
		return false
	}
	return ok
}

// match runs the regex on text and fills g; it returns the span of the
// content group (for prefregex) in bytes of text, or -1s.
func (cr *compiledRegex) match(text []byte, g *groups) (ok bool, cs, ce int) {
	cs, ce = -1, -1
	if !cr.prefilter(text) {
		return false, cs, ce
	}
	if cr.engine == engineGo {
		loc, hcs, hce := cr.findSubmatchIndex(text)
		if loc == nil {
			return false, cs, ce
		}
		if cr.multiline {
			g.start, g.end = loc[0], loc[1]
			for _, j := range cr.skipIdx {
				if a, b := loc[2*j], loc[2*j+1]; a >= 0 {
					g.skips = append(g.skips, [2]int{a, b})
				}
			}
		}
		for i, idxs := range cr.idx {
			for _, j := range idxs {
				a, b := hcs, hce
				if 2*j < len(loc) {
					a, b = loc[2*j], loc[2*j+1]
				}
				if a >= 0 {
					g.set[i] = true
					if i == gContent {
						// The caller takes the content by its span.
						cs, ce = a, b
					} else {
						g.val[i] = string(text[a:b])
					}
					break
				}
			}
		}
		return true, cs, ce
	}
	if cr.superRulesOut(text) {
		return false, cs, ce
	}
	rp := runeBuf.Get().(*[]rune)
	defer runeBuf.Put(rp)
	*rp = appendRunes((*rp)[:0], text)
	// The match refers to *rp: every value is copied out of it below.
	m, err := cr.bt.FindRunesMatch(*rp)
	if err != nil {
		cr.timeouts.Add(1)
		return false, cs, ce
	}
	if m == nil {
		return false, cs, ce
	}
	if cr.multiline {
		runes := []rune(string(text))
		off := func(r int) int { return len(string(runes[:r])) }
		g.start, g.end = off(m.Index), off(m.Index+m.Length)
		if sk := m.GroupByName(skipGroup); sk != nil {
			for _, c := range sk.Captures {
				g.skips = append(g.skips, [2]int{off(c.Index), off(c.Index + c.Length)})
			}
		}
	}
	for i, names := range cr.btNames {
		var grp *regexp2.Group
		for _, n := range names {
			if c := m.GroupByName(n); c != nil && len(c.Captures) > 0 {
				grp = c
				break
			}
		}
		if grp == nil {
			continue
		}
		g.set[i], g.val[i] = true, grp.String()
		if i == gContent {
			// regexp2 indexes runes; find the byte span.
			runes := []rune(string(text))
			cs = len(string(runes[:grp.Index]))
			ce = cs + len(grp.String())
		}
	}
	return true, cs, ce
}

// runeBuf holds the runes of a text given to regexp2, which matches runes.
var runeBuf = sync.Pool{New: func() any { b := make([]rune, 0, 256); return &b }}

// appendRunes appends the runes of b, as []rune(string(b)) would give them.
func appendRunes(dst []rune, b []byte) []rune {
	for _, r := range string(b) {
		dst = append(dst, r)
	}
	return dst
}

// contentSuffix ends a prefregex whose content is the rest of the line.
const contentSuffix = `(?P<content>.+)$`

// contentHead returns re without its final contentSuffix, or nil when re
// does not end so or the content group is not its last.
func contentHead(re *regexp.Regexp) *regexp.Regexp {
	src, ok := strings.CutSuffix(re.String(), contentSuffix)
	if !ok || (len(src)-len(strings.TrimRight(src, `\`)))%2 == 1 {
		return nil
	}
	// The suffix must be the end of a top-level concatenation (not of
	// a branch of x|(?P<content>.+)$, say).
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil || tree.Op != syntax.OpConcat || len(tree.Sub) < 3 {
		return nil
	}
	c, end := tree.Sub[len(tree.Sub)-2], tree.Sub[len(tree.Sub)-1]
	if end.Op != syntax.OpEndText || c.Op != syntax.OpCapture || c.Name != "content" ||
		c.Sub[0].Op != syntax.OpPlus || c.Sub[0].Sub[0].Op != syntax.OpAnyCharNotNL && c.Sub[0].Sub[0].Op != syntax.OpAnyChar {
		return nil
	}
	head, err := regexp.Compile(src)
	if err != nil || head.NumSubexp() != re.NumSubexp()-1 {
		return nil
	}
	names, hnames := re.SubexpNames(), head.SubexpNames()
	if names[len(names)-1] != "content" {
		return nil
	}
	for i, n := range hnames {
		if names[i] != n {
			return nil
		}
	}
	return head
}

// findSubmatchIndex is cr.re.FindSubmatchIndex, but loc may lack the
// last group, the content, whose span is then cs, ce (else cs is -1).
// With a head it first matches the head alone: leftmost-first, re's match
// takes the head's first choice whenever (?P<content>.+)$ can follow it,
// that is when the head leaves a rest without a newline; else it falls
// back to re.
func (cr *compiledRegex) findSubmatchIndex(text []byte) (loc []int, cs, ce int) {
	if cr.head == nil {
		return cr.re.FindSubmatchIndex(text), -1, -1
	}
	hl := cr.head.FindSubmatchIndex(text)
	if hl == nil {
		return nil, -1, -1 // every match of re begins with a match of head
	}
	e := hl[1]
	if e >= len(text) || bytes.IndexByte(text[e:], '\n') >= 0 {
		return cr.re.FindSubmatchIndex(text), -1, -1
	}
	hl[1] = len(text)
	return hl, e, len(text)
}

// requiredLiterals returns up to maxPrefilters substrings that every match
// of the Go regex src contains, longest first. Case-folded literals are
// never used. An empty result means no prefilter.
func requiredLiterals(src string) [][]byte {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	var lits []string
	collectRequired(re.Simplify(), &lits)
	return pickLiterals(lits, maxPrefilters)
}

// allRequiredLiterals is requiredLiterals without the limit.
func allRequiredLiterals(src string) [][]byte {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	var lits []string
	collectRequired(re.Simplify(), &lits)
	return pickLiterals(lits, -1)
}

// anchoredPrefixes returns literals one of which starts every match of the
// Go regex src, or nil: src must begin with ^ (the start of the text) and
// then a literal, or an alternation of branches that each begin with one.
func anchoredPrefixes(src string) [][]byte {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return nil
	}
	lits := leadingLiterals(re.Sub[1])
	if len(lits) == 0 || len(lits) > maxAltLiterals {
		return nil
	}
	out := make([][]byte, len(lits))
	for i, l := range lits {
		out[i] = []byte(l)
	}
	return out
}

// anchoredFirstBytes returns the bytes one of which starts every match of
// the Go regex src, or nil: src must begin with ^ (the start of the text)
// and then something that takes at least one byte from a known set.
func anchoredFirstBytes(src string) *[256]bool {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return nil
	}
	var set [256]bool
	if !firstBytes(re.Sub[1], &set) {
		return nil
	}
	return &set
}

// firstBytes adds to set the first bytes of every match of re, and
// reports whether it could tell (re never matches empty text).
func firstBytes(re *syntax.Regexp, set *[256]bool) bool {
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return false
		}
		r := re.Rune[0]
		if re.Flags&syntax.FoldCase != 0 {
			if r >= utf8.RuneSelf {
				return false
			}
			set[unicode.ToLower(r)], set[unicode.ToUpper(r)] = true, true
			if r == 'k' || r == 'K' || r == 's' || r == 'S' {
				return false // folds to the Kelvin sign or long s
			}
			return true
		}
		var b [utf8.UTFMax]byte
		utf8.EncodeRune(b[:], r)
		set[b[0]] = true
		return true
	case syntax.OpCharClass:
		n := 0
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if hi >= utf8.RuneSelf {
				return false
			}
			n += int(hi-lo) + 1
			for c := lo; c <= hi; c++ {
				set[c] = true
			}
		}
		return n > 0 && n < 128
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0], set)
	case syntax.OpRepeat:
		return re.Min >= 1 && firstBytes(re.Sub[0], set)
	case syntax.OpConcat:
		return len(re.Sub) > 0 && firstBytes(re.Sub[0], set)
	case syntax.OpAlternate:
		for _, br := range re.Sub {
			if !firstBytes(br, set) {
				return false
			}
		}
		return true
	}
	return false
}

// leadingLiterals returns literals one of which every match of re starts
// with, or nil when it cannot tell.
func leadingLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 || len(re.Rune) == 0 {
			return nil
		}
		return []string{string(re.Rune)}
	case syntax.OpCapture:
		return leadingLiterals(re.Sub[0])
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return nil
		}
		return leadingLiterals(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, br := range re.Sub {
			l := leadingLiterals(br)
			if l == nil {
				return nil
			}
			out = append(out, l...)
		}
		return out
	}
	return nil
}

// maxAlternatives bounds the literal sets a regex checks, and the
// literals in one set.
const (
	maxAltSets     = 2
	maxAltLiterals = 4
)

// requiredAlternatives returns sets of literals, each from an alternation
// every match of the Go regex src goes through: a match contains at least
// one literal of each set. Only alternations whose every branch requires
// a literal of two bytes or more count.
func requiredAlternatives(src string) [][][]byte {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil
	}
	var out [][][]byte
	collectAlternatives(re.Simplify(), &out)
	return out
}

// collectAlternatives appends to out a literal set for each alternation
// that every match of re must go through.
func collectAlternatives(re *syntax.Regexp, out *[][][]byte) {
	if len(*out) >= maxAltSets {
		return
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		collectAlternatives(re.Sub[0], out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			collectAlternatives(re.Sub[0], out)
		}
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			collectAlternatives(sub, out)
		}
	case syntax.OpAlternate:
		if len(re.Sub) > maxAltLiterals {
			return
		}
		var set [][]byte
		for _, br := range re.Sub {
			var lits []string
			collectRequired(br, &lits)
			best := pickLiterals(lits, 1)
			if len(best) == 0 {
				return
			}
			set = append(set, best[0])
		}
		*out = append(*out, set)
	}
}

// pickLiterals returns up to max (all when max < 0) distinct literals of
// two bytes or more, longest first.
func pickLiterals(lits []string, max int) [][]byte {
	sort.SliceStable(lits, func(i, j int) bool { return len(lits[i]) > len(lits[j]) })
	var out [][]byte
	seen := map[string]bool{}
	for _, l := range lits {
		if len(out) == max {
			break
		}
		if len(l) < 2 || seen[l] {
			continue
		}
		seen[l] = true
		out = append(out, []byte(l))
	}
	return out
}

// collectRequired appends the literals every match of re must contain.
func collectRequired(re *syntax.Regexp, out *[]string) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			*out = append(*out, string(re.Rune))
		}
	case syntax.OpCapture:
		collectRequired(re.Sub[0], out)
	case syntax.OpPlus:
		collectRequired(re.Sub[0], out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			collectRequired(re.Sub[0], out)
		}
	case syntax.OpConcat:
		var run strings.Builder
		flush := func() {
			if run.Len() > 0 {
				*out = append(*out, run.String())
				run.Reset()
			}
		}
		for _, sub := range re.Sub {
			s := sub
			for s.Op == syntax.OpCapture {
				s = s.Sub[0]
			}
			switch {
			case s.Op == syntax.OpLiteral && s.Flags&syntax.FoldCase == 0:
				run.WriteString(string(s.Rune))
			case s.Op == syntax.OpEmptyMatch || s.Op == syntax.OpBeginLine ||
				s.Op == syntax.OpEndLine || s.Op == syntax.OpBeginText || s.Op == syntax.OpEndText ||
				s.Op == syntax.OpWordBoundary || s.Op == syntax.OpNoWordBoundary:
				// zero-width: the run continues across it
			default:
				flush()
				collectRequired(sub, out)
			}
		}
		flush()
	}
}
