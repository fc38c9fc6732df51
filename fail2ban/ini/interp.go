package ini

import (
	"fmt"
	"strings"
	"unicode"
)

// Vars looks up a name (lower case) before the section and [DEFAULT] do:
// configparser's vars argument. A value it returns is interpolated like a
// section's.
type Vars func(name string) (string, bool)

// Get returns key's value as seen from section sec (vars, the section,
// [DEFAULT]) with %(x)s interpolated; ok is false when key is not set.
func (d *Doc) Get(sec, key string, vars Vars) (val string, ok bool, err error) {
	key = strings.ToLower(key)
	raw, found := "", false
	if vars != nil {
		raw, found = vars(key)
	}
	if !found {
		v, ok := d.Raw(sec, key)
		if !ok {
			return "", false, nil
		}
		raw = v.Text
	}
	out, err := d.Interpolate(sec, raw, vars)
	return out, true, err
}

// Interpolate expands the %(x)s and %% in text as seen from section sec.
func (d *Doc) Interpolate(sec, text string, vars Vars) (string, error) {
	if !strings.Contains(text, "%") {
		return text, nil
	}
	in := &interp{d: d, sec: sec, vars: vars}
	var b strings.Builder
	if err := in.expand(&b, text, 1, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// MissingError is a %(name)s whose name is not set.
type MissingError struct {
	Name    string // as written
	Section string // the section interpolating
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%%(%s)s: no option %q in [%s] or [DEFAULT]", e.Name, strings.ToLower(e.Name), e.Section)
}

type interp struct {
	d     *Doc
	sec   string
	vars  Vars
	steps int // references resolved
}

// shadow lists the known/ values being expanded, innermost first.
type shadow struct {
	name string
	v    *Value
	next *shadow
}

func (in *interp) expand(b *strings.Builder, rest string, depth int, sh *shadow) error {
	if depth > MaxInterpolationDepth {
		return fmt.Errorf("%%(x)s nested deeper than %d", MaxInterpolationDepth)
	}
	for rest != "" {
		p := strings.IndexByte(rest, '%')
		if p < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:p])
		rest = rest[p:]
		switch {
		case strings.HasPrefix(rest, "%%"):
			b.WriteByte('%')
			rest = rest[2:]
		case strings.HasPrefix(rest, "%("):
			end := strings.IndexByte(rest, ')')
			if end < 3 || !strings.HasPrefix(rest[end:], ")s") {
				return fmt.Errorf("bad interpolation %q: want %%(name)s", rest)
			}
			name := rest[2:end]
			rest = rest[end+2:]
			if in.steps++; in.steps > maxSteps {
				return fmt.Errorf("interpolation needs more than %d references", maxSteps)
			}
			val, known, ok := in.resolve(name, sh)
			if !ok {
				return &MissingError{Name: name, Section: in.sec}
			}
			if !strings.Contains(val, "%") {
				b.WriteString(val)
			} else {
				inner := sh
				if known != nil {
					inner = &shadow{name: known.name, v: known.v, next: sh}
				}
				if err := in.expand(b, val, depth+1, inner); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("bad interpolation %q: '%%' must be followed by '%%' or '('", rest)
		}
		if b.Len() > maxExpansion {
			return fmt.Errorf("interpolation longer than %d bytes", maxExpansion)
		}
	}
	return nil
}

// resolve returns the raw value %(name)s stands for; known is set when it
// is a known/ value.
func (in *interp) resolve(name string, sh *shadow) (val string, known *shadow, ok bool) {
	lower := strings.ToLower(name)
	if lower == "__name__" {
		return in.sec, nil, true
	}
	if in.vars != nil {
		if s, ok := in.vars(lower); ok {
			return s, nil, true
		}
	}
	if v, ok := in.d.Raw(in.sec, lower); ok {
		return v.Text, nil, true
	}
	sec, opt, ok := strings.Cut(name, "/")
	// fail2ban finds sec/opt as written and configparser then looks the
	// name up lower-cased: only a lower-case reference resolves.
	if !ok || name != lower || opt == "" || !isWord(sec) {
		return "", nil, false
	}
	def := func() (*Value, bool) {
		v, ok := in.d.defaults.vals[opt]
		return v, ok
	}
	var v *Value
	switch sec {
	case "default":
		v, ok = def()
	case "known":
		for s := sh; s != nil; s = s.next {
			if s.name == opt {
				if s.v.prev == nil {
					return "", nil, false
				}
				return s.v.prev.Text, &shadow{name: opt, v: s.v.prev}, true
			}
		}
		if s := in.d.Section(in.sec); s != nil && in.sec != Default {
			if own := s.vals[opt]; own != nil && own.prev != nil {
				v, ok = own.prev, true
			}
		}
		if v == nil {
			v, ok = def()
		}
		if ok {
			return v.Text, &shadow{name: opt, v: v}, true
		}
	default:
		s := in.d.sections[sec]
		if s == nil {
			return "", nil, false
		}
		if v, ok = s.vals[opt]; !ok {
			v, ok = def()
		}
	}
	if !ok {
		return "", nil, false
	}
	return v.Text, nil, true
}

// isWord reports whether s is non-empty and all Python regular-expression
// word characters or '-'.
func isWord(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '_' && r != '-' {
			return false
		}
	}
	return s != ""
}
