package configs

import (
	"os"
	"path/filepath"

	"github.com/moatproj/moat/sources/journal"
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

// JournalMatch selects journal entries, in fail2ban's journalmatch syntax
// (the journal source's Match: read with journal.ParseMatch).
type JournalMatch = journal.Match

// wantJournalMatch is what a journalmatch may be, for messages.
const wantJournalMatch = "FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd"
