package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Backends a jail may name, with fail2ban's names. polling and pyinotify
// both mean the files (moat follows them the same way whichever is
// named); systemd means the systemd journal.
const (
	BackendAuto      = "auto"
	BackendPolling   = "polling"
	BackendPyinotify = "pyinotify"
	BackendSystemd   = "systemd"
)

// Backends lists the backend: values a YAML jail accepts.
var Backends = []string{BackendAuto, BackendPolling, BackendPyinotify, BackendSystemd}

// UsesJournal reports whether a jail with this backend and logpath reads
// the systemd journal: always with systemd; with auto when no logpath
// pattern names an existing file (exists says whether one does; nil takes
// every pattern as existing); never with polling, pyinotify or "".
func UsesJournal(backend string, logpath []string, exists func(pattern string) bool) bool {
	switch backend {
	case BackendSystemd:
		return true
	case BackendAuto:
		for _, p := range logpath {
			if exists == nil || exists(p) {
				return false
			}
		}
		return true
	}
	return false
}

// LogExists reports whether pattern (a path or a glob) names at least one
// existing file, as fail2ban's jail reader checks a logpath. Load gives it
// to Parse to work out the auto backend.
func LogExists(pattern string) bool {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return false
	}
	for _, m := range matches {
		if _, err := os.Stat(m); err == nil {
			return true
		}
	}
	return false
}

// JournalMatch selects journal entries as journalctl's matches and
// fail2ban's journalmatch do: an entry is read when it meets any of the
// alternatives; an alternative is FIELD=value terms that must all hold
// (journald takes two terms of the same field as either/or). nil or empty
// reads every entry.
type JournalMatch [][]string

// String writes m in fail2ban's syntax: the terms of an alternative
// separated by spaces, alternatives by " + "; a term that needs it is
// quoted as a shell would.
func (m JournalMatch) String() string {
	alts := make([]string, len(m))
	for i, alt := range m {
		terms := make([]string, len(alt))
		for k, t := range alt {
			terms[k] = shellQuote(t)
		}
		alts[i] = strings.Join(terms, " ")
	}
	return strings.Join(alts, " + ")
}

// Args is m as journalctl's arguments: the terms, with "+" between
// alternatives.
func (m JournalMatch) Args() []string {
	var out []string
	for i, alt := range m {
		if i > 0 {
			out = append(out, "+")
		}
		out = append(out, alt...)
	}
	return out
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n'\"\\$`#") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// wantJournalMatch is what a journalmatch may be, for messages.
const wantJournalMatch = "FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd"

// ParseJournalMatch reads a journalmatch in fail2ban's syntax: each line
// is split into words as a shell would (quotes keep spaces), a word "+"
// separates alternatives, and the lines are alternatives too. Every other
// word must be FIELD=value with a journal field name (capital letters,
// digits and '_', not starting with a digit). Blank text gives nil.
func ParseJournalMatch(s string) (JournalMatch, error) {
	var m JournalMatch
	for _, line := range strings.Split(s, "\n") {
		words, err := shellWords(line)
		if err != nil {
			return nil, err
		}
		if len(words) == 0 {
			continue
		}
		alt := []string{}
		for _, w := range append(words, "+") {
			if w != "+" {
				if err := checkMatchTerm(w); err != nil {
					return nil, err
				}
				alt = append(alt, w)
				continue
			}
			if len(alt) == 0 {
				return nil, errors.New("has an empty alternative (a '+' with no match before or after it)")
			}
			m = append(m, alt)
			alt = []string{}
		}
	}
	return m, nil
}

// checkMatchTerm checks one FIELD=value term as journald does.
func checkMatchTerm(w string) error {
	field, _, ok := strings.Cut(w, "=")
	if !ok {
		return fmt.Errorf("has %q, which is not FIELD=value", w)
	}
	if field == "" {
		return fmt.Errorf("has %q, which has no field name", w)
	}
	if len(field) > 64 {
		return fmt.Errorf("has %q, whose field name is longer than journald's 64 characters", w)
	}
	for i, r := range field {
		switch {
		case r >= 'A' && r <= 'Z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("has %q, whose field name %q is not a journal field (capital letters, digits and '_', not starting with a digit)", w, field)
		}
	}
	return nil
}

// shellWords splits s as Python's shlex.split does (which fail2ban uses on
// journalmatch): on white space, with '…' and "…" quoting and backslash
// escapes.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			if quote == '"' && r != '\\' && r != '"' {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\':
			esc, in = true, true
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	switch {
	case quote != 0:
		return nil, errors.New("has a quote that is not closed")
	case esc:
		return nil, errors.New("ends with a lone backslash")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
