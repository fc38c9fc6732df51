package emulate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/internal/pytext"
)

// Python's formatting, as fail2ban-regex and fail2ban-client print their
// results: the one place moat writes it (regex.go and client.go use it).
// pyRepr is the one repr of a str; every quoted value goes through it.

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

// pyOptions renders "k=v, k2=v2" as Python prints the dict of them.
func pyOptions(s string) string {
	var parts []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		rest = strings.TrimSpace(rest)
		var v string
		if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
			end := strings.IndexByte(rest[1:], rest[0])
			if end < 0 {
				end = len(rest) - 1
			}
			v, rest = rest[1:end+1], rest[min(len(rest), end+2):]
		} else {
			c := strings.IndexByte(rest, ',')
			if c < 0 {
				c = len(rest)
			}
			v, rest = strings.TrimSpace(rest[:c]), rest[c:]
		}
		s = strings.TrimPrefix(strings.TrimSpace(rest), ",")
		parts = append(parts, pyRepr(strings.TrimSpace(k))+": "+pyRepr(v))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// shortstr shortens s to 53 characters as fail2ban-regex does.
func shortstr(s string) string {
	if len(s) > 53 {
		return s[:50] + "..."
	}
	return s
}

// pyTime prints t as fail2ban-regex prints a failure's time: an int when
// the line wrote a zone (or a TAI64N label: filters gives those in a fixed
// zone or UTC), else Python's repr of a float: whole seconds from mktime
// for a date read in the local zone, and the float of the number written
// for Unix time, whose fraction filters keeps to the nanosecond (and only
// there: dates keep whole seconds, as fail2ban's do). The float closest to
// those nanoseconds is the one fail2ban computed.
func pyTime(t time.Time) string {
	if t.Location() != time.Local {
		return strconv.FormatInt(t.Unix(), 10)
	}
	f, err := strconv.ParseFloat(fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()), 64)
	if err != nil {
		return strconv.FormatInt(t.Unix(), 10) + ".0"
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// pyAddr prints a as fail2ban does (through the C library's inet_ntop):
// like netip, except that an IPv6 address whose first 96 bits are zero and
// whose next 16 are not is written with its last 32 bits dotted
// (::192.0.2.1, where netip writes ::c000:201).
func pyAddr(a netip.Addr) string {
	b := a.As16()
	if !a.Is6() || a.Is4In6() || [12]byte(b[:12]) != [12]byte{} || b[12]|b[13] == 0 {
		return a.String()
	}
	return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
}

// pprintList prints a list as fail2ban-regex does.
func pprintList(out func(string), l []string, header string) {
	if len(l) == 0 {
		return
	}
	s := ""
	if header != "" {
		s = "|- " + header + "\n"
	}
	out(s + "|  " + strings.Join(l, "\n|  ") + "\n`-")
}

// pyGroups prints a match's named groups as Python prints their dict.
func pyGroups(gs []filters.Group) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		v := "None"
		if g.Set {
			v = pyRepr(g.Value)
		}
		parts[i] = pyRepr(g.Name) + ": " + v
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// pyText is s decoded as Python decodes log lines (pytext.Decode).
func pyText(s string) string { return pytext.Decode(s) }

// pySpace is Python's str.isspace for one character.
func pySpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }
