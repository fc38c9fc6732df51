// Package pytext decodes bytes to text the way Python does with
// bytes.decode("utf-8", "replace"), as fail2ban decodes log lines and
// journal fields: each maximal ill-formed subpart becomes one U+FFFD. It is
// the one home of that rule for the fail2ban emulation and the journal
// source, and must not import any other moat package.
package pytext

import (
	"strings"
	"unicode/utf8"
)

// Decode is s decoded as UTF-8 with Python's "replace" error handler. Go's
// own decoding gives one U+FFFD per byte of a truncated sequence; Python
// (following the Unicode standard's practice) gives one per maximal
// subpart.
func Decode(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || n > 1 {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += subpart(s[i:])
	}
	return b.String()
}

// subpart is the length of the maximal subpart of an ill-formed UTF-8
// sequence at the start of s (Unicode's Table 3-7 ranges), at least 1.
func subpart(s string) int {
	need, lo, hi := 0, byte(0x80), byte(0xbf)
	switch c := s[0]; {
	case c >= 0xc2 && c <= 0xdf:
		need = 1
	case c == 0xe0:
		need, lo = 2, 0xa0
	case c >= 0xe1 && c <= 0xec, c == 0xee, c == 0xef:
		need = 2
	case c == 0xed:
		need, hi = 2, 0x9f
	case c == 0xf0:
		need, lo = 3, 0x90
	case c >= 0xf1 && c <= 0xf3:
		need = 3
	case c == 0xf4:
		need, hi = 3, 0x8f
	}
	n := 1
	for k := 0; k < need && n < len(s) && s[n] >= lo && s[n] <= hi; k++ {
		n, lo, hi = n+1, 0x80, 0xbf
	}
	return n
}
