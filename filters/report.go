package filters

import (
	"strings"
	"sync/atomic"
	"time"
)

// Report accessors: what `moat regex` needs to print the report
// fail2ban-regex prints (the regexes as fail2ban shows them, the prefregex
// groups, the date templates that found the dates). None of this runs
// while a Filter or Stream matches.

// ShownFailregexes returns the failregexes as fail2ban-regex lists them:
// %(x)s interpolated and tags naming options (<mdre-<mode>>,
// <__prefix_line>) expanded, but address tags (<HOST>) and fields
// (<F-USER>) left as written. It falls back to the texts as written
// (Failregexes) should the two lists not line up.
func (f *Filter) ShownFailregexes() []string {
	return f.shown("failregex", f.Failregexes())
}

// ShownIgnoreregexes is ShownFailregexes for the ignoreregexes.
func (f *Filter) ShownIgnoreregexes() []string {
	return f.shown("ignoreregex", f.Ignoreregexes())
}

// ShownPrefregex returns the prefregex as fail2ban compiles and prints
// it: options and tags expanded, <HOST> and the other address tags as
// fail2ban's own patterns, <F-NAME> as (?P<name>…). It is "" when the
// filter has none.
func (f *Filter) ShownPrefregex() string {
	if f.pref == nil {
		return ""
	}
	l := f.shown("prefregex", nil)
	if len(l) == 0 {
		return ""
	}
	return localFlags(pythonHostTags(l[0]))
}

// shown expands the option key of the filter's definition for display;
// fallback is returned when the result does not have as many regexes.
func (f *Filter) shown(key string, fallback []string) []string {
	v := f.defs
	if v.doc == nil {
		return fallback
	}
	raw, _, ok := v.raw(key)
	if !ok {
		return fallback
	}
	exp, err := v.interpolate(raw, 0)
	if err != nil {
		return fallback
	}
	exp = optionTags(exp, func(k string) (string, bool) {
		s, ok, err := v.get(k)
		return s, ok && err == nil
	})
	var out []string
	for _, one := range strings.Split(exp, "\n") {
		if one = strings.TrimSpace(one); one != "" {
			out = append(out, one)
		}
	}
	if fallback != nil && len(out) != len(fallback) {
		return fallback
	}
	return out
}

// DatePatternOption returns the filter's datepattern option as
// fail2ban-regex prints it (interpolated, option tags expanded), and
// whether the filter sets one.
func (f *Filter) DatePatternOption() (string, bool) {
	v := f.defs
	if v.doc == nil {
		return "", false
	}
	raw, _, ok := v.raw("datepattern")
	if !ok || strings.TrimSpace(raw) == "" {
		return "", false
	}
	exp, err := v.interpolate(raw, 0)
	if err != nil {
		return "", false
	}
	return optionTags(exp, func(k string) (string, bool) {
		s, ok, err := v.get(k)
		return s, ok && err == nil
	}), true
}

// MaxLinesSet reports whether the filter sets its maxlines option.
func (f *Filter) MaxLinesSet() bool {
	if f.defs.doc == nil {
		return false
	}
	raw, _, ok := f.defs.raw("maxlines")
	return ok && strings.TrimSpace(raw) != ""
}

// maxTagReplace bounds how often one tag is replaced in a value (a tag
// that refers to itself).
const maxTagReplace = 25

// optionTags replaces each <name> in s that lookup knows with its value,
// innermost first and again in what a value brings in, as fail2ban does
// with a filter's options; <name>s lookup does not know stay.
func optionTags(s string, lookup func(string) (string, bool)) string {
	count := map[string]int{}
	for changed := true; changed; {
		// A pass resumes after each replacement where the tag was, so a
		// tag around it (<lt_<logtype>/x>) waits for the next pass.
		changed = false
		for i := 0; ; {
			st, en, name, ok := nextTag(s, i)
			if !ok {
				break
			}
			rep, known := lookup(name)
			if !known || count[name] >= maxTagReplace {
				i = en
				continue
			}
			count[name]++
			s = strings.ReplaceAll(s, "<"+name+">", rep)
			changed = true
			i = st
		}
	}
	return s
}

// nextTag finds the first <name> at or after i, name having no space, '<'
// or '>'.
func nextTag(s string, i int) (start, end int, name string, ok bool) {
	for i < len(s) {
		lt := strings.IndexByte(s[i:], '<')
		if lt < 0 {
			return 0, 0, "", false
		}
		lt += i
		j := lt + 1
		for j < len(s) && s[j] != ' ' && s[j] != '<' && s[j] != '>' {
			j++
		}
		if j < len(s) && s[j] == '>' && j > lt+1 {
			return lt, j + 1, s[lt+1 : j], true
		}
		i = lt + 1
	}
	return 0, 0, "", false
}

// The address patterns fail2ban substitutes for its tags, as it prints
// them in a prefregex.
const (
	pyIP4    = `(?:\d{1,3}\.){3}\d{1,3}`
	pyIP6    = `(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)`
	pyTagIP4 = `(?:::f{4,6}:)?(?P<ip4>` + pyIP4 + `)`
	pyTagIP6 = `(?P<ip6>` + pyIP6 + `)`
	pyTagDNS = `(?P<dns>[\w\-.^_]*\w)`
	pyCIDR   = `(?P<cidr>\d+)`
	pyAddr   = `\[?(?:` + pyTagIP4 + `|` + pyTagIP6 + `)\]?`
	pyHost   = `(?:` + pyAddr + `|` + pyTagDNS + `)`
	pySubnet = `\[?(?:` + pyTagIP4 + `|` + pyTagIP6 + `)(?:/` + pyCIDR + `)?\]?`
)

var pyTags = map[string]string{
	"HOST": pyHost, "ADDR": pyAddr, "F-ADDR/": pyAddr,
	"IP4": pyTagIP4, "F-IP4/": pyTagIP4, "IP6": pyTagIP6, "F-IP6/": pyTagIP6,
	"DNS": pyTagDNS, "F-DNS/": pyTagDNS, "CIDR": pyCIDR, "F-CIDR/": pyCIDR,
	"SUBNET": pySubnet, "F-SUBNET/": pySubnet,
	"F-ID/": `(?P<fid>\S+)`, "F-PORT/": `(?P<fport>\w+)`,
}

// pythonHostTags replaces the address tags and <F-NAME> fields of s as
// fail2ban does when it compiles a regex.
func pythonHostTags(s string) string {
	var b strings.Builder
	open := map[string]bool{}
	skip := 0
	for i := 0; i < len(s); {
		if s[i] != '<' {
			b.WriteByte(s[i])
			i++
			continue
		}
		// </?[\w\-]+/?>
		j := i + 1
		if j < len(s) && s[j] == '/' {
			j++
		}
		k := j
		for k < len(s) && (isAlnum(s[k]) || s[k] == '_' || s[k] == '-') {
			k++
		}
		e := k
		if e < len(s) && s[e] == '/' {
			e++
		}
		if k == j || e >= len(s) || s[e] != '>' {
			b.WriteByte('<')
			i++
			continue
		}
		tag := s[i : e+1]
		b.WriteString(pythonTag(tag, open, &skip))
		i = e + 1
	}
	return b.String()
}

func pythonTag(tag string, open map[string]bool, skip *int) string {
	tn := tag[1 : len(tag)-1]
	if tn == "SKIPLINES" {
		n := *skip
		*skip++
		return `\n(?P<skiplines` + itoa(n) + `>(?:(?:.*\n)*?))`
	}
	if p, ok := pyTags[tn]; ok {
		return p
	}
	closing := strings.HasPrefix(tn, "/")
	name, ok := strings.CutPrefix(strings.TrimPrefix(tn, "/"), "F-")
	if !ok || !isFieldName(name) || strings.Contains(name, "/") {
		return tag
	}
	if closing {
		if open[name] {
			return ")"
		}
		return tag
	}
	open[name] = true
	return "(?P<" + fieldGroup(name) + ">"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// localFlags turns a group that starts with global flags, ((?i)x) or
// (?:(?i)x), into one with local flags, (?i:x), as fail2ban does.
func localFlags(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '(' && (i == 0 || s[i-1] != '\\') {
			j := i + 1
			if strings.HasPrefix(s[j:], "?:") {
				j += 2
			}
			if strings.HasPrefix(s[j:], "(?") {
				k := j + 2
				for k < len(s) && s[k] >= 'a' && s[k] <= 'z' {
					k++
				}
				if k > j+2 && k < len(s) && s[k] == ')' {
					b.WriteString(s[j:k])
					b.WriteByte(':')
					i = k
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Group is one named group of a match: its name, whether it took part
// and its text.
type Group struct {
	Name  string
	Value string
	Set   bool
}

// PrefregexMatch reports whether the prefregex matches line as the
// failregexes would see it (its date cut out), and with groups set, the
// named groups of that match in the order the regex defines them (as
// fail2ban-regex -v prints them). A filter without prefregex gives false.
// Safe for concurrent use.
func (f *Filter) PrefregexMatch(line string, ref time.Time, groups bool) (bool, []Group) {
	if f.pref == nil {
		return false, nil
	}
	line = strings.TrimRight(line, "\r\n")
	s, e, _, _ := f.date(line, ref, f.loc)
	text := []byte(line[:s] + line[e:])
	if !groups {
		return f.pref.matches(text), nil
	}
	// The groups come from the prefregex as fail2ban compiles it, whose
	// address patterns differ from moat's (::ffff:192.0.2.1 is an ip4
	// there).
	var n atomic.Int64
	if cr, err := compileRegex("prefregex", f.ShownPrefregex(), "prefregex", &n); err == nil {
		if cr.bt != nil && f.pref.bt != nil {
			// The filter's own bound (moat regex's is 10 s), not the
			// default, which a loaded machine can run past.
			cr.bt.MatchTimeout = f.pref.bt.MatchTimeout
		}
		return cr.namedGroups(text)
	}
	return f.pref.namedGroups(text)
}

// namedGroups matches text and returns every named group of the regex,
// as fail2ban's groupdict (see pyGroups) without moat's internal _x_
// groups.
func (cr *compiledRegex) namedGroups(text []byte) (bool, []Group) {
	d, ok := cr.pyGroups(text)
	if !ok {
		return false, nil
	}
	var out []Group
	for _, f := range d {
		if strings.HasPrefix(f.Key, "_") && strings.HasSuffix(f.Key, "_") {
			continue
		}
		out = append(out, Group{Name: f.Key, Value: f.Str, Set: !f.None})
	}
	return true, out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// StripDate returns line with its date cut out, as the failregexes see it
// (fail2ban keeps a buffered line that way).
func (f *Filter) StripDate(line string, ref time.Time) string {
	line = strings.TrimRight(line, "\r\n")
	s, e, _, _ := f.date(line, ref, f.loc)
	return line[:s] + line[e:]
}

// IgnoreregexHits adds to counts (one per ignoreregex) what fail2ban-regex
// counts for line: with every failregex tried, each ignoreregex that
// matches is counted once for each failregex that matched, or once when
// the ignoreregexes are checked before the failregexes (fewer of them than
// failregexes less two). The line is taken alone, as in a single-line
// filter. Safe for concurrent use (counts aside).
func (f *Filter) IgnoreregexHits(line string, ref time.Time, counts []int) {
	if len(f.ignore) == 0 || len(counts) < len(f.ignore) {
		return
	}
	text := []byte(f.StripDate(line, ref))
	count := func(body []byte) {
		for i, ig := range f.ignore {
			if ig.matches(body) {
				counts[i]++
			}
		}
	}
	if f.ignoreFirst() {
		count(text)
		return
	}
	body := text
	if f.pref != nil {
		var g groups
		ok, cs, ce := f.pref.match(text, &g)
		if !ok {
			return
		}
		if cs >= 0 && ce > cs {
			body = text[cs:ce]
		}
	}
	for _, r := range f.fail {
		if r.matches(body) {
			count(body)
		}
	}
}
