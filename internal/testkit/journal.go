package testkit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// JournalSocket is where systemd-journald takes native messages.
const JournalSocket = "/run/systemd/journal/socket"

// TestJournal writes entries to the running systemd-journald under an
// identifier (SYSLOG_IDENTIFIER) of its own, so that a test reads back
// only what it wrote: match on Match.
type TestJournal struct {
	t testing.TB
	// Ident is the test's SYSLOG_IDENTIFIER: the test's name and a random
	// suffix.
	Ident string
	// Journalctl is the path of journalctl.
	Journalctl string
}

// Journal returns a TestJournal, or ends the test (Missing) when
// journalctl, systemd-cat or logger is not installed or no journald takes
// messages. Where systemd is not PID 1 (containers, CI), journald runs
// standalone: as root, `mkdir -p /run/systemd/journal` and start
// /lib/systemd/systemd-journald in the background (.ci/run does).
func Journal(t testing.TB) *TestJournal {
	t.Helper()
	jc := tool(t, "journalctl", "systemd")
	tool(t, "systemd-cat", "systemd")
	tool(t, "logger", "util-linux (bsdutils)")
	c, err := net.Dial("unixgram", JournalSocket)
	if err != nil {
		Missing(t, "systemd-journald is not running (%v); start it as root with "+
			"`mkdir -p /run/systemd/journal && /lib/systemd/systemd-journald &` (.ci/run does)", err)
	}
	c.Close()
	var rnd [4]byte
	rand.Read(rnd[:])
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return &TestJournal{t: t, Ident: "moattest-" + name + "-" + hex.EncodeToString(rnd[:]), Journalctl: jc}
}

// Match is the journalmatch term that selects this test's entries.
func (j *TestJournal) Match() string { return "SYSLOG_IDENTIFIER=" + j.Ident }

// Lines writes each message as one entry, in order, through systemd-cat
// (journald's stdout stream), as a service's output is logged. A message
// must not hold a newline.
func (j *TestJournal) Lines(msgs ...string) {
	j.t.Helper()
	cmd := exec.Command("systemd-cat", "-t", j.Ident)
	cmd.Stdin = strings.NewReader(strings.Join(msgs, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		j.t.Fatalf("systemd-cat: %v: %s", err, out)
	}
}

// Entry writes one entry with the given fields (FIELD=value, each value
// any bytes but a newline) through `logger --journald`, which sends them
// as they are; SYSLOG_IDENTIFIER is the test's unless a field sets it.
func (j *TestJournal) Entry(fields ...string) {
	j.t.Helper()
	var in bytes.Buffer
	hasIdent := false
	for _, f := range fields {
		if strings.ContainsRune(f, '\n') {
			j.t.Fatalf("journal field %q holds a newline", f)
		}
		hasIdent = hasIdent || strings.HasPrefix(f, "SYSLOG_IDENTIFIER=")
		in.WriteString(f + "\n")
	}
	if !hasIdent {
		in.WriteString("SYSLOG_IDENTIFIER=" + j.Ident + "\n")
	}
	cmd := exec.Command("logger", "--journald")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		j.t.Fatalf("logger --journald: %v: %s", err, out)
	}
}
