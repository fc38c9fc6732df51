package docker

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

type selKind uint8

const (
	selName selKind = iota + 1
	selLabel
	selLabelValue
	selID
)

// Selector picks containers. The zero Selector matches nothing. Selectors
// are values, safe for concurrent use.
type Selector struct {
	kind  selKind
	key   string // name or name glob, label key, or id prefix
	value string // label value
}

// Selector syntax prefixes.
const (
	prefixLabel = "label:"
	prefixID    = "id:"
	prefixName  = "name:"
)

// maxSelector bounds a selector's length.
const maxSelector = 1024

// ParseSelector parses a container selector:
//
//   - "web" or "name:web": the container named web (Docker's leading '/' may
//     be given); a name with glob characters ("app-web-*", path.Match syntax)
//     matches every container whose name matches it;
//   - "label:com.example.role=frontend": containers with that label and value;
//   - "label:com.example.role": containers that have that label, with any
//     value;
//   - "id:3f4e": containers whose id starts with these hex digits (1 to 64).
//
// It returns an error saying what was wrong and what was expected.
func ParseSelector(s string) (Selector, error) {
	if len(s) > maxSelector {
		return Selector{}, fmt.Errorf("container selector longer than %d bytes", maxSelector)
	}
	if strings.TrimSpace(s) != s {
		return Selector{}, fmt.Errorf("container selector %q: leading or trailing space", s)
	}
	switch {
	case s == "":
		return Selector{}, errors.New("empty container selector: want a name, label:KEY[=VALUE] or id:PREFIX")
	case strings.HasPrefix(s, prefixLabel):
		kv := s[len(prefixLabel):]
		k, v, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return Selector{}, fmt.Errorf("container selector %q: empty label key, want label:KEY or label:KEY=VALUE", s)
		}
		if strings.ContainsFunc(k, isSpaceOrControl) {
			return Selector{}, fmt.Errorf("container selector %q: label key contains a space or control character", s)
		}
		if hasValue {
			return Selector{kind: selLabelValue, key: k, value: v}, nil
		}
		return Selector{kind: selLabel, key: k}, nil
	case strings.HasPrefix(s, prefixID):
		p := s[len(prefixID):]
		if p == "" || len(p) > 64 || !isHex(p) {
			return Selector{}, fmt.Errorf("container selector %q: want id: followed by 1 to 64 lowercase hex digits", s)
		}
		return Selector{kind: selID, key: p}, nil
	}
	name := strings.TrimPrefix(s, prefixName)
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		return Selector{}, fmt.Errorf("container selector %q: empty name", s)
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return !nameRune(r) }); i >= 0 {
		return Selector{}, fmt.Errorf("container selector %q: name has %q; container names are letters, digits, '_', '.', '-' (and * ? [ ] for a glob)", s, name[i:i+1])
	}
	if _, err := path.Match(name, ""); err != nil {
		return Selector{}, fmt.Errorf("container selector %q: bad glob: %w", s, err)
	}
	return Selector{kind: selName, key: name}, nil
}

// ParseSelectors parses a jail's list of selectors.
func ParseSelectors(specs []string) ([]Selector, error) {
	out := make([]Selector, 0, len(specs))
	for _, s := range specs {
		sel, err := ParseSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

func nameRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("_.-*?[]^!", r)
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// Match reports whether s selects c.
func (s Selector) Match(c Container) bool {
	switch s.kind {
	case selName:
		if s.key == c.Name {
			return true
		}
		ok, _ := path.Match(s.key, c.Name)
		return ok
	case selLabel:
		_, ok := c.Labels[s.key]
		return ok
	case selLabelValue:
		v, ok := c.Labels[s.key]
		return ok && v == s.value
	case selID:
		return strings.HasPrefix(c.ID, s.key)
	}
	return false
}

// String returns s in the syntax ParseSelector reads; ParseSelector(s.String())
// gives s back.
func (s Selector) String() string {
	switch s.kind {
	case selName:
		return s.key
	case selLabel:
		return prefixLabel + s.key
	case selLabelValue:
		return prefixLabel + s.key + "=" + s.value
	case selID:
		return prefixID + s.key
	}
	return ""
}

// MatchAny reports whether any of sels selects c.
func MatchAny(sels []Selector, c Container) bool {
	for _, s := range sels {
		if s.Match(c) {
			return true
		}
	}
	return false
}
