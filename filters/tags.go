package filters

import (
	"fmt"
	"strings"
)

// Patterns the address tags expand to. They are written for this project.
// The group names are fail2ban's (ip4, ip6, dns, cidr), so a regex can
// refer to them and `moat regex -o` can print them.
const (
	ip4Pattern = `[0-9]{1,3}(?:\.[0-9]{1,3}){3}`
	// ip4Mapped is the "::ffff:" an IPv4 address may be written after
	// (as fail2ban: lower case, 4 to 6 f's); it stays outside the group.
	ip4Mapped = `(?:::f{4,6}:)?`
	// ip6Pattern is fail2ban's: groups of 1 to 4 hex digits with "::"
	// compression, no dotted IPv4 tail (an IPv4-mapped address is matched
	// by the ip4 tag; one written in hex, ::ffff:c000:201, becomes IPv4
	// when parsed). What it accepts is validated by netip.ParseAddr.
	ip6Pattern = `(?:[0-9A-Fa-f]{1,4}::?|::){1,7}(?:[0-9A-Fa-f]{1,4}|:)`
	dnsPattern = `[0-9A-Za-z_.-]*[0-9A-Za-z_]`

	tagIP4    = ip4Mapped + `(?P<ip4>` + ip4Pattern + `)`
	tagIP6    = `(?P<ip6>` + ip6Pattern + `)`
	tagDNS    = `(?P<dns>` + dnsPattern + `)`
	tagCIDR   = `(?P<cidr>[0-9]+)` // any number, as fail2ban's \d+
	tagAddr   = `\[?(?:` + tagIP4 + `|` + tagIP6 + `)\]?`
	tagHost   = `(?:` + tagAddr + `|` + tagDNS + `)`
	tagSubnet = `\[?(?:` + tagIP4 + `|` + tagIP6 + `)(?:/` + tagCIDR + `)?\]?`
	// tagSkipLines stands for any number of whole lines between two
	// parts of a multi-line failregex (maxlines > 1); the lines it spans
	// stay in the buffer for later matches.
	tagSkipLines = `\n(?P<` + skipGroup + `>(?:(?:.*\n)*?))`
)

// skipGroup names the groups <SKIPLINES> expands to.
const skipGroup = "skiplines"

// builtinTags are the tags every filter knows. <F-IP4/> and the like are
// fail2ban's spellings of the same patterns.
var builtinTags = map[string]string{
	"HOST":      tagHost,
	"ADDR":      tagAddr,
	"IP4":       tagIP4,
	"IP6":       tagIP6,
	"DNS":       tagDNS,
	"CIDR":      tagCIDR,
	"SUBNET":    tagSubnet,
	"SKIPLINES": tagSkipLines,
	"F-IP4/":    tagIP4,
	"F-IP6/":    tagIP6,
	"F-DNS/":    tagDNS,
	"F-ADDR/":   tagAddr,
	"F-CIDR/":   tagCIDR,
	"F-SUBNET/": tagSubnet,
	// Self-closing fields with fail2ban's default patterns: an id without
	// spaces, a port (number or service name).
	"F-ID/":   `(?P<fid>\S+)`,
	"F-PORT/": `(?P<fport>\w+)`,
}

// fieldGroup maps an <F-NAME> tag to its group name, as fail2ban names them.
func fieldGroup(name string) string {
	switch name {
	case "ID":
		return "fid"
	case "PORT":
		return "fport"
	default:
		return strings.ToLower(name)
	}
}

// isFieldName accepts the NAME of <F-NAME>: upper-case letters, digits, _ and -.
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxTagPasses bounds recursive tag substitution (and so self-reference).
const maxTagPasses = 20

// substituteTags replaces <tags> in s until none is left that it knows:
// variables (through lookup, which has already interpolated %(x)s), the
// address tags, and <F-NAME>…</F-NAME> fields. Innermost tags go first, so
// <mdre-<mode>> works. Unknown tags stay as written. Named-group syntax
// ((?P<name>…) and \k<name>) is never taken for a tag.
func substituteTags(s string, lookup func(string) (string, bool, error)) (string, error) {
	for pass := 0; ; pass++ {
		out, changed, err := substituteOnce(s, lookup)
		if err != nil {
			return "", err
		}
		if !changed {
			return out, nil
		}
		if pass >= maxTagPasses {
			return "", fmt.Errorf("tags nested deeper than %d (a tag refers to itself?) in %q", maxTagPasses, truncate(s, 200))
		}
		s = out
	}
}

func substituteOnce(s string, lookup func(string) (string, bool, error)) (string, bool, error) {
	if !strings.Contains(s, "<") {
		return s, false, nil
	}
	var b strings.Builder
	changed := false
	i := 0
	for i < len(s) {
		lt := strings.IndexByte(s[i:], '<')
		if lt < 0 {
			break
		}
		lt += i
		gt := strings.IndexByte(s[lt+1:], '>')
		if gt < 0 {
			break
		}
		gt += lt + 1
		name := s[lt+1 : gt]
		b.WriteString(s[i:lt])
		if !isTagName(name) || isGroupSyntax(s, lt) {
			// Not a tag here (or one with a tag inside it: the inner
			// one is found when scanning resumes after this '<').
			b.WriteByte('<')
			i = lt + 1
			continue
		}
		rep, ok, err := resolveTag(name, s[gt+1:], lookup)
		if err != nil {
			return "", false, err
		}
		if !ok {
			b.WriteString(s[lt : gt+1])
		} else {
			b.WriteString(rep)
			changed = true
		}
		i = gt + 1
	}
	b.WriteString(s[i:])
	return b.String(), changed, nil
}

func resolveTag(name, rest string, lookup func(string) (string, bool, error)) (string, bool, error) {
	if v, ok, err := lookup(name); err != nil || ok {
		return v, ok, err
	}
	if p, ok := builtinTags[name]; ok {
		return p, true, nil
	}
	if f, ok := strings.CutPrefix(name, "F-"); ok && isFieldName(f) {
		g := fieldGroup(f)
		if !strings.Contains(rest, "</"+name+">") {
			// A lone <F-NOFAIL> (and the like) marks the match.
			return "(?P<" + g + ">)", true, nil
		}
		return "(?P<" + g + ">", true, nil
	}
	if f, ok := strings.CutPrefix(name, "/F-"); ok && isFieldName(f) {
		return ")", true, nil
	}
	return "", false, nil
}

// isTagName accepts fail2ban's tag names: letters, digits, _ - / and '.'.
func isTagName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '/', c == '.':
		default:
			return false
		}
	}
	return true
}

// isGroupSyntax reports whether the '<' at i belongs to (?P<name>, (?<name>
// or \k<name>.
func isGroupSyntax(s string, i int) bool {
	return strings.HasSuffix(s[:i], "(?P") || strings.HasSuffix(s[:i], "(?") ||
		strings.HasSuffix(s[:i], `\k`) || strings.HasSuffix(s[:i], `\g`)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
