package fail2ban

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// This file reads jail.conf and its companions the way fail2ban does: with
// Python's ConfigParser (as fail2ban configures it) plus fail2ban's
// [INCLUDES] and merge rules. The rules followed:
//
//   - "[name]" starts a section (the name is kept as written); [DEFAULT]
//     holds defaults every section inherits.
//   - "key = value" or "key: value": the first '=' or ':' separates; keys
//     are lower-cased (ConfigParser's optionxform).
//   - A line indented deeper than the line that started the option
//     continues its value; values are joined with "\n", and blank lines
//     inside a value are kept, trailing ones dropped. Whole-line comments
//     ('#' or ';' first) are skipped, also inside a value; an inline comment
//     starts at a ';' that follows whitespace.
//   - Within one file a section may not appear twice (except DEFAULT) and an
//     option may not be set twice in one section (ConfigParser's strict mode).
//   - Files are merged in order, option by option; a section option that is
//     overridden keeps its earlier value for %(known/x)s.
//   - "%(x)s" interpolates x as seen from the section (the section, then
//     [DEFAULT]), "%(__name__)s" is the section's name, "%(sec/x)s" is x
//     from [sec] (or [DEFAULT]), "%(known/x)s" is x's value before its last
//     override (or x from [DEFAULT]); "%%" is "%". Nesting is bounded.

// maxInterpolationDepth is ConfigParser's MAX_INTERPOLATION_DEPTH.
const maxInterpolationDepth = 10

// maxIncludeDepth bounds [INCLUDES] nesting.
const maxIncludeDepth = 10

// value is one option's raw text and where it was set.
type value struct {
	text string
	file string
	line int
}

// section is one section's options and where the section first appeared.
type section struct {
	name string
	file string
	line int
	opts map[string]value
}

// document is one parsed file or the merge of several.
type document struct {
	defaults map[string]value
	// order lists section names in first-appearance order.
	order    []string
	sections map[string]*section
	// known holds, per section, values replaced by a later file.
	known map[string]map[string]value
}

func newDocument() *document {
	return &document{
		defaults: map[string]value{},
		sections: map[string]*section{},
		known:    map[string]map[string]value{},
	}
}

func (d *document) section(name, file string, line int) *section {
	s := d.sections[name]
	if s == nil {
		s = &section{name: name, file: file, line: line, opts: map[string]value{}}
		d.sections[name] = s
		d.order = append(d.order, name)
	}
	return s
}

// parseINI parses one file's text (named name in errors) with ConfigParser's
// rules. It does not follow includes.
func parseINI(name, text string) (*document, error) {
	doc := newDocument()
	var (
		cur         map[string]value // current section's options (or defaults)
		curName     string
		opt         string // option being continued ("" after a header)
		lines       []string
		indentLevel int
		seenSection = map[string]bool{}
		seenOpt     = map[[2]string]bool{}
	)
	flush := func() {
		if cur != nil && opt != "" {
			v := cur[opt]
			v.text = strings.TrimRight(strings.Join(lines, "\n"), " \t\n")
			cur[opt] = v
		}
	}
	for i, raw := range strings.Split(text, "\n") {
		lineNo := i + 1
		raw = strings.TrimSuffix(raw, "\r")
		commentAt := -1
		for j := 0; j < len(raw); j++ {
			if raw[j] == ';' && (j == 0 || raw[j-1] == ' ' || raw[j-1] == '\t') {
				commentAt = j
				break
			}
		}
		if t := strings.TrimSpace(raw); strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			commentAt = 0
		}
		content := raw
		if commentAt >= 0 {
			content = raw[:commentAt]
		}
		content = strings.TrimSpace(content)
		if content == "" {
			if commentAt < 0 && cur != nil && opt != "" {
				lines = append(lines, "")
			}
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " \t"))
		if cur != nil && opt != "" && indent > indentLevel {
			lines = append(lines, content)
			continue
		}
		flush()
		indentLevel = indent
		if content[0] == '[' {
			end := strings.LastIndexByte(content, ']')
			if end < 2 {
				return nil, fmt.Errorf("%s:%d: section header %q: want [name]", name, lineNo, content)
			}
			curName = content[1:end]
			opt = ""
			if curName == "DEFAULT" {
				cur = doc.defaults
				continue
			}
			if seenSection[curName] {
				return nil, fmt.Errorf("%s:%d: section [%s] appears twice in the file", name, lineNo, curName)
			}
			seenSection[curName] = true
			cur = doc.section(curName, name, lineNo).opts
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s:%d: option %q before any [section]", name, lineNo, content)
		}
		sep := strings.IndexAny(content, "=:")
		if sep < 0 {
			return nil, fmt.Errorf("%s:%d: line %q: want key = value", name, lineNo, content)
		}
		key := strings.ToLower(strings.TrimSpace(content[:sep]))
		if key == "" {
			return nil, fmt.Errorf("%s:%d: line %q: option name is empty", name, lineNo, content)
		}
		if seenOpt[[2]string{curName, key}] {
			return nil, fmt.Errorf("%s:%d: option %q set twice in section [%s]", name, lineNo, key, curName)
		}
		seenOpt[[2]string{curName, key}] = true
		opt = key
		lines = []string{strings.TrimSpace(content[sep+1:])}
		cur[key] = value{file: name, line: lineNo}
	}
	flush()
	return doc, nil
}

// merge adds src's defaults and sections to d, recording replaced section
// values as known values.
func (d *document) merge(src *document) {
	for k, v := range src.defaults {
		d.defaults[k] = v
	}
	for _, name := range src.order {
		s := src.sections[name]
		dst, existed := d.sections[name]
		if !existed {
			dst = d.section(name, s.file, s.line)
		}
		for k, v := range s.opts {
			if old, ok := dst.opts[k]; ok {
				if d.known[name] == nil {
					d.known[name] = map[string]value{}
				}
				d.known[name][k] = old
			}
			dst.opts[k] = v
		}
	}
}

// reader reads files from the OS below nothing in particular: paths are
// used as given (absolute or relative to the working directory).
type reader struct {
	readFile func(string) ([]byte, error)
	parsed   map[string]*document
}

func newReader() *reader {
	return &reader{readFile: os.ReadFile, parsed: map[string]*document{}}
}

// parse reads and parses one file; a missing file gives (nil, nil).
func (r *reader) parse(path string) (*document, error) {
	if doc, ok := r.parsed[path]; ok {
		return doc, nil
	}
	data, err := r.readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.parsed[path] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	doc, err := parseINI(path, string(data))
	if err != nil {
		return nil, err
	}
	r.parsed[path] = doc
	return doc, nil
}

// withLocal follows each X.conf in files by X.local when that exists and is
// not in files already (fail2ban's _expandConfFilesWithLocal).
func withLocal(files []string) []string {
	var out []string
	in := map[string]bool{}
	for _, f := range files {
		in[f] = true
	}
	for _, f := range files {
		out = append(out, f)
		local := strings.TrimSuffix(f, filepath.Ext(f)) + ".local"
		if !in[local] {
			if st, err := os.Stat(local); err == nil && st.Mode().IsRegular() {
				out = append(out, local)
			}
		}
	}
	return out
}

// expand returns the files to read for files, in order, each preceded by
// its [INCLUDES] before= files and followed by its after= files
// (recursively, skipping a file already on the include path). Missing
// files are skipped, as fail2ban does.
func (r *reader) expand(files []string, seen []string) ([]string, error) {
	if len(seen) > maxIncludeDepth {
		return nil, fmt.Errorf("include %s: includes nested deeper than %d", seen[len(seen)-1], maxIncludeDepth)
	}
	var out []string
	for _, f := range withLocal(files) {
		doc, err := r.parse(f)
		if err != nil {
			return nil, err
		}
		if doc == nil {
			continue
		}
		var before, after []string
		if inc := doc.sections["INCLUDES"]; inc != nil {
			for _, which := range []struct {
				key string
				dst *[]string
			}{{"before", &before}, {"after", &after}} {
				v, ok := inc.opts[which.key]
				if !ok {
					continue
				}
				for _, name := range strings.Split(v.text, "\n") {
					name = strings.TrimSpace(name)
					if name == "" {
						continue
					}
					if !filepath.IsAbs(name) {
						name = filepath.Join(filepath.Dir(f), name)
					}
					if contains(seen, name) || name == f {
						continue
					}
					sub, err := r.expand([]string{name}, append(append([]string(nil), seen...), f))
					if err != nil {
						return nil, err
					}
					*which.dst = append(*which.dst, sub...)
				}
			}
		}
		out = append(out, before...)
		out = append(out, f)
		out = append(out, after...)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// keyRe is a %(name)s reference.
var keyRe = regexp.MustCompile(`^%\(([^)]+)\)s`)

// sectionRefRe is a %(section/option)s name.
var sectionRefRe = regexp.MustCompile(`^([\w\-]+)/([^\s>]+)$`)

// InterpolationError is returned for a %(x)s that cannot be expanded.
type InterpolationError struct {
	Section, Option string
	// File and Line are where the option was set.
	File string
	Line int
	Msg  string
}

func (e *InterpolationError) Error() string {
	return fmt.Sprintf("%s:%d: [%s] %s: %s", e.File, e.Line, e.Section, e.Option, e.Msg)
}

// raw returns option key's raw value as seen from section sec.
func (d *document) raw(sec, key string) (value, bool) {
	if s := d.sections[sec]; s != nil {
		if v, ok := s.opts[key]; ok {
			return v, true
		}
	}
	v, ok := d.defaults[key]
	return v, ok
}

// lookupRef resolves the name inside %(name)s as seen from section sec.
func (d *document) lookupRef(sec, name string) (string, bool) {
	if name == "__name__" {
		return sec, true
	}
	if v, ok := d.raw(sec, name); ok {
		return v.text, true
	}
	m := sectionRefRe.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	other, opt := m[1], m[2]
	switch strings.ToLower(other) {
	case "known":
		if v, ok := d.known[sec][opt]; ok {
			return v.text, true
		}
	case "default":
	default:
		s := d.sections[other]
		if s == nil {
			return "", false
		}
		if v, ok := s.opts[opt]; ok {
			return v.text, true
		}
	}
	v, ok := d.defaults[opt]
	return v.text, ok
}

// get returns option key of section sec with %(x)s expanded; ok is false
// when the option is not set.
func (d *document) get(sec, key string) (string, bool, error) {
	v, ok := d.raw(sec, key)
	if !ok {
		return "", false, nil
	}
	var b strings.Builder
	if err := d.interpolate(&b, sec, v.text, 1); err != nil {
		return "", true, &InterpolationError{Section: sec, Option: key, File: v.file, Line: v.line, Msg: err.Error()}
	}
	return b.String(), true, nil
}

func (d *document) interpolate(b *strings.Builder, sec, rest string, depth int) error {
	if depth > maxInterpolationDepth {
		return fmt.Errorf("%%(x)s nested deeper than %d", maxInterpolationDepth)
	}
	for rest != "" {
		p := strings.IndexByte(rest, '%')
		if p < 0 {
			b.WriteString(rest)
			return nil
		}
		b.WriteString(rest[:p])
		rest = rest[p:]
		switch {
		case strings.HasPrefix(rest, "%%"):
			b.WriteByte('%')
			rest = rest[2:]
		case strings.HasPrefix(rest, "%("):
			m := keyRe.FindStringSubmatch(rest)
			if m == nil {
				return fmt.Errorf("bad interpolation %q: want %%(name)s", rest)
			}
			rest = rest[len(m[0]):]
			name := strings.ToLower(m[1])
			v, ok := d.lookupRef(sec, name)
			if !ok {
				return fmt.Errorf("%%(%s)s: no option %q in [%s] or [DEFAULT]", m[1], name, sec)
			}
			if strings.Contains(v, "%") {
				if err := d.interpolate(b, sec, v, depth+1); err != nil {
					return err
				}
			} else {
				b.WriteString(v)
			}
		default:
			return fmt.Errorf("bad interpolation %q: '%%' must be followed by '%%' or '('", rest)
		}
	}
	return nil
}
