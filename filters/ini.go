package filters

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// This file reads the INI dialect of fail2ban's filter.d files. fail2ban
// uses Python's ConfigParser with a few extensions; the rules followed here:
//
//   - "[Section]" starts a section; "key = value" and "key: value" set an
//     option (the first '=' or ':' separates); keys keep their case.
//   - A line indented deeper than the key line continues the value (joined
//     with "\n"); blank lines inside a value are kept, so list readers skip
//     them; whole-line comments ('#' or ';' first) are dropped, also inside a
//     value; an inline comment starts at " ;" (ConfigParser's
//     inline_comment_prefixes=";" as fail2ban sets it).
//   - "%(name)s" interpolates from, in order: the options given with the
//     filter name (sshd[mode=aggressive]), [Init], the same section,
//     [DEFAULT]. "%(known/name)s" is the value name had before the last
//     override (an earlier file, or the .conf under a .local). "%%" is "%".
//   - [INCLUDES] before= and after= name files (whitespace separated)
//     relative to the including file's directory; the order is: before
//     files, the file, after files; each file X.conf is followed by X.local
//     when it exists, which overrides it option by option.

// maxIncludeDepth bounds [INCLUDES] nesting (and so include cycles).
const maxIncludeDepth = 10

// maxInterpolationDepth is ConfigParser's limit on nested %(x)s.
const maxInterpolationDepth = 10

// iniValue is one option: its value, where it was set, and the value it
// replaced (for %(known/x)s).
type iniValue struct {
	val  string
	file string
	line int // line of the key
	// lines holds the file line of each "\n"-separated line of val.
	lines []int
	known *iniValue
}

// iniSection is one [Section] with its options in first-set order.
type iniSection struct {
	keys []string
	vals map[string]*iniValue
}

func (s *iniSection) set(key string, v *iniValue) {
	if old, ok := s.vals[key]; ok {
		v.known = old
	} else {
		s.keys = append(s.keys, key)
	}
	s.vals[key] = v
}

// iniDoc is the merged result of reading a file with its includes.
type iniDoc struct {
	sections map[string]*iniSection
}

func newIniDoc() *iniDoc { return &iniDoc{sections: map[string]*iniSection{}} }

func (d *iniDoc) section(name string) *iniSection {
	s := d.sections[name]
	if s == nil {
		s = &iniSection{vals: map[string]*iniValue{}}
		d.sections[name] = s
	}
	return s
}

// lookup returns the raw value of key as seen from section sec.
func (d *iniDoc) lookup(sec, key string) (*iniValue, bool) {
	for _, name := range []string{sec, "DEFAULT"} {
		if s := d.sections[name]; s != nil {
			if v, ok := s.vals[key]; ok {
				return v, true
			}
		}
	}
	return nil, false
}

// readFS reads a file from fsys and merges it, its includes and its .local
// into doc. A missing .local is not an error; a missing include is.
func readIni(doc *iniDoc, fsys fs.FS, name string, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("read %s: includes nested deeper than %d", displayPath(fsys, name), maxIncludeDepth)
	}
	files := []string{name}
	if strings.HasSuffix(name, ".conf") {
		files = append(files, strings.TrimSuffix(name, ".conf")+".local")
	}
	found := false
	for i, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			if i > 0 && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			// A .local alone (without .conf) is a valid filter.
			if i == 0 && errors.Is(err, fs.ErrNotExist) && len(files) > 1 {
				continue
			}
			return fmt.Errorf("read %s: %w", displayPath(fsys, f), err)
		}
		found = true
		if err := mergeIni(doc, fsys, f, string(data), depth); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("read %s: %w", displayPath(fsys, name), fs.ErrNotExist)
	}
	return nil
}

// displayPath is name as a user knows it: absolute for files read from
// the OS root.
func displayPath(fsys fs.FS, name string) string {
	if _, ok := fsys.(rootFS); ok {
		return "/" + name
	}
	return name
}

// readInclude reads an [INCLUDES] file. Like fail2ban, it skips a file
// that does not exist (common.conf names a common.local that usually
// does not); any other error stands.
func readInclude(doc *iniDoc, fsys fs.FS, name string, depth int) error {
	err := readIni(doc, fsys, name, depth)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// mergeIni parses text (read from file name) and merges it into doc between
// its before and after includes.
func mergeIni(doc *iniDoc, fsys fs.FS, name, text string, depth int) error {
	own := newIniDoc()
	if err := parseIni(own, displayPath(fsys, name), text); err != nil {
		return err
	}
	var before, after []string
	if inc := own.sections["INCLUDES"]; inc != nil {
		if v, ok := inc.vals["before"]; ok {
			before = strings.Fields(v.val)
		}
		if v, ok := inc.vals["after"]; ok {
			after = strings.Fields(v.val)
		}
	}
	dir := path.Dir(name)
	incPath := func(f string) string {
		if path.IsAbs(f) {
			return strings.TrimPrefix(f, "/")
		}
		return path.Join(dir, f)
	}
	for _, f := range before {
		if err := readInclude(doc, fsys, incPath(f), depth+1); err != nil {
			return fmt.Errorf("include %s from %s: %w", f, displayPath(fsys, name), err)
		}
	}
	for secName, s := range own.sections {
		if secName == "INCLUDES" {
			continue
		}
		dst := doc.section(secName)
		for _, k := range s.keys {
			v := *s.vals[k]
			v.known = nil
			dst.set(k, &v)
		}
	}
	for _, f := range after {
		if err := readInclude(doc, fsys, incPath(f), depth+1); err != nil {
			return fmt.Errorf("include %s from %s: %w", f, displayPath(fsys, name), err)
		}
	}
	return nil
}

// parseIni parses one file's text into doc (without following includes).
// Errors name the file and line.
func parseIni(doc *iniDoc, name, text string) error {
	var (
		cur       *iniSection
		curVal    *iniValue
		keyIndent int
		pending   int // blank lines seen inside the current value
	)
	lines := strings.Split(text, "\n")
	for i, raw := range lines {
		lineNo := i + 1
		raw = strings.TrimSuffix(raw, "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" {
			if curVal != nil {
				pending++
			}
			continue
		}
		if trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " \t"))
		trimmed = stripInlineComment(trimmed)
		if curVal != nil && indent > keyIndent {
			for ; pending > 0; pending-- {
				curVal.val += "\n"
				curVal.lines = append(curVal.lines, lineNo-pending)
			}
			curVal.val += "\n" + trimmed
			curVal.lines = append(curVal.lines, lineNo)
			continue
		}
		curVal, pending = nil, 0
		if trimmed[0] == '[' {
			end := strings.IndexByte(trimmed, ']')
			if end < 0 {
				return fmt.Errorf("%s:%d: section header %q: want [name]", name, lineNo, trimmed)
			}
			cur = doc.section(strings.TrimSpace(trimmed[1:end]))
			continue
		}
		if cur == nil {
			return fmt.Errorf("%s:%d: option %q before any [section]", name, lineNo, trimmed)
		}
		sep := strings.IndexAny(trimmed, "=:")
		if sep <= 0 {
			return fmt.Errorf("%s:%d: line %q: want key = value", name, lineNo, trimmed)
		}
		key := strings.TrimSpace(trimmed[:sep])
		v := &iniValue{val: strings.TrimSpace(trimmed[sep+1:]), file: name, line: lineNo, lines: []int{lineNo}}
		cur.set(key, v)
		curVal, keyIndent = v, indent
	}
	return nil
}

// stripInlineComment removes a " ;" comment (ConfigParser's inline comment
// prefix as fail2ban configures it) and the spaces before it.
func stripInlineComment(s string) string {
	for i := 1; i < len(s); i++ {
		if s[i] == ';' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimRight(s[:i], " \t")
		}
	}
	return s
}

// vars is the lookup used for %(x)s and <x>: options given with the filter
// name, then [Init], then the section itself, then [DEFAULT]. "known/x" is
// x's earlier value, and "sec/x" is x as seen from [sec].
type vars struct {
	doc  *iniDoc
	sec  string
	opts map[string]string
	// shadow holds, while a known/x value is being expanded, that value:
	// a known/x inside it then means the value before it.
	shadow map[string]*iniValue
}

// raw returns the uninterpolated value of key, the iniValue it came from
// (nil for options), and the scope its own %(x)s are read in.
func (v vars) raw(key string) (string, *iniValue, bool) {
	val, iv, _, ok := v.resolve(key)
	return val, iv, ok
}

func (v vars) resolve(key string) (string, *iniValue, vars, bool) {
	if known, ok := strings.CutPrefix(key, "known/"); ok {
		cur := v.shadow[known]
		if cur == nil {
			cur, _ = v.doc.lookup(v.sec, known)
		}
		prev := (*iniValue)(nil)
		if cur != nil {
			prev = cur.known
			if prev == nil && v.shadow[known] == nil {
				// A section's own value overrides [DEFAULT]'s: known/
				// there is the [DEFAULT] value.
				if sec := v.doc.sections[v.sec]; sec != nil && sec.vals[known] == cur {
					if d := v.doc.sections["DEFAULT"]; d != nil && v.sec != "DEFAULT" {
						prev = d.vals[known]
					}
				}
			}
		}
		if prev == nil {
			// fail2ban reads a known/ name without an earlier value as
			// empty rather than failing.
			return "", nil, v, true
		}
		scope := v
		scope.shadow = make(map[string]*iniValue, len(v.shadow)+1)
		for k, sv := range v.shadow {
			scope.shadow[k] = sv
		}
		scope.shadow[known] = prev
		return prev.val, prev, scope, true
	}
	if s, ok := v.opts[key]; ok {
		return s, nil, v, true
	}
	if sec, opt, ok := strings.Cut(key, "/"); ok && v.doc.sections[sec] != nil {
		scope := v
		scope.sec, scope.shadow = sec, nil
		iv, ok := v.doc.lookup(sec, opt)
		if !ok {
			return "", nil, v, false
		}
		return iv.val, iv, scope, true
	}
	if s := v.doc.sections["Init"]; s != nil && v.sec != "Init" {
		if iv, ok := s.vals[key]; ok {
			return iv.val, iv, v, true
		}
	}
	iv, ok := v.doc.lookup(v.sec, key)
	if !ok {
		return "", nil, v, false
	}
	return iv.val, iv, v, true
}

// get returns key's value with %(x)s interpolated.
func (v vars) get(key string) (string, bool, error) {
	s, _, scope, ok := v.resolve(key)
	if !ok {
		return "", false, nil
	}
	out, err := scope.interpolate(s, 0)
	if err != nil {
		return "", true, fmt.Errorf("option %s: %w", key, err)
	}
	return out, true, nil
}

// interpolate expands %(x)s in s.
func (v vars) interpolate(s string, depth int) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	if depth > maxInterpolationDepth {
		return "", fmt.Errorf("interpolation deeper than %d in %q", maxInterpolationDepth, s)
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 || i+1 >= len(s) {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '%':
			b.WriteByte('%')
			s = s[i+2:]
		case '(':
			end := strings.Index(s[i:], ")s")
			if end < 0 {
				return "", fmt.Errorf("bad interpolation in %q: want %%(name)s", s[i:])
			}
			name := s[i+2 : i+end]
			val, _, scope, ok := v.resolve(name)
			if !ok {
				return "", fmt.Errorf("interpolation %%(%s)s: no option %q", name, name)
			}
			exp, err := scope.interpolate(val, depth+1)
			if err != nil {
				return "", err
			}
			b.WriteString(exp)
			s = s[i+end+2:]
		default:
			// ConfigParser rejects a lone '%'; regexes rarely have one,
			// and keeping it is the useful reading.
			b.WriteByte('%')
			s = s[i+1:]
		}
	}
}

// splitList splits a multi-line value into its non-blank lines, trimmed,
// with the file line each came from when known (from, else 0).
func splitList(s string, from []int) (items []string, lines []int) {
	parts := strings.Split(s, "\n")
	for i, l := range parts {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		n := 0
		if len(from) == len(parts) {
			n = from[i]
		}
		items = append(items, l)
		lines = append(lines, n)
	}
	return items, lines
}
