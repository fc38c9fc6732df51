package fail2ban

import (
	"fmt"
	"os"

	"github.com/moatproj/moat/fail2ban/ini"
)

// jail.conf and its companions are read in fail2ban's INI dialect by
// package fail2ban/ini (syntax, [INCLUDES], .local overrides, merging and
// %(x)s, %(sec/x)s, %(known/x)s, %(__name__)s interpolation); this file
// adapts it to the jail reader.

// value is one option's raw text and where it was set.
type value struct {
	text string
	file string
	line int
}

// document is one parsed file or the merge of several.
type document struct{ *ini.Doc }

func newDocument() *document { return &document{ini.New()} }

// parseINI parses one file's text (named name in errors). It does not
// follow includes.
func parseINI(name, text string) (*document, error) {
	d, err := ini.Parse(name, text)
	if err != nil {
		return nil, err
	}
	return &document{d}, nil
}

// readINI reads files (with their includes and .local overrides) from the
// OS and merges them; it returns the files read, in order.
func readINI(files []string) (*document, []string, error) {
	d, read, err := ini.NewReader(os.ReadFile).Read(files...)
	if err != nil {
		return nil, nil, err
	}
	return &document{d}, read, nil
}

// merge adds src (a later file) to d.
func (d *document) merge(src *document) { d.Merge(src.Doc) }

// setDefault sets a [DEFAULT] option that fail2ban itself provides.
func (d *document) setDefault(key, text string) {
	d.Section(ini.Default).Set(key, &ini.Value{Text: text, File: "(fail2ban)"})
}

// own returns section sec's own raw value of key (not [DEFAULT]'s).
func (d *document) own(sec, key string) (value, bool) {
	if s := d.Section(sec); s != nil {
		if v, ok := s.Value(key); ok {
			return value{text: v.Text, file: v.File, line: v.Line}, true
		}
	}
	return value{}, false
}

// raw returns option key's raw value as seen from section sec.
func (d *document) raw(sec, key string) (value, bool) {
	v, ok := d.Raw(sec, key)
	if !ok {
		return value{}, false
	}
	return value{text: v.Text, file: v.File, line: v.Line}, true
}

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

// get returns option key of section sec with %(x)s expanded; ok is false
// when the option is not set.
func (d *document) get(sec, key string) (string, bool, error) {
	s, ok, err := d.Get(sec, key, nil)
	if err != nil {
		v, _ := d.raw(sec, key)
		return "", true, &InterpolationError{Section: sec, Option: key, File: v.file, Line: v.line, Msg: err.Error()}
	}
	return s, ok, nil
}
