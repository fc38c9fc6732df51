package filters

import (
	"path/filepath"
	"testing"
	"time"
)

// TestFail2banStyleFilter loads a filter written in the style of fail2ban's
// own (includes with a .local, DEFAULT prefix chains, prefregex with
// <F-MLFID>/<F-CONTENT>, conditionals and lookaheads, <mdre-<mode>>,
// datepattern {^LN-BEG}) and checks what it reports.
func TestFail2banStyleFilter(t *testing.T) {
	l := &Loader{Dirs: []string{filepath.Join("testdata", "f2bstyle")}, Location: time.UTC}
	ref := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for _, spec := range []string{"sshd-like", "sshd-like[mode=ddos]"} {
		f, err := l.Load(spec)
		if err != nil {
			t.Fatal(err)
		}
		backtrack := 0
		for _, r := range f.fail {
			if r.engine == engineBacktrack {
				backtrack++
				if r.super == nil {
					t.Errorf("%s: %q has no RE2 superset", spec, r.src)
				}
			}
		}
		if backtrack != 1 {
			t.Errorf("%s: %d regexes on regexp2, want 1 (the conditional one)", spec, backtrack)
		}
		ddos := spec != "sshd-like"
		cases := []struct {
			line, addr, user string
			ok               bool
		}{
			{"Nov 26 21:19:40 gw sshd[1]: Failed password for invalid user a b from 192.0.2.1 port 22 ssh2", "192.0.2.1", "a b", true},
			{"Nov 26 21:19:40 gw sshd[1]: Failed password for root from 2001:db8::1 port 22 ssh2", "2001:db8::1", "root", true},
			{"Nov 26 21:19:40 gw sshd[1]: Failed publickey for root from 192.0.2.2 port 22 ssh2: RSA SHA256:x", "", "", false},
			{"Nov 26 21:19:40 gw sshd[1]: error: PAM: Authentication failure for bob from 192.0.2.3", "192.0.2.3", "bob", true},
			{"Nov 26 21:19:40 gw sshd[1]: Invalid user x from 192.0.2.4 port 5", "192.0.2.4", "x", true},
			{"Nov 26 21:19:40 gw sshd[1]: Did not receive identification string from 192.0.2.5", "192.0.2.5", "", ddos},
			{"Nov 26 21:19:40 gw sshd[1]: Accepted password for root from 192.0.2.6 port 22 ssh2", "", "", false},
			// {^LN-BEG}: a date after the host name is not found, so the prefix fails.
			{"gw Nov 26 21:19:40 sshd[1]: Invalid user x from 192.0.2.7 port 5", "", "", false},
		}
		for _, c := range cases {
			t.Run(spec+"/"+c.line, func(t *testing.T) {
				m, ok := f.Match(c.line, ref)
				if ok != c.ok {
					t.Fatalf("Match = %v, want %v", ok, c.ok)
				}
				if ok && (m.Addr.String() != c.addr || m.User != c.user) {
					t.Errorf("Match = %v %q, want %s %q", m.Addr, m.User, c.addr, c.user)
				}
			})
		}
	}
}
