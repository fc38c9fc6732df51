package testgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// maxOpenConns is how many sshd connections GenerateSSHDLog keeps open at
// once: their lines interleave. During a burst (a botnet's scan, now and
// then) up to burstConns are open: more than fail2ban keeps connection
// groups for (100), so the oldest open connections lose what they had.
const (
	maxOpenConns = 12
	burstConns   = 160
	burstLines   = 3000 // sshd lines a burst lasts
	burstEvery   = 20000
)

// sshConn is one sshd connection (one pid) that has lines left to write.
type sshConn struct {
	pid   int
	lines []string // messages after "sshd[pid]: ", in order
}

// GenerateSSHDLog writes n lines of a Debian-style /var/log/auth.log of a
// busy host where each sshd connection spans several lines under one pid and
// up to a dozen connections interleave (over a hundred in occasional
// bursts), as OpenSSH writes them with LogLevel
// VERBOSE: brute force runs, invalid users, several users in one connection,
// scanners that never authenticate (what the stock sshd filter's ddos mode
// counts), clients that cannot negotiate algorithms (extra mode), failed
// public keys, one-line refusals, and legitimate logins with their sessions,
// some after a mistyped password; plus CRON, sudo and systemd-logind noise.
// Lines that carry no address (such as "Disconnecting: Too many
// authentication failures") need the connection's earlier lines, so the log
// exercises multi-line failure ids (<F-MLFID>). Attackers use
// 192.0.2.0/24, 203.0.113.0/24 and 2001:db8:bad::/48, legitimate clients
// 198.51.100.0/24 and 2001:db8:600d::/48. The output depends only on n and
// seed; connections still open after n lines are cut short. It returns the
// first write error.
func GenerateSSHDLog(w io.Writer, n int, seed int64) error {
	r := rand.New(rand.NewPCG(uint64(seed), 0x73736864))
	bw := bufio.NewWriterSize(w, 64<<10)
	t := authLogStart
	pid := 20000
	var conns sshdConns
	for i := 0; i < n; i++ {
		t = t.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
		stamp := t.Format(time.Stamp)
		var err error
		if p := r.IntN(100); p < 40 {
			pid += 1 + r.IntN(3)
			err = otherLine(bw, r, stamp, pid, 40+r.IntN(60))
		} else {
			cpid, msg := conns.next(r, &pid)
			_, err = fmt.Fprintf(bw, "%s gw sshd[%d]: %s\n", stamp, cpid, msg)
		}
		if err != nil {
			return fmt.Errorf("generate sshd log: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("generate sshd log: %w", err)
	}
	return nil
}

// sshdConns are the open sshd connections of a generated log.
type sshdConns struct {
	open  []*sshConn
	burst int // sshd lines left in the current burst
}

// next returns the pid and message of the next sshd line: from a new
// connection (its pid the next after *pid) now and then, else from a
// random open one.
func (s *sshdConns) next(r *rand.Rand, pid *int) (int, string) {
	limit := maxOpenConns
	if s.burst > 0 {
		s.burst--
		limit = burstConns
	} else if r.IntN(burstEvery) == 0 {
		s.burst = burstLines
	}
	if len(s.open) == 0 || len(s.open) < limit && r.IntN(3) == 0 {
		*pid += 1 + r.IntN(3)
		s.open = append(s.open, &sshConn{pid: *pid, lines: sshScript(r)})
	}
	k := r.IntN(len(s.open))
	c := s.open[k]
	msg := c.lines[0]
	if c.lines = c.lines[1:]; len(c.lines) == 0 {
		s.open = append(s.open[:k], s.open[k+1:]...)
	}
	return c.pid, msg
}

// sshScript returns the messages of one new sshd connection.
func sshScript(r *rand.Rand) []string {
	switch p := r.IntN(100); {
	case p < 22:
		return bruteForce(r)
	case p < 32:
		return invalidUser(r)
	case p < 37:
		return severalUsers(r)
	case p < 50:
		return scanner(r)
	case p < 58:
		return negotiation(r)
	case p < 63:
		return publicKeyProbe(r)
	case p < 73:
		return oneLiner(r)
	default:
		return legitimate(r)
	}
}

// connFrom is OpenSSH's VERBOSE first line of a connection.
func connFrom(a string, pt int) string {
	return fmt.Sprintf("Connection from %s port %d on 192.0.2.254 port 22 rdomain \"\"", a, pt)
}

// bruteForce is an attacker trying passwords for one user until sshd gives up.
func bruteForce(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	var l []string
	if r.IntN(3) > 0 {
		l = append(l, connFrom(a, pt))
	}
	user, who := "root", "authenticating user root"
	if r.IntN(2) == 0 {
		user = badUsers[r.IntN(len(badUsers))]
		who = "invalid user " + user
		l = append(l, fmt.Sprintf("Invalid user %s from %s port %d", user, a, pt))
	}
	for k := 1 + r.IntN(6); k > 0; k-- {
		switch r.IntN(4) {
		case 0:
			l = append(l, fmt.Sprintf("Failed keyboard-interactive/pam for %s from %s port %d ssh2", forUser(user, who), a, pt))
		case 1:
			l = append(l, fmt.Sprintf("error: PAM: Authentication failure for %s from %s", forUser(user, who), a))
		default:
			l = append(l, fmt.Sprintf("Failed password for %s from %s port %d ssh2", forUser(user, who), a, pt))
		}
	}
	switch r.IntN(7) {
	case 0:
		l = append(l,
			fmt.Sprintf("error: maximum authentication attempts exceeded for %s from %s port %d ssh2 [preauth]", forUser(user, who), a, pt),
			fmt.Sprintf("Disconnecting %s %s port %d: Too many authentication failures [preauth]", who, a, pt))
	case 1:
		l = append(l, fmt.Sprintf("Disconnecting: Too many authentication failures for %s [preauth]", user))
	case 2:
		l = append(l, fmt.Sprintf("Connection closed by %s %s port %d [preauth]", who, a, pt))
	case 3:
		l = append(l,
			fmt.Sprintf("Received disconnect from %s port %d:11: Bye Bye [preauth]", a, pt),
			fmt.Sprintf("Disconnected from %s %s port %d [preauth]", who, a, pt))
	case 4:
		l = append(l, fmt.Sprintf("Connection reset by %s %s port %d [preauth]", who, a, pt))
	case 5:
		l = append(l, "Read from socket failed: Connection reset by peer [preauth]")
	default:
		l = append(l, fmt.Sprintf("Postponed keyboard-interactive for %s from %s port %d ssh2 [preauth]", forUser(user, who), a, pt),
			fmt.Sprintf("Connection closed by %s port %d", a, pt))
	}
	return l
}

// forUser is how "Failed password for ..." names the user.
func forUser(user, who string) string {
	if user == "root" {
		return user
	}
	return who
}

// invalidUser is one attempt for a user that does not exist, with PAM's lines.
func invalidUser(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	u := badUsers[r.IntN(len(badUsers))]
	l := []string{
		fmt.Sprintf("Invalid user %s from %s port %d", u, a, pt),
		"pam_unix(sshd:auth): check pass; user unknown",
		fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s", a),
		fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", u, a, pt),
	}
	if r.IntN(2) == 0 {
		l = append(l, fmt.Sprintf("Received disconnect from %s port %d:11: Bye Bye [preauth]", a, pt))
	}
	return append(l, fmt.Sprintf("Disconnected from invalid user %s %s port %d [preauth]", u, a, pt))
}

// severalUsers tries more than one user name in one connection.
func severalUsers(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	l := []string{connFrom(a, pt)}
	for k := 2 + r.IntN(3); k > 0; k-- {
		u := badUsers[r.IntN(len(badUsers))]
		l = append(l,
			fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=%s", a, u),
			fmt.Sprintf("Failed none for invalid user %s from %s port %d ssh2", u, a, pt))
	}
	if r.IntN(2) == 0 {
		u, v := badUsers[r.IntN(len(badUsers))], badUsers[r.IntN(len(badUsers))]
		l = append(l, fmt.Sprintf("Disconnecting invalid user %s %s port %d: Change of username or service not allowed: (%s,ssh-connection) -> (%s,ssh-connection) [preauth]", u, a, pt, u, v))
	} else {
		l = append(l, fmt.Sprintf("Received disconnect from %s port %d:11: Bye Bye [preauth]", a, pt))
	}
	return l
}

// scanner connects and never authenticates: what ddos mode counts.
func scanner(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	var l []string
	if r.IntN(4) > 0 {
		l = append(l, connFrom(a, pt))
	}
	switch r.IntN(9) {
	case 0:
		l = append(l, fmt.Sprintf("Did not receive identification string from %s port %d", a, pt))
	case 1:
		l = append(l, "kex_exchange_identification: Connection closed by remote host",
			fmt.Sprintf("Connection closed by %s port %d", a, pt))
	case 2:
		l = append(l, "error: kex_exchange_identification: read: Connection reset by peer",
			fmt.Sprintf("Connection reset by %s port %d", a, pt))
	case 3:
		l = append(l, "error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"",
			fmt.Sprintf("banner exchange: Connection from %s port %d: invalid format", a, pt))
	case 4:
		l = append(l, fmt.Sprintf("Bad protocol version identification 'GET / HTTP/1.1' from %s port %d", a, pt))
	case 5:
		l = append(l, fmt.Sprintf("SSH: Server;Ltype: Version;Remote: %s-%d;Protocol: 2.0;Client: libssh2_1.9.0", a, pt),
			fmt.Sprintf("SSH: Server;Ltype: Kex;Remote: %s-%d;Enc: aes128-ctr;MAC: hmac-sha2-256;Comp: none [preauth]", a, pt),
			fmt.Sprintf("Connection closed by %s port %d [preauth]", a, pt))
	case 6:
		l = append(l, fmt.Sprintf("Connection closed by %s port %d [preauth]", a, pt))
	case 7:
		l = append(l, "error: kex_exchange_identification: banner line contains invalid characters",
			fmt.Sprintf("Disconnected from %s port %d", a, pt))
	default:
		l = append(l, fmt.Sprintf("Connection reset by %s port %d [preauth]", a, pt))
	}
	return l
}

// negotiation is a client offering only algorithms sshd refuses: what
// extra mode counts.
func negotiation(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	l := []string{connFrom(a, pt)}
	switch r.IntN(6) {
	case 0:
		l = append(l, fmt.Sprintf("Unable to negotiate with %s port %d: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1,diffie-hellman-group14-sha1 [preauth]", a, pt))
	case 1:
		l = append(l, fmt.Sprintf("Unable to negotiate with %s port %d: no matching host key type found. Their offer: ssh-rsa,ssh-dss [preauth]", a, pt))
	case 2:
		l = append(l, "fatal: Unable to negotiate a key exchange method [preauth]")
	case 3:
		l = append(l, "fatal: no matching cipher found: client aes128-cbc,3des-cbc server chacha20-poly1305@openssh.com,aes256-gcm@openssh.com [preauth]")
	case 4:
		l = append(l, fmt.Sprintf("Received disconnect from %s port %d:14: No supported authentication methods available [preauth]", a, pt))
	default:
		u := badUsers[r.IntN(len(badUsers))]
		l = append(l, fmt.Sprintf("Invalid user %s from %s port %d", u, a, pt),
			fmt.Sprintf("Received disconnect from %s port %d:14: No authentication methods available [preauth]", a, pt),
			fmt.Sprintf("Disconnected from invalid user %s %s port %d [preauth]", u, a, pt))
	}
	return l
}

// publicKeyProbe offers keys that are not accepted: failures for invalid
// users, not for known ones (the stock filter's publickey=nofail).
func publicKeyProbe(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	who, forWho := "authenticating user git", "git"
	if r.IntN(2) == 0 {
		u := badUsers[r.IntN(len(badUsers))]
		who, forWho = "invalid user "+u, "invalid user "+u
	}
	l := []string{connFrom(a, pt)}
	for k := 1 + r.IntN(3); k > 0; k-- {
		l = append(l, fmt.Sprintf("Failed publickey for %s from %s port %d ssh2: RSA SHA256:%016x", forWho, a, pt, r.Uint64()))
	}
	return append(l, fmt.Sprintf("Connection closed by %s %s port %d [preauth]", who, a, pt))
}

// oneLiner is a connection that sshd refuses in one line.
func oneLiner(r *rand.Rand) []string {
	a, pt := badAddr(r), port(r)
	u := badUsers[r.IntN(len(badUsers))]
	switch r.IntN(9) {
	case 0:
		return []string{fmt.Sprintf("User root from %s not allowed because not listed in AllowUsers", a)}
	case 1:
		return []string{fmt.Sprintf("User %s from %s not allowed because none of user's groups are listed in AllowGroups", u, a)}
	case 2:
		return []string{fmt.Sprintf("refused connect from scanner.example.net (%s)", a)}
	case 3:
		return []string{fmt.Sprintf("ROOT LOGIN REFUSED FROM %s port %d", a, pt)}
	case 4:
		return []string{fmt.Sprintf("error: Received disconnect from %s port %d:3: com.jcraft.jsch.JSchException: Auth fail [preauth]", a, pt)}
	case 5:
		return []string{fmt.Sprintf("User %s not allowed because account is locked", users[r.IntN(len(users))])}
	case 6:
		return []string{fmt.Sprintf("User not known to the underlying authentication module for %s from %s", u, a)}
	case 7:
		return []string{fmt.Sprintf("Illegal user %s from %s", u, a)}
	default:
		return []string{fmt.Sprintf("Authentication refused: bad ownership or modes for directory /home/%s", users[r.IntN(len(users))])}
	}
}

// legitimate is a user logging in, sometimes after a mistake, and out.
func legitimate(r *rand.Rand) []string {
	g, pt := goodAddr(r), port(r)
	u := users[r.IntN(len(users))]
	var l []string
	if r.IntN(2) == 0 {
		l = append(l, connFrom(g, pt))
	}
	switch r.IntN(6) {
	case 0:
		l = append(l, fmt.Sprintf("Failed password for %s from %s port %d ssh2", u, g, pt))
	case 1:
		l = append(l, fmt.Sprintf("Failed publickey for %s from %s port %d ssh2: ED25519 SHA256:%016x", u, g, pt, r.Uint64()))
	case 2:
		// A key that is not offered again: the client gives up.
		return append(l, fmt.Sprintf("Failed publickey for %s from %s port %d ssh2: RSA SHA256:%016x", u, g, pt, r.Uint64()),
			fmt.Sprintf("Connection closed by authenticating user %s %s port %d [preauth]", u, g, pt))
	case 3:
		// A health check that only opens the connection.
		return append(l, fmt.Sprintf("Connection closed by %s port %d", g, pt))
	}
	method := "publickey"
	if r.IntN(3) == 0 {
		method = "password"
	}
	uid := 1000 + r.IntN(5)
	return append(l,
		fmt.Sprintf("Accepted %s for %s from %s port %d ssh2", method, u, g, pt),
		fmt.Sprintf("pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)", u, uid),
		fmt.Sprintf("Received disconnect from %s port %d:11: disconnected by user", g, pt),
		fmt.Sprintf("Disconnected from user %s %s port %d", u, g, pt),
		fmt.Sprintf("pam_unix(sshd:session): session closed for user %s", u))
}
