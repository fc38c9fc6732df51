package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// journalSSHD writes one entry as sshd logs it to the journal, marked with
// the test's own MOAT_TEST field, which the jail's journalmatch selects.
func journalSSHD(tj *testkit.TestJournal, msg string) {
	tj.Entry("MESSAGE="+msg, "SYSLOG_IDENTIFIER=sshd", "SYSLOG_PID=4242", "MOAT_TEST="+tj.Ident)
}

func sshdJournalFailure(addr string, n int) string {
	return fmt.Sprintf("Failed password for invalid user admin%d from %s port %d ssh2", n, addr, 40000+n)
}

// journalConfig is a daemon configuration whose sshd jail reads the
// journal entries of tj.
func journalConfig(t *testing.T, dir string, tj *testkit.TestJournal) (cfg, socket string) {
	t.Helper()
	socket = filepath.Join(dir, "moat.sock")
	text := fmt.Sprintf(`state_dir: %s
socket: %s
firewall: {backend: nftables, table: moat}
jails:
  sshd:
    filter: sshd
    backend: systemd
    journalmatch: MOAT_TEST=%s
    maxretry: 5
    findtime: 1h
    bantime: 1h
`, filepath.Join(dir, "state"), socket, tj.Ident)
	cfg = filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, socket
}

// TestEndToEndJournalCrashRestart: a daemon bans from sshd's entries in
// the real journal into the kernel; killed with kill -9 while entries are
// being written and started again, it counts every entry exactly once (it
// resumes after the cursor of the last entry it counted).
//
// As with the file test, each address of "five" fails exactly maxretry
// times (banned only if no entry is lost), each of "four" maxretry-1 times
// (banned only if an entry is counted twice).
func TestEndToEndJournalCrashRestart(t *testing.T) {
	needRoot(t)
	tj := testkit.Journal(t)
	ns := newNetNS(t)
	dir := t.TempDir()
	cfg, socket := journalConfig(t, dir, tj)
	d := startDaemon(t, ns, cfg, socket)

	early := "192.0.2.10"
	for i := range 5 {
		journalSSHD(tj, sshdJournalFailure(early, i))
	}
	testkit.WaitFor(t, 10*time.Second, "the ban from journal entries", func() bool { return len(cliBans(t, socket)) == 1 })
	if kb := kernelBans(t, ns, "moat"); len(kb) != 1 || kb[0].Prefix.Addr().String() != early {
		t.Fatalf("kernel holds %v, want %s", kb, early)
	}

	var msgs []string
	five := make([]string, 12)
	four := make([]string, 12)
	for i := range five {
		five[i] = fmt.Sprintf("198.51.100.%d", i+1)
		four[i] = fmt.Sprintf("203.0.113.%d", i+1)
	}
	for round := range 5 {
		for i := range five {
			msgs = append(msgs, sshdJournalFailure(five[i], round*100+i))
			if round < 4 {
				msgs = append(msgs, sshdJournalFailure(four[i], round*100+i))
			}
			msgs = append(msgs, "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)")
		}
	}
	crashAt, restartAt := len(msgs)*2/5, len(msgs)*3/5
	for i, m := range msgs {
		if i == crashAt {
			d.kill()
		}
		if i == restartAt {
			d = startDaemon(t, ns, cfg, socket)
		}
		journalSSHD(tj, m)
	}
	last := "192.0.2.99"
	for i := range 5 {
		journalSSHD(tj, sshdJournalFailure(last, 900+i))
	}
	// The daemon reads the journal in order: once the last address is
	// banned, every entry before it has been counted.
	testkit.WaitFor(t, 20*time.Second, last+" banned", func() bool {
		return slices.ContainsFunc(cliBans(t, socket), func(b banJSON) bool { return b.IP == last })
	})
	var got []string
	for _, b := range cliBans(t, socket) {
		got = append(got, b.IP)
	}
	if want := 1 + len(five) + 1; len(got) != want {
		t.Errorf("%d bans, want %d: %v", len(got), want, got)
	}
	for _, a := range four {
		if slices.Contains(got, a) {
			t.Errorf("%s failed 4 times (maxretry 5) but is banned: an entry was counted twice", a)
		}
	}
	for _, a := range five {
		if !slices.Contains(got, a) {
			t.Errorf("%s failed 5 times but is not banned: entries were lost", a)
		}
	}
	if kb := kernelBans(t, ns, "moat"); len(kb) != len(got) {
		t.Errorf("kernel set holds %d bans, moat lists %d", len(kb), len(got))
	}
}
