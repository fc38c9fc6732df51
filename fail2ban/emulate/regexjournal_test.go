package emulate

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
	"github.com/moatproj/moat/sources/journal"
)

// TestRegexJournalAgainstFail2banRegex writes sshd-like entries to the
// journal under the test's own identifier and compares `moat regex -m
// MATCH systemd-journal REGEX` with fail2ban-regex (python-systemd) given
// the same arguments: the report with the lines shown dated by their
// entries, -v's failure times, and -o.
func TestRegexJournalAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if out, err := exec.Command("/usr/bin/python3", "-c", "import systemd.journal").CombinedOutput(); err != nil {
		testkit.Missing(t, "fail2ban-regex systemd-journal needs python3-systemd: %v: %s", err, out)
	}
	j := testkit.Journal(t)
	j.Entry("MESSAGE=Failed password for root from 192.0.2.7 port 22 ssh2", "SYSLOG_PID=4242")
	j.Lines(
		"Invalid user bob from 192.0.2.8 port 40022",
		"Connection closed by 192.0.2.9 port 50000 [preauth]",
		"Failed password for invalid user eve from 2001:db8::5 port 22 ssh2",
		"# a comment-like message",
		"Accepted publickey for alice from 192.0.2.10 port 1 ssh2",
	)
	m, err := journal.ParseMatch(j.Match())
	if err != nil {
		t.Fatal(err)
	}
	// Wait for journald to have them all.
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := 0
		if err := journal.Dump(context.Background(), m, journal.Options{}, func(journal.Entry) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal has %d of the 6 entries written", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	normalize := normalizeReport
	re := `(?:Failed \S+|Invalid user|Connection closed by) .*?(?:from )?<HOST> port \d+`
	cases := [][]string{
		{"-m", j.Match(), "systemd-journal", re},
		{"-v", "--print-all-matched", "-m", j.Match(), "systemd-journal", re, "invalid user eve"},
		{"-o", `<fid>\t<time>`, "--journalmatch", j.Match(), "systemd-journal", re},
		{"-o", "msg", "-m", j.Match(), "systemd-journal", re},
	}
	for _, args := range cases {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("fail2ban-regex: %v: %s%s", err, out.String(), errb.String())
			}
			r := moatRegex(t, nil, args...)
			if r.code != 0 {
				t.Fatalf("moat regex: exit %d: %s", r.code, r.stderr)
			}
			if got, want := normalize(r.stdout), normalize(out.String()); got != want {
				t.Errorf("output differs:\n--- moat:\n%s\n--- fail2ban-regex:\n%s", got, want)
			}
			if !strings.Contains(out.String(), "192.0.2.") {
				t.Errorf("fail2ban-regex found nothing: the entries exercise nothing:\n%s", out.String())
			}
		})
	}
	// moat also takes the match as systemd-journal's option (fail2ban-regex
	// fails on it).
	a := moatRegex(t, nil, "-m", j.Match(), "systemd-journal", re)
	b := moatRegex(t, nil, "systemd-journal[journalmatch="+j.Match()+"]", re)
	if normalize(a.stdout) != normalize(b.stdout) || b.code != 0 {
		t.Errorf("systemd-journal[journalmatch=...] differs from -m:\n%s\n%s%s", b.stdout, a.stdout, b.stderr)
	}
}
