// Package ini reads fail2ban's configuration dialect: the INI files of
// jail.conf, jail.d, filter.d and action.d as fail2ban reads them, that is
// Python's configparser as fail2ban sets it up (SafeConfigParserWithIncludes
// in fail2ban/client/configparserinc.py) plus the way fail2ban's
// ConfigReader merges several files. It owns the syntax, the merging of
// files, [INCLUDES], .local overrides and %(x)s interpolation; it knows
// nothing of jails, filters or actions (their sections, such as [Init] or
// [Definition], and their <tag> substitution belong to their readers), and
// it imports no other moat package.
//
// One file (Parse):
//
//   - Lines end at "\n", "\r\n" or "\r" (Python's universal newlines).
//   - A line whose first non-space character is '#' or ';' is a comment.
//     An inline comment starts at a ';' that begins the line or follows a
//     whitespace character; '#' never starts an inline comment. Whitespace
//     is Python's (str.isspace).
//   - "[name]" starts a section: name is everything between the first '['
//     and the last ']' of the line, kept as written (case and spaces);
//     text after that ']' is ignored. [DEFAULT] (exactly so spelled) holds
//     the defaults every section inherits. A line starting with '[' that is
//     not a header is read as an option line.
//   - "key = value" or "key: value" sets an option: the first '=' or ':'
//     separates; the key is trimmed and lower-cased (configparser's
//     optionxform), so keys are case-insensitive everywhere, also in
//     %(x)s; the value is trimmed. A line without a separator, an empty key
//     or an option before any section is an error naming file and line.
//   - A line indented deeper than the line that started the option (counted
//     in characters) continues its value; the lines are trimmed and joined
//     with "\n". Blank lines inside a value are kept (lists skip them);
//     comment lines inside a value are dropped and do not end it; trailing
//     whitespace and blank lines of the value are dropped.
//   - Strict: within one file a section other than DEFAULT may not appear
//     twice, and an option may not be set twice in one section (after
//     lower-casing).
//
// Several files (Reader): the files to read for a list of names are, for
// each name, its [INCLUDES] before= files, the name, its after= files, and
// after each X.conf (any X.ext) its X.local when that exists and is not in
// the list already; recursively, each include line (one file per line, not
// per word; the value is interpolated) is relative to the directory of the
// file that names it, and an include that is one of the files that led to
// the file naming it is skipped (a file naming itself is read twice, as in
// fail2ban). A file that does not exist is skipped, including the
// top-level ones. The files are merged in that order, option by option:
// DEFAULT values replace DEFAULT values, a section's values replace that
// section's; the replaced section value is kept for %(known/x)s. A section
// named "name?cond" (a conditional section) merges into [name] with each
// key written "key?cond".
//
// Interpolation (Doc.Get, Doc.Interpolate), as seen from a section:
//
//   - "%%" is "%"; "%(name)s" is replaced by the value of name, itself
//     interpolated in the same section. Any other '%' is an error.
//   - name is lower-cased and looked up in: the caller's Vars (configparser's
//     vars argument: options given with a filter or action name), the
//     section, [DEFAULT]. "__name__" is the section's name.
//   - Otherwise a name "sec/opt" written in lower case (as fail2ban's
//     regular expression finds it before configparser lower-cases it) is
//     opt from [sec] (falling back to [DEFAULT]; "default/opt" is opt from
//     [DEFAULT]); "known/opt" is the section's value of opt before the
//     file that last set it (falling back to [DEFAULT]). These values are
//     interpolated in the section asking, not in [sec].
//   - Nesting deeper than 10 is an error (configparser's limit).
//
// Filter and jail files: fail2ban reads both with the same parser, so key
// case, duplicates, comments and continuation are the same for both. The
// one difference is the caller's: fail2ban's filter and action readers
// pass the options given with the name (sshd[mode=aggressive]) and [Init]
// as configparser's vars, which the Vars argument of Get and Interpolate
// stands for; the jail reader passes none (nil).
//
// Where moat differs from fail2ban, on purpose:
//
//   - A "%(known/x)s" inside the value that "%(known/x)s" gave is the value
//     before that one, so .conf, .local and a further override can each
//     extend a list; fail2ban loops there until its depth limit.
//   - An include that exists but cannot be read is an error; fail2ban skips
//     it silently. Includes nested deeper than 10 (a cycle through
//     differently written paths) are an error; fail2ban recurses until
//     Python's stack runs out.
//   - Interpolation that would produce more than 1 MiB or resolve more than
//     65536 references is an error, and so is reading more than 1000 files
//     for one list of names (fail2ban takes as long as it takes).
//   - A file that is not valid UTF-8 is read byte for byte; fail2ban skips
//     it with an error in its log.
package ini

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Default is the name of the defaults section.
const Default = "DEFAULT"

// MaxInterpolationDepth is configparser's MAX_INTERPOLATION_DEPTH.
const MaxInterpolationDepth = 10

// MaxIncludeDepth bounds [INCLUDES] nesting.
const MaxIncludeDepth = 10

// maxExpansion bounds the size of one interpolated value, and maxSteps
// the references resolved for it.
const (
	maxExpansion = 1 << 20
	maxSteps     = 1 << 16
)

// maxFiles bounds the files one Reader.Files call visits.
const maxFiles = 1000

// Value is one option's raw (uninterpolated) text and where it was set.
type Value struct {
	Text string
	// File and Line are where the option's key was set.
	File string
	Line int
	// Lines holds the file line of each "\n"-separated line of Text.
	Lines []int
	// prev is the value this one replaced in its section (known/).
	prev *Value
}

// Section is one section's options, in first-set order.
type Section struct {
	// Name is the section's name as written.
	Name string
	// File and Line are where the section first appeared.
	File string
	Line int
	keys []string
	vals map[string]*Value
}

func newSection(name, file string, line int) *Section {
	return &Section{Name: name, File: file, Line: line, vals: map[string]*Value{}}
}

// Keys returns the section's own option names (lower case) in first-set
// order.
func (s *Section) Keys() []string { return append([]string(nil), s.keys...) }

// Value returns the section's own raw value of key.
func (s *Section) Value(key string) (*Value, bool) {
	v, ok := s.vals[strings.ToLower(key)]
	return v, ok
}

// Set sets key (lower-cased) to v; a value it replaces becomes v's known
// value.
func (s *Section) Set(key string, v *Value) {
	key = strings.ToLower(key)
	if old, ok := s.vals[key]; ok {
		v.prev = old
	} else {
		s.keys = append(s.keys, key)
	}
	s.vals[key] = v
}

// Doc is one parsed file or the merge of several.
type Doc struct {
	defaults *Section
	order    []string
	sections map[string]*Section
}

// New returns an empty Doc.
func New() *Doc {
	return &Doc{defaults: newSection(Default, "", 0), sections: map[string]*Section{}}
}

// Sections returns the section names (not DEFAULT) in first-appearance
// order.
func (d *Doc) Sections() []string { return append([]string(nil), d.order...) }

// Section returns the named section (Default gives the defaults), or nil.
func (d *Doc) Section(name string) *Section {
	if name == Default {
		return d.defaults
	}
	return d.sections[name]
}

// Add returns the named section, creating it (as first seen in file at
// line) when it does not exist.
func (d *Doc) Add(name, file string, line int) *Section {
	if s := d.Section(name); s != nil {
		return s
	}
	s := newSection(name, file, line)
	d.sections[name] = s
	d.order = append(d.order, name)
	return s
}

// Raw returns key's raw value as seen from section sec: the section's own,
// else [DEFAULT]'s.
func (d *Doc) Raw(sec, key string) (*Value, bool) {
	key = strings.ToLower(key)
	if s := d.Section(sec); s != nil {
		if v, ok := s.vals[key]; ok {
			return v, true
		}
	}
	v, ok := d.defaults.vals[key]
	return v, ok
}

// conditionalRe is fail2ban's CONDITIONAL_RE for "[name?cond]" sections.
var conditionalRe = regexp.MustCompile(`^(\w+)(\?.+)$`)

// Merge merges src (a later file) into d, option by option.
func (d *Doc) Merge(src *Doc) {
	for _, k := range src.defaults.keys {
		v := *src.defaults.vals[k]
		v.prev = nil
		d.defaults.Set(k, &v)
	}
	for _, name := range src.order {
		s := src.sections[name]
		target, suffix := name, ""
		if m := conditionalRe.FindStringSubmatch(name); m != nil {
			target, suffix = m[1], m[2]
		}
		dst := d.Add(target, s.File, s.Line)
		for _, k := range s.keys {
			v := *s.vals[k]
			v.prev = nil
			dst.Set(k+suffix, &v)
		}
	}
}

// Error is a syntax error in one file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// isSpace is Python's str.isspace for one character.
func isSpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

func trimSpace(s string) string { return strings.TrimFunc(s, isSpace) }

// splitLines splits text at "\n", "\r\n" and "\r".
func splitLines(text string) []string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// commentStart returns where the comment in line starts, or -1.
func commentStart(line string) int {
	if t := trimSpace(line); strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
		return 0
	}
	prevSpace := true // a ';' that begins the line starts a comment
	for i, r := range line {
		if r == ';' && prevSpace {
			return i
		}
		prevSpace = isSpace(r)
	}
	return -1
}

// indentOf is the number of leading whitespace characters of line.
func indentOf(line string) int {
	n := 0
	for _, r := range line {
		if !isSpace(r) {
			break
		}
		n++
	}
	return n
}

// Parse parses one file's text (name is used in errors and Value.File). It
// does not follow includes.
func Parse(name, text string) (*Doc, error) {
	doc := New()
	var (
		cur        *Section // nil before the first header
		val        *Value   // option being read, nil after a header
		parts      []string
		lines      []int
		indent     int
		seenSec    = map[string]bool{}
		seenOpt    = map[[2]string]bool{}
		finishOpen = func() {
			if val == nil {
				return
			}
			for len(parts) > 1 && trimSpace(parts[len(parts)-1]) == "" {
				parts, lines = parts[:len(parts)-1], lines[:len(lines)-1]
			}
			val.Text = strings.TrimRightFunc(strings.Join(parts, "\n"), isSpace)
			val.Lines = lines
		}
	)
	for i, raw := range splitLines(text) {
		lineNo := i + 1
		c := commentStart(raw)
		content := raw
		if c >= 0 {
			content = raw[:c]
		}
		content = trimSpace(content)
		if content == "" {
			if c < 0 && val != nil {
				parts = append(parts, "")
				lines = append(lines, lineNo)
			}
			continue
		}
		ind := indentOf(raw)
		if val != nil && ind > indent {
			parts = append(parts, content)
			lines = append(lines, lineNo)
			continue
		}
		finishOpen()
		val, indent = nil, ind
		if end := strings.LastIndexByte(content, ']'); content[0] == '[' && end > 1 {
			sec := content[1:end]
			if sec != Default {
				if seenSec[sec] {
					return nil, &Error{name, lineNo, fmt.Sprintf("section [%s] appears twice in the file", sec)}
				}
				seenSec[sec] = true
			}
			cur = doc.Add(sec, name, lineNo)
			continue
		}
		if cur == nil {
			return nil, &Error{name, lineNo, fmt.Sprintf("option %q before any [section]", content)}
		}
		sep := strings.IndexAny(content, "=:")
		if sep < 0 {
			return nil, &Error{name, lineNo, fmt.Sprintf("line %q: want key = value", content)}
		}
		key := strings.ToLower(trimSpace(content[:sep]))
		if key == "" {
			return nil, &Error{name, lineNo, fmt.Sprintf("line %q: option name is empty", content)}
		}
		if seenOpt[[2]string{cur.Name, key}] {
			return nil, &Error{name, lineNo, fmt.Sprintf("option %q set twice in section [%s]", key, cur.Name)}
		}
		seenOpt[[2]string{cur.Name, key}] = true
		val = &Value{File: name, Line: lineNo}
		parts, lines = []string{trimSpace(content[sep+1:])}, []int{lineNo}
		cur.Set(key, val)
	}
	finishOpen()
	return doc, nil
}
