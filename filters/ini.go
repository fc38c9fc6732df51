package filters

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/moatproj/moat/fail2ban/ini"
)

// This file connects the filter reader to fail2ban's INI dialect, which
// package fail2ban/ini reads (syntax, includes, .local overrides, %(x)s).
// What is the filter reader's own: the [Definition] section is the
// filter; "%(name)s" and <name> look first in the options given with the
// filter name (sshd[mode=aggressive]), then in [Init], then in the section
// and [DEFAULT]; <sec/name> is name as read in [sec], <known/name> its
// earlier value.

// iniValue is a value as the filter reader uses it: its text, where it
// was set, and the file line of each "\n"-separated line.
type iniValue struct {
	val   string
	file  string
	line  int
	lines []int
}

// iniDoc is the merged result of reading a filter with its includes.
type iniDoc struct{ d *ini.Doc }

func newIniDoc() *iniDoc { return &iniDoc{d: ini.New()} }

// iniSection is one section of an iniDoc.
type iniSection struct{ s *ini.Section }

func (d *iniDoc) section(name string) iniSection { return iniSection{d.d.Add(name, "", 0)} }

func (s iniSection) set(key string, v *iniValue) {
	s.s.Set(key, &ini.Value{Text: v.val, File: v.file, Line: v.line, Lines: v.lines})
}

// value returns the raw value of key in section sec (or [DEFAULT]).
func (d *iniDoc) value(sec, key string) (*iniValue, bool) {
	v, ok := d.d.Raw(sec, key)
	if !ok {
		return nil, false
	}
	return toIniValue(v), true
}

func toIniValue(v *ini.Value) *iniValue {
	return &iniValue{val: v.Text, file: v.File, line: v.Line, lines: v.Lines}
}

// readIni reads name from fsys (with its .local and includes) and merges
// it into doc. A name that does not exist (nor its .local) is an error.
func readIni(doc *iniDoc, fsys fs.FS, name string, _ int) error {
	return readWith(doc, fsys, name, nil)
}

// mergeIni merges text, read as file name of fsys, with its includes into
// doc.
func mergeIni(doc *iniDoc, fsys fs.FS, name, text string, _ int) error {
	return readWith(doc, fsys, name, &text)
}

func readWith(doc *iniDoc, fsys fs.FS, name string, text *string) error {
	top := displayPath(fsys, name)
	r := ini.NewReader(func(n string) ([]byte, error) {
		if text != nil && n == top {
			return []byte(*text), nil
		}
		return fs.ReadFile(fsys, strings.TrimPrefix(path.Clean(n), "/"))
	})
	files, err := r.Files(top)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("read %s: %w", top, fs.ErrNotExist)
	}
	for _, f := range files {
		d, err := r.Parse(f)
		if err != nil {
			return err
		}
		doc.d.Merge(d)
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

// parseIni parses one file's text into doc (without following includes).
// Errors name the file and line.
func parseIni(doc *iniDoc, name, text string) error {
	d, err := ini.Parse(name, text)
	if err != nil {
		return err
	}
	doc.d.Merge(d)
	return nil
}

// vars is the lookup used for %(x)s and <x> in section sec of doc.
type vars struct {
	doc  *iniDoc
	sec  string
	opts map[string]string
}

// lookup is what %(x)s sees before the section (fail2ban passes them as
// configparser's vars): the options, then [Init], where known/x is [Init]'s
// own x.
func (v vars) lookup(name string) (string, bool) {
	if s, ok := v.opts[name]; ok {
		return s, true
	}
	for k, s := range v.opts {
		if strings.EqualFold(k, name) {
			return s, true
		}
	}
	if s := v.doc.d.Section("Init"); s != nil && v.sec != "Init" {
		if x, ok := strings.CutPrefix(name, "known/"); ok {
			name = x
		}
		if iv, ok := s.Value(name); ok {
			return iv.Text, true
		}
	}
	return "", false
}

// raw returns the uninterpolated value of key and the iniValue it came
// from (nil for options): the options, [Init], the section, [DEFAULT].
// fail2ban uses an option given with the filter name for that option as
// written, without %(x)s interpolation: raw returns it with each '%'
// doubled, so that interpolating gives it back.
func (v vars) raw(key string) (string, *iniValue, bool) {
	if s, ok := v.opts[key]; ok {
		return strings.ReplaceAll(s, "%", "%%"), nil, true
	}
	if s := v.doc.d.Section("Init"); s != nil && v.sec != "Init" {
		if iv, ok := s.Value(key); ok {
			return iv.Text, toIniValue(iv), true
		}
	}
	iv, ok := v.doc.d.Raw(v.sec, key)
	if !ok {
		return "", nil, false
	}
	return iv.Text, toIniValue(iv), true
}

// get returns key's value with %(x)s interpolated. key may be "sec/name"
// (name as read in [sec]) or "known/name".
func (v vars) get(key string) (string, bool, error) {
	out, ok, err := v.getRef(key)
	if err != nil {
		return "", true, fmt.Errorf("option %s: %w", key, err)
	}
	return out, ok, nil
}

func (v vars) getRef(key string) (string, bool, error) {
	if sec, name, ok := strings.Cut(key, "/"); ok {
		if strings.EqualFold(sec, "known") || strings.EqualFold(sec, "default") {
			if strings.ContainsAny(key, "()%") {
				return "", false, nil
			}
			// A <known/x> without an earlier value reads as empty.
			out, err := v.interpolate("%("+strings.ToLower(key)+")s", 0)
			if _, missing := errors.AsType[*ini.MissingError](err); missing {
				return "", true, nil
			}
			return out, true, err
		}
		if _, ok := v.opts[key]; !ok && v.doc.d.Section(sec) != nil {
			iv, ok := v.doc.d.Raw(sec, name)
			if !ok {
				return "", false, nil
			}
			scope := v
			scope.sec = sec
			out, err := scope.interpolate(iv.Text, 0)
			return out, true, err
		}
	}
	s, _, ok := v.raw(key)
	if !ok {
		return "", false, nil
	}
	out, err := v.interpolate(s, 0)
	return out, true, err
}

// interpolate expands %(x)s in s as read in the section.
func (v vars) interpolate(s string, _ int) (string, error) {
	return v.doc.d.Interpolate(v.sec, s, v.lookup)
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
