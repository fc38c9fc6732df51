package emulate

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// f2bRegex runs the real fail2ban-regex with env added to the
// environment and returns its standard output.
func f2bRegex(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("fail2ban-regex %q: %v: %s%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// TestRegexLineEndsAgainstFail2banRegex: a last line without a newline is
// not read (fail2ban-regex waits for its end) unless it ends in '\r', and
// every '\r' before a line's end goes: the same lines, failures and
// summary as fail2ban-regex.
func TestRegexLineEndsAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	fail := func(n int) string {
		return "Jan 10 10:00:0" + string(rune('0'+n)) + " host sshd[1]: Failed password for root from 192.0.2." + string(rune('0'+n)) + " port 22 ssh2"
	}
	cases := map[string]string{
		"unterminated":         fail(1) + "\n" + fail(2),
		"ends in CR":           fail(1) + "\n" + fail(2) + "\r",
		"CR CR LF":             fail(1) + "\r\r\n" + fail(2) + "\r\n",
		"only an unterminated": fail(3),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			log := writeFile(t, t.TempDir(), "x.log", text)
			re := `Failed password for \S+ from <HOST> port \d+`
			want := f2bRegex(t, bin, nil, "-o", "<fid>\t<time>", log, re)
			got := moatRegex(t, nil, "-o", "<fid>\t<time>", log, re)
			if got.stdout != want {
				t.Errorf("-o differs:\nmoat:\n%q\nfail2ban-regex:\n%q", got.stdout, want)
			}
			want, got = linesSummary.FindString(f2bRegex(t, bin, nil, log, re)), moatRegex(t, nil, log, re)
			if linesSummary.FindString(got.stdout) != want {
				t.Errorf("summary: moat %q, fail2ban-regex %q", linesSummary.FindString(got.stdout), want)
			}
		})
	}
}

// posixTZ is the zone fail2ban's own tests run in, as a POSIX rule.
const posixTZ = "CET-01CEST-02,M3.5.0,M10.5.0"

// TestRegexPosixTZAgainstFail2banRegex: with TZ holding a POSIX rule
// string, dates without a zone are read in that zone, as fail2ban-regex
// (through the C library) reads them, winter and summer. The test runs
// itself again with TZ set, since the process's zone is read at start.
func TestRegexPosixTZAgainstFail2banRegex(t *testing.T) {
	if os.Getenv("TZ") != posixTZ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestRegexPosixTZAgainstFail2banRegex$", "-test.v")
		cmd.Env = append(os.Environ(), "TZ="+posixTZ)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
			t.Fatalf("with TZ=%s: %v\n%s", posixTZ, err, out)
		}
		return
	}
	bin := testkit.Fail2banRegex(t)
	log := writeFile(t, t.TempDir(), "x.log",
		"2005-01-23 21:59:59 Failed password for root from 192.0.2.1 port 22\n"+
			"2005-07-01 12:00:00 Failed password for root from 192.0.2.2 port 22\n")
	re := `Failed password for \S+ from <HOST> port \d+`
	want := f2bRegex(t, bin, nil, "-o", "<fid>\t<time>", log, re)
	got := moatRegex(t, nil, "-o", "<fid>\t<time>", log, re)
	if got.stdout != want {
		t.Errorf("-o differs:\nmoat:\n%s\nfail2ban-regex:\n%s", got.stdout, want)
	}
}
