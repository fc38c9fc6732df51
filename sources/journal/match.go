package journal

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Match selects journal entries, in fail2ban's journalmatch syntax: a list
// of groups, any of which may match ("+" between them); within a group
// every term must match, except that terms of the same field are
// alternatives, as journald itself reads them (sd_journal_add_match). Each
// term is FIELD=value, compared with the field's whole value. An empty Match
// selects every entry.
type Match [][]string

// ParseMatch reads a journalmatch as fail2ban does: each line is split into
// words as Python's shlex.split splits it (quotes and backslashes as a POSIX
// shell reads them), "+" separates groups, and the lines are alternatives,
// as if joined by "+". Each term must be FIELD=value, with a field name that
// journald accepts: A–Z, 0–9 and "_", not starting with a digit nor with
// "__" (the entry's address fields, which cannot be matched), at most 64
// characters. A value may be empty and may hold any byte but NUL.
func ParseMatch(s string) (Match, error) {
	var m Match
	for n, line := range strings.Split(s, "\n") {
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("journalmatch line %d: %w", n+1, err)
		}
		if len(words) == 0 {
			continue
		}
		group := []string{}
		for i, w := range words {
			if w == "+" {
				if len(group) == 0 || i == len(words)-1 {
					return nil, fmt.Errorf("journalmatch line %d: %q must stand between two terms", n+1, "+")
				}
				m = append(m, group)
				group = []string{}
				continue
			}
			if err := checkTerm(w); err != nil {
				return nil, fmt.Errorf("journalmatch line %d: %w", n+1, err)
			}
			group = append(group, w)
		}
		m = append(m, group)
	}
	return m, nil
}

// maxField is the longest field name journald stores.
const maxField = 64

func checkTerm(t string) error {
	field, value, ok := strings.Cut(t, "=")
	switch {
	case !ok:
		return fmt.Errorf("term %q is not FIELD=value", t)
	case field == "":
		return fmt.Errorf("term %q has no field name", t)
	case len(field) > maxField:
		return fmt.Errorf("term %q: field name longer than %d characters", t, maxField)
	case field[0] >= '0' && field[0] <= '9':
		return fmt.Errorf("term %q: a field name cannot start with a digit", t)
	case strings.HasPrefix(field, "__"):
		return fmt.Errorf("term %q: fields starting with \"__\" are the entry's address (cursor, timestamps) and cannot be matched", t)
	case strings.IndexByte(value, 0) >= 0:
		return fmt.Errorf("term %q: the value holds a NUL byte", t)
	}
	for _, c := range []byte(field) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("term %q: field names hold only A-Z, 0-9 and _ (not %q)", t, rune(c))
		}
	}
	return nil
}

// splitWords splits a line as Python's shlex.split does (POSIX mode, no
// comments): whitespace separates words; single quotes keep everything
// literally; in double quotes a backslash escapes only '"' and '\';
// outside quotes a backslash escapes any character; quoted parts join the
// word they touch, and "" is an empty word.
func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("no character after the last backslash")
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("no closing quotation")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("no closing quotation")
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// normal is m with each group's terms sorted and made unique, and the
// groups sorted and made unique: the same selection however written.
func (m Match) normal() Match {
	var out Match
	for _, g := range m {
		g = slices.Clone(g)
		slices.Sort(g)
		out = append(out, slices.Compact(g))
	}
	slices.SortFunc(out, slices.Compare)
	return slices.CompactFunc(out, slices.Equal)
}

// String is m in journalmatch syntax, in the order written, with terms
// that shlex would split single-quoted: ParseMatch reads it back as m.
func (m Match) String() string {
	var b strings.Builder
	for i, g := range m {
		if i > 0 {
			b.WriteString(" + ")
		}
		for j, t := range g {
			if j > 0 {
				b.WriteByte(' ')
			}
			if strings.ContainsAny(t, " \t\r\n'\"\\") {
				t = "'" + strings.ReplaceAll(t, "'", `'\''`) + "'"
			}
			b.WriteString(t)
		}
	}
	return b.String()
}

// Key is the stream's key for the position the jail engine stores:
// "journal:" and the normalised match, so that the same selection written
// in another order resumes from the same cursor, and a changed one starts
// afresh.
func (m Match) Key() string { return KeyPrefix + m.normal().String() }

// KeyPrefix begins the Path of every journal Position.
const KeyPrefix = "journal:"

// Args are journalctl's match arguments for m: the terms, with "+"
// between groups, which journalctl reads as fail2ban's reader does.
func (m Match) Args() []string {
	var a []string
	for i, g := range m {
		if i > 0 {
			a = append(a, "+")
		}
		a = append(a, g...)
	}
	return a
}
