// Package testgen writes synthetic, realistic log text for tests and
// benchmarks of the filters. It is deterministic: the same seed gives the
// same bytes. It must not be used by the daemon itself.
package testgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// authLogStart is the time of the first generated line.
var authLogStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

var (
	users      = []string{"deploy", "alice", "bob", "backup", "git"}
	badUsers   = []string{"admin", "test", "oracle", "ubuntu", "user", "postgres", "pi", "support", "ftpuser", "guest"}
	commands   = []string{"/usr/bin/systemctl restart nginx", "/usr/bin/apt update", "/usr/bin/journalctl -u moat", "/bin/cat /var/log/auth.log"}
	cronTarget = []string{"root", "www-data"}
)

// GenerateAuthLog writes n lines of a Debian-style /var/log/auth.log: sshd
// (accepted and failed logins, invalid users, PAM failures, pre-auth
// disconnects), CRON, sudo and systemd-logind. About 15% of the lines are
// sshd authentication failures, from documentation addresses (IPv4 and
// IPv6). The output depends only on n and seed. It returns the first write
// error.
func GenerateAuthLog(w io.Writer, n int, seed int64) error {
	r := rand.New(rand.NewPCG(uint64(seed), 0x6d6f6174))
	bw := bufio.NewWriterSize(w, 64<<10)
	t := authLogStart
	pid := 10000
	for i := 0; i < n; i++ {
		t = t.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
		pid += 1 + r.IntN(3)
		stamp := t.Format(time.Stamp)
		var err error
		switch p := r.IntN(100); {
		case p < 15:
			err = failure(bw, r, stamp, pid)
		case p < 40:
			client := goodAddr(r)
			u := users[r.IntN(len(users))]
			switch r.IntN(4) {
			case 0:
				_, err = fmt.Fprintf(bw, "%s gw sshd[%d]: Accepted publickey for %s from %s port %d ssh2: ED25519 SHA256:%016x\n", stamp, pid, u, client, port(r), r.Uint64())
			case 1:
				_, err = fmt.Fprintf(bw, "%s gw sshd[%d]: pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)\n", stamp, pid, u, 1000+r.IntN(5))
			case 2:
				_, err = fmt.Fprintf(bw, "%s gw sshd[%d]: Received disconnect from %s port %d:11: disconnected by user\n", stamp, pid, client, port(r))
			default:
				_, err = fmt.Fprintf(bw, "%s gw sshd[%d]: Disconnected from user %s %s port %d\n", stamp, pid, u, client, port(r))
			}
		default:
			err = otherLine(bw, r, stamp, pid, p)
		}
		if err != nil {
			return fmt.Errorf("generate auth log: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("generate auth log: %w", err)
	}
	return nil
}

// otherLine writes one auth.log line of a program other than sshd: CRON
// (p < 65), sudo (p < 80) or systemd-logind. p is in [40, 100).
func otherLine(w io.Writer, r *rand.Rand, stamp string, pid, p int) error {
	var err error
	switch {
	case p < 65:
		if r.IntN(2) == 0 {
			_, err = fmt.Fprintf(w, "%s gw CRON[%d]: pam_unix(cron:session): session opened for user %s(uid=0) by (uid=0)\n", stamp, pid, cronTarget[r.IntN(2)])
		} else {
			_, err = fmt.Fprintf(w, "%s gw CRON[%d]: pam_unix(cron:session): session closed for user %s\n", stamp, pid, cronTarget[r.IntN(2)])
		}
	case p < 80:
		u := users[r.IntN(len(users))]
		if r.IntN(2) == 0 {
			_, err = fmt.Fprintf(w, "%s gw sudo[%d]:   %s : TTY=pts/%d ; PWD=/home/%s ; USER=root ; COMMAND=%s\n", stamp, pid, u, r.IntN(4), u, commands[r.IntN(len(commands))])
		} else {
			_, err = fmt.Fprintf(w, "%s gw sudo[%d]: pam_unix(sudo:session): session opened for user root(uid=0) by %s(uid=%d)\n", stamp, pid, u, 1000+r.IntN(5))
		}
	default:
		u := users[r.IntN(len(users))]
		if r.IntN(2) == 0 {
			_, err = fmt.Fprintf(w, "%s gw systemd-logind[412]: New session %d of user %s.\n", stamp, r.IntN(5000), u)
		} else {
			_, err = fmt.Fprintf(w, "%s gw systemd-logind[412]: Session %d logged out. Waiting for processes to exit.\n", stamp, r.IntN(5000))
		}
	}
	return err
}

// failure writes one sshd authentication failure line.
func failure(w io.Writer, r *rand.Rand, stamp string, pid int) error {
	a := badAddr(r)
	bad := badUsers[r.IntN(len(badUsers))]
	var err error
	switch r.IntN(5) {
	case 0:
		_, err = fmt.Fprintf(w, "%s gw sshd[%d]: Failed password for invalid user %s from %s port %d ssh2\n", stamp, pid, bad, a, port(r))
	case 1:
		_, err = fmt.Fprintf(w, "%s gw sshd[%d]: Failed password for root from %s port %d ssh2\n", stamp, pid, a, port(r))
	case 2:
		_, err = fmt.Fprintf(w, "%s gw sshd[%d]: Invalid user %s from %s port %d\n", stamp, pid, bad, a, port(r))
	case 3:
		_, err = fmt.Fprintf(w, "%s gw sshd[%d]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=root\n", stamp, pid, a)
	default:
		_, err = fmt.Fprintf(w, "%s gw sshd[%d]: Connection closed by authenticating user root %s port %d [preauth]\n", stamp, pid, a, port(r))
	}
	return err
}

func port(r *rand.Rand) int { return 1024 + r.IntN(64000) }

// badAddr is an attacker: 192.0.2.0/24, 203.0.113.0/24 or 2001:db8:bad::/48.
func badAddr(r *rand.Rand) string {
	switch r.IntN(5) {
	case 0, 1:
		return fmt.Sprintf("192.0.2.%d", 1+r.IntN(254))
	case 2, 3:
		return fmt.Sprintf("203.0.113.%d", 1+r.IntN(254))
	default:
		return fmt.Sprintf("2001:db8:bad::%x", 1+r.IntN(0xfffe))
	}
}

// goodAddr is a legitimate client: 198.51.100.0/24 or 2001:db8:600d::/48.
func goodAddr(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		return fmt.Sprintf("2001:db8:600d::%x", 1+r.IntN(0xff))
	}
	return fmt.Sprintf("198.51.100.%d", 1+r.IntN(254))
}
