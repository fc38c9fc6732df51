// Package filters turns log text into failures: it reads filters in fail2ban's
// filter.d format, substitutes <HOST> and the other tags, detects the date
// written in a line, and matches. It ships moat's own built-in filters.
// It must not decide bans: that is the jail package's job.
package filters

import (
	"net/netip"
	"time"
)

// Match is what a filter found in one log line.
type Match struct {
	// Addr is the address the failure is attributed to (<HOST>, <ADDR>, …).
	Addr netip.Addr
	// Time is the time written in the line; when the line has no date it is
	// the reference time passed to Filter.Match.
	Time time.Time
	// User is the <F-USER> group, if the regex has one.
	User string
	// ID is the <F-ID> group, if any.
	ID string
	// Prefix is set when the regex captured a subnet (<SUBNET> with a
	// /bits part, or <CIDR>): the masked prefix of Addr; zero otherwise.
	Prefix netip.Prefix
	// Lines are the log lines the failure is made of, as fail2ban lists
	// its matches: set by a Stream with KeepMatches only. (A multi-line
	// filter gives them without their dates.)
	Lines []string
	// Fields is fail2ban's dictionary of the failure (every named group
	// of its regexes, merged over a connection group), as
	// fail2ban-regex -o row prints it: set by a Stream with KeepFields
	// only.
	Fields []Field
}

// trimEOL is strings.TrimRight(s, "\r\n") without building a cutset on
// every call (it runs on every line).
func trimEOL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
