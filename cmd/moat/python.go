package main

import (
	"fmt"
	"strings"
	"unicode"
)

// Python's formatting, as fail2ban-regex and fail2ban-client print their
// results: the one place moat writes it (regex.go and f2bclient.go use it).

// pyRepr is Python 3's repr of a str: single quotes, or double quotes when
// the text holds a single quote and no double one; backslash escapes for
// the quote, the backslash, \t \n \r, and \xNN, \uNNNN or \UNNNNNNNN for
// what Python does not print as it is. A byte that is not UTF-8 is U+FFFD,
// as fail2ban decodes log lines (errors="replace").
func pyRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case pyPrintable(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyPrintable is Python's str.isprintable for one character: not in the
// Unicode categories Other (Cc, Cf, Cs, Co, Cn) or Separator (Zl, Zp, Zs)
// but the space.
func pyPrintable(r rune) bool {
	if r == ' ' {
		return true
	}
	return !unicode.In(r, unicode.Cc, unicode.Cf, unicode.Cs, unicode.Co, unicode.Zl, unicode.Zp, unicode.Zs) &&
		(unicode.IsGraphic(r) || unicode.IsPrint(r))
}

// pyList is Python's repr of a list of str.
func pyList(ss []string) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = pyRepr(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
