package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
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

// TestRunFail2banAsInstalledJournal: `moat run --fail2ban DIR` with Debian's
// /etc/fail2ban as installed (its jail.d/defaults-debian.conf enables sshd,
// backend auto, and this host has no sshd log file) reads sshd's entries
// from the journal with the filter's journalmatch (_COMM=sshd) and bans
// into nftables.
func TestRunFail2banAsInstalledJournal(t *testing.T) {
	needRoot(t)
	testkit.Journal(t)
	files := map[string]string{}
	if _, err := os.Stat("/var/log/auth.log"); err == nil {
		// auto would read the file here; the test is about the journal.
		files["jail.d/zz-moat-test.local"] = "[sshd]\nbackend = systemd\n"
		t.Log("/var/log/auth.log exists on this host: sshd is set to backend = systemd")
	}
	f2b := copyFail2ban(t, files)
	dir := t.TempDir()
	socket := filepath.Join(dir, "moat.sock")
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf("state_dir: %s\nsocket: %s\nfirewall: {backend: nftables, table: moat}\n", filepath.Join(dir, "state"), socket)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := newNetNS(t)
	d := startDaemon(t, ns, cfg, socket, "--fail2ban", f2b)
	if !strings.Contains(d.logs.String(), `"jail reading the journal","jail":"sshd"`) {
		t.Fatalf("sshd does not read the journal:\n%s", d.logs.String())
	}
	// journald records a sender's command name (_COMM) itself, from the
	// running process: entries go through systemd-cat's stream from a copy
	// of cat named sshd, kept running until they are counted.
	sshd := filepath.Join(dir, "sshd")
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", cat, sshd).CombinedOutput(); err != nil {
		t.Fatalf("copy cat: %v: %s", err, out)
	}
	// An address of this run only: the journal keeps earlier runs' entries.
	addr := fmt.Sprintf("198.51.100.%d", 1+time.Now().UnixNano()%250)
	cmd := exec.Command("systemd-cat", "-t", "sshd", sshd)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	for i := range 5 {
		if _, err := fmt.Fprintln(in, sshdJournalFailure(addr, i)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 15*time.Second, addr+" banned by the installed sshd jail", func() bool {
		return slices.ContainsFunc(cliBans(t, socket), func(b banJSON) bool { return b.IP == addr && b.Jail == "sshd" })
	})
	kb := kernelBans(t, ns, "moat")
	if !slices.ContainsFunc(kb, func(b firewall.Ban) bool { return b.Prefix.Addr().String() == addr }) {
		t.Errorf("kernel bans = %+v, want %s", kb, addr)
	}
}
