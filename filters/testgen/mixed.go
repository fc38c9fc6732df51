package testgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// MixedLog is one log file of a mixed host: the services of a web, mail and
// FTP server write to a few files, each in its own format.
type MixedLog struct {
	// Name is the file's base name, such as "syslog" or "nginx-error.log".
	Name string
	// Share is the part of all generated lines this file gets (the
	// shares add up to 1).
	Share float64
	// Filters are the stock fail2ban filters that read this file.
	Filters []string
	gen     func(w io.Writer, n int, seed int64) error
}

// Generate writes n lines of the file; the output depends only on n and
// seed. It returns the first write error.
func (l MixedLog) Generate(w io.Writer, n int, seed int64) error {
	if err := l.gen(w, n, seed); err != nil {
		return fmt.Errorf("generate %s: %w", l.Name, err)
	}
	return nil
}

// MixedLogs are the files of a host running ten commonly jailed services:
// one syslog file shared by sshd, postfix, dovecot, vsftpd and proftpd (and
// CRON, sudo and logind noise), nginx's error log (nginx-http-auth,
// nginx-limit-req) and access log (nginx-botsearch), Apache's error log
// (apache-auth), and fail2ban's own log (recidive). A filter reads the
// file of its service only: fail2ban's filters expect one format each.
var MixedLogs = []MixedLog{
	{"syslog", 0.6, []string{"sshd", "postfix", "dovecot", "vsftpd", "proftpd"}, GenerateSyslog},
	{"nginx-error.log", 0.12, []string{"nginx-http-auth", "nginx-limit-req"}, GenerateNginxError},
	{"nginx-access.log", 0.15, []string{"nginx-botsearch"}, GenerateNginxAccess},
	{"apache-error.log", 0.08, []string{"apache-auth"}, GenerateApacheError},
	{"fail2ban.log", 0.05, []string{"recidive"}, GenerateFail2banLog},
}

// lineClock advances a log's time by up to a second a line.
type lineClock struct {
	r *rand.Rand
	t time.Time
}

func (c *lineClock) next() time.Time {
	c.t = c.t.Add(time.Duration(c.r.IntN(1000)) * time.Millisecond)
	return c.t
}

// generateLines is the loop of every generator: line writes line i with
// the generator's random source and time.
func generateLines(w io.Writer, n int, seed int64, stream uint64, line func(w *bufio.Writer, r *rand.Rand, t time.Time) error) error {
	r := rand.New(rand.NewPCG(uint64(seed), stream))
	bw := bufio.NewWriterSize(w, 64<<10)
	c := lineClock{r: r, t: authLogStart}
	for i := 0; i < n; i++ {
		if err := line(bw, r, c.next()); err != nil {
			return err
		}
	}
	return bw.Flush()
}

var (
	mailUsers = []string{"info", "sales", "admin", "office", "test", "webmaster", "contact", "support"}
	domains   = []string{"example.com", "example.net", "example.org"}
	paths     = []string{"/", "/index.html", "/about", "/blog/2026/11/moat", "/static/app.css", "/static/app.js", "/favicon.ico", "/api/v1/status"}
	botPaths  = []string{"/wp-login.php", "/wp-admin.php", "/phpmyadmin/index.php", "/pma/scripts/setup.php", "/admin/phpMyAdmin/", "/cgi-bin/luci", "/roundcube/", "/webmail/", "/mysqladmin/"}
	agents    = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", "curl/8.11.0", "Go-http-client/1.1", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
)

// GenerateSyslog writes n lines of a mail, FTP and SSH server's syslog:
// about a quarter interleaved sshd connections (as GenerateSSHDLog), and
// postfix, dovecot, vsftpd and proftpd lines, failures and normal
// traffic alike, among CRON, sudo and systemd-logind lines.
func GenerateSyslog(w io.Writer, n int, seed int64) error {
	pid := 30000
	var conns sshdConns
	return generateLines(w, n, seed, 0x7379736c, func(w *bufio.Writer, r *rand.Rand, t time.Time) error {
		stamp := t.Format(time.Stamp)
		pid += 1 + r.IntN(3)
		var err error
		switch p := r.IntN(100); {
		case p < 30:
			err = otherLine(w, r, stamp, pid, 40+r.IntN(60))
		case p < 55:
			cpid, msg := conns.next(r, &pid)
			_, err = fmt.Fprintf(w, "%s mx sshd[%d]: %s\n", stamp, cpid, msg)
		case p < 73:
			_, err = fmt.Fprintf(w, "%s mx postfix/%s\n", stamp, postfixLine(r, pid))
		case p < 85:
			_, err = fmt.Fprintf(w, "%s mx dovecot: %s\n", stamp, dovecotLine(r, pid))
		case p < 93:
			_, err = fmt.Fprintf(w, "%s mx vsftpd[%d]: %s\n", stamp, pid, vsftpdLine(r))
		default:
			_, err = fmt.Fprintf(w, "%s mx proftpd[%d]: %s\n", stamp, pid, proftpdLine(r))
		}
		return err
	})
}

// postfixLine is a postfix line after "postfix/".
func postfixLine(r *rand.Rand, pid int) string {
	a, g := badAddr(r), goodAddr(r)
	u, d := mailUsers[r.IntN(len(mailUsers))], domains[r.IntN(len(domains))]
	q := fmt.Sprintf("%010X", r.Uint64()&0xffffffffff)
	switch r.IntN(14) {
	case 0:
		return fmt.Sprintf("smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 554 5.7.1 <%s@example.invalid>: Relay access denied; from=<spam@example.invalid> to=<%s@example.invalid> proto=ESMTP helo=<bot>", pid, a, u, u)
	case 1:
		return fmt.Sprintf("smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 450 4.7.1 Client host rejected: cannot find your hostname, [%s]; from=<%s@%s> to=<%s@%s> proto=ESMTP helo=<localhost>", pid, a, a, u, d, u, d)
	case 2:
		return fmt.Sprintf("smtpd[%d]: NOQUEUE: reject: RCPT from mail.example.invalid[%s]: 550 5.1.1 <nobody%d@%s>: Recipient address rejected: User unknown in virtual mailbox table; from=<x@example.invalid> to=<nobody%d@%s> proto=ESMTP helo=<mail.example.invalid>", pid, a, r.IntN(100), d, r.IntN(100), d)
	case 3:
		return fmt.Sprintf("smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", pid, a)
	case 4:
		return fmt.Sprintf("smtpd[%d]: improper command pipelining after CONNECT from unknown[%s]: EHLO bot\\r\\n", pid, a)
	case 5:
		return fmt.Sprintf("smtpd[%d]: lost connection after AUTH from unknown[%s]", pid, a)
	case 6:
		return fmt.Sprintf("smtpd[%d]: disconnect from unknown[%s] ehlo=1 auth=0/1 quit=1 commands=2/3", pid, a)
	case 7:
		return fmt.Sprintf("smtpd[%d]: connect from unknown[%s]", pid, a)
	case 8:
		return fmt.Sprintf("smtpd[%d]: connect from mail.example.org[%s]", pid, g)
	case 9:
		return fmt.Sprintf("smtpd[%d]: %s: client=mail.example.org[%s]", pid, q, g)
	case 10:
		return fmt.Sprintf("cleanup[%d]: %s: message-id=<%016x@example.org>", pid, q, r.Uint64())
	case 11:
		return fmt.Sprintf("qmgr[%d]: %s: from=<%s@example.org>, size=%d, nrcpt=1 (queue active)", pid, q, u, 1000+r.IntN(90000))
	case 12:
		return fmt.Sprintf("lmtp[%d]: %s: to=<%s@%s>, relay=mx[private/dovecot-lmtp], delay=0.1, delays=0.05/0/0.01/0.04, dsn=2.0.0, status=sent (250 2.0.0 <%s@%s> Saved)", pid, q, u, d, u, d)
	default:
		return fmt.Sprintf("smtpd[%d]: disconnect from mail.example.org[%s] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", pid, g)
	}
}

// dovecotLine is a dovecot line after "dovecot: ".
func dovecotLine(r *rand.Rand, pid int) string {
	a, g := badAddr(r), goodAddr(r)
	u := mailUsers[r.IntN(len(mailUsers))]
	proto := []string{"imap", "pop3", "submission"}[r.IntN(3)]
	switch r.IntN(9) {
	case 0:
		return fmt.Sprintf("%s-login: Disconnected (auth failed, %d attempts in %d secs): user=<%s>, method=PLAIN, rip=%s, lip=198.51.100.1, TLS, session=<%012x>", proto, 1+r.IntN(3), 2+r.IntN(10), u, a, r.Uint64()&0xffffffffffff)
	case 1:
		return fmt.Sprintf("auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=%s rhost=%s", u, a)
	case 2:
		return fmt.Sprintf("auth-worker(%d): pam(%s,%s,<%012x>): pam_authenticate() failed: Authentication failure (password mismatch?)", pid, u, a, r.Uint64()&0xffffffffffff)
	case 3:
		return fmt.Sprintf("auth: passwd-file(%s,%s,<%012x>): unknown user", u, a, r.Uint64()&0xffffffffffff)
	case 4:
		return fmt.Sprintf("%s-login: Disconnected (no auth attempts in %d secs): user=<>, rip=%s, lip=198.51.100.1, TLS handshaking: Connection closed, session=<%012x>", proto, r.IntN(10), a, r.Uint64()&0xffffffffffff)
	case 5, 6:
		return fmt.Sprintf("%s-login: Login: user=<%s>, method=PLAIN, rip=%s, lip=198.51.100.1, mpid=%d, TLS, session=<%012x>", proto, u, g, pid, r.Uint64()&0xffffffffffff)
	case 7:
		return fmt.Sprintf("imap(%s)<%d><%012x>: Logged out in=%d out=%d deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0", u, pid, r.Uint64()&0xffffffffffff, r.IntN(1000), r.IntN(100000))
	default:
		return fmt.Sprintf("lmtp(%d): Connect from local", pid)
	}
}

// vsftpdLine is a vsftpd line after "vsftpd[pid]: ".
func vsftpdLine(r *rand.Rand) string {
	a, g := badAddr(r), goodAddr(r)
	switch r.IntN(5) {
	case 0, 1:
		return fmt.Sprintf("pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=%s rhost=%s", badUsers[r.IntN(len(badUsers))], a)
	case 2:
		return fmt.Sprintf("[%s] FAIL LOGIN: Client \"%s\"", badUsers[r.IntN(len(badUsers))], a)
	case 3:
		return fmt.Sprintf("[%s] OK LOGIN: Client \"%s\"", users[r.IntN(len(users))], g)
	default:
		return fmt.Sprintf("CONNECT: Client \"%s\"", g)
	}
}

// proftpdLine is a proftpd line after "proftpd[pid]: ".
func proftpdLine(r *rand.Rand) string {
	a, g := badAddr(r), goodAddr(r)
	switch r.IntN(7) {
	case 0:
		return fmt.Sprintf("mx (%s[%s]) - USER %s: no such user found from %s [%s] to 198.51.100.1:21", a, a, badUsers[r.IntN(len(badUsers))], a, a)
	case 1:
		return fmt.Sprintf("mx (%s[%s]) - USER root (Login failed): Incorrect password", a, a)
	case 2:
		return fmt.Sprintf("mx (%s[%s]) - SECURITY VIOLATION: root login attempted", a, a)
	case 3:
		return fmt.Sprintf("mx (%s[%s]) - Maximum login attempts (3) exceeded, connection refused", a, a)
	case 4:
		return fmt.Sprintf("mx (%s[%s]) - USER %s: Login successful.", g, g, users[r.IntN(len(users))])
	case 5:
		return fmt.Sprintf("mx (%s[%s]) - FTP session opened.", g, g)
	default:
		return fmt.Sprintf("mx (%s[%s]) - FTP session closed.", g, g)
	}
}

// GenerateNginxError writes n lines of nginx's error.log: wrong basic-auth
// passwords and unknown users, requests over a limit_req zone, missing
// files asked for by scanners, TLS handshake errors and upstream warnings.
func GenerateNginxError(w io.Writer, n int, seed int64) error {
	conn := 1000
	return generateLines(w, n, seed, 0x6e67696e, func(w *bufio.Writer, r *rand.Rand, t time.Time) error {
		conn += 1 + r.IntN(5)
		a, g := badAddr(r), goodAddr(r)
		d := domains[r.IntN(len(domains))]
		head := fmt.Sprintf("%s [%%s] %d#%d: *%d ", t.Format("2006/01/02 15:04:05"), 800+r.IntN(4), 0, conn)
		var level, msg string
		switch r.IntN(10) {
		case 0, 1:
			level, msg = "error", fmt.Sprintf("user \"%s\": password mismatch, client: %s, server: %s, request: \"GET /admin/ HTTP/1.1\", host: \"%s\"", mailUsers[r.IntN(len(mailUsers))], a, d, d)
		case 2:
			level, msg = "error", fmt.Sprintf("user \"%s\" was not found in \"/etc/nginx/htpasswd\", client: %s, server: %s, request: \"GET /private/ HTTP/1.1\", host: \"%s\", referrer: \"https://%s/\"", badUsers[r.IntN(len(badUsers))], a, d, d, d)
		case 3, 4:
			level, msg = []string{"error", "warn"}[r.IntN(2)], fmt.Sprintf("limiting requests, excess: %d.%03d by zone \"perip\", client: %s, server: %s, request: \"GET %s HTTP/1.1\", host: \"%s\"", r.IntN(20), r.IntN(1000), a, d, paths[r.IntN(len(paths))], d)
		case 5:
			level, msg = "error", fmt.Sprintf("open() \"/var/www/html%s\" failed (2: No such file or directory), client: %s, server: %s, request: \"GET %s HTTP/1.1\", host: \"%s\"", botPaths[r.IntN(len(botPaths))], a, d, botPaths[r.IntN(len(botPaths))], d)
		case 6:
			level, msg = "error", fmt.Sprintf("no user/password was provided for basic authentication, client: %s, server: %s, request: \"GET /admin/ HTTP/1.1\", host: \"%s\"", g, d, d)
		case 7:
			level, msg = "crit", fmt.Sprintf("SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking, client: %s, server: 0.0.0.0:443", a)
		case 8:
			level, msg = "warn", fmt.Sprintf("an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/%d/%02d/%010d while reading upstream, client: %s, server: %s, request: \"GET /api/v1/export HTTP/1.1\", upstream: \"http://127.0.0.1:8080/api/v1/export\", host: \"%s\"", r.IntN(10), r.IntN(100), r.IntN(1e9), g, d, d)
		default:
			level, msg = "info", fmt.Sprintf("client %s closed keepalive connection", g)
		}
		_, err := fmt.Fprintf(w, head+"%s\n", level, msg)
		return err
	})
}

// GenerateNginxAccess writes n lines of nginx's access.log in the combined
// format: visitors, and scanners asking for admin pages that do not exist.
func GenerateNginxAccess(w io.Writer, n int, seed int64) error {
	return generateLines(w, n, seed, 0x61636365, func(w *bufio.Writer, r *rand.Rand, t time.Time) error {
		addr, path, status := goodAddr(r), paths[r.IntN(len(paths))], 200
		method := "GET"
		switch p := r.IntN(100); {
		case p < 20:
			addr, path, status = badAddr(r), botPaths[r.IntN(len(botPaths))], 404
			method = []string{"GET", "POST", "HEAD"}[r.IntN(3)]
		case p < 25:
			addr, path, status = badAddr(r), "/.env", 404
		case p < 30:
			status = 304
		case p < 33:
			path, status = "/wp-login.php", 200 // a real WordPress answers
		}
		_, err := fmt.Fprintf(w, "%s - - [%s] \"%s %s HTTP/1.1\" %d %d \"-\" \"%s\"\n",
			addr, t.Format("02/Jan/2006:15:04:05 -0700"), method, path, status, 100+r.IntN(20000), agents[r.IntN(len(agents))])
		return err
	})
}

// GenerateApacheError writes n lines of Apache's error.log: basic-auth
// failures, clients denied by configuration, and normal notices.
func GenerateApacheError(w io.Writer, n int, seed int64) error {
	pid := 4000
	return generateLines(w, n, seed, 0x61706163, func(w *bufio.Writer, r *rand.Rand, t time.Time) error {
		pid += r.IntN(2)
		a, g := badAddr(r), goodAddr(r)
		stamp := t.Format("Mon Jan 02 15:04:05.000000 2006")
		client := func(addr string) string { return fmt.Sprintf("[client %s:%d]", addr, port(r)) }
		var mod, msg, who string
		switch r.IntN(9) {
		case 0, 1:
			mod, who, msg = "auth_basic:error", client(a), fmt.Sprintf("AH01618: user %s not found: /private", badUsers[r.IntN(len(badUsers))])
		case 2:
			mod, who, msg = "auth_basic:error", client(a), fmt.Sprintf("AH01617: user %s: authentication failure for \"/private\": Password Mismatch", users[r.IntN(len(users))])
		case 3:
			mod, who, msg = "authz_core:error", client(a), "AH01630: client denied by server configuration: /var/www/html/.git/config"
		case 4:
			mod, who, msg = "php:error", client(g), "PHP Warning:  Undefined variable $page in /var/www/html/index.php on line 12"
		case 5:
			mod, who, msg = "core:error", client(a), "AH00126: Invalid URI in request GET /%%% HTTP/1.1"
		case 6:
			mod, who, msg = "ssl:info", client(g), "AH01964: Connection to child 3 established (server www.example.com:443)"
		default:
			mod, msg = "mpm_event:notice", "AH00489: Apache/2.4.62 (Debian) configured -- resuming normal operations"
		}
		var err error
		if who == "" {
			_, err = fmt.Fprintf(w, "[%s] [%s] [pid %d:tid %d] %s\n", stamp, mod, pid, 140000+r.IntN(1000), msg)
		} else {
			_, err = fmt.Fprintf(w, "[%s] [%s] [pid %d:tid %d] %s %s\n", stamp, mod, pid, 140000+r.IntN(1000), who, msg)
		}
		return err
	})
}

// GenerateFail2banLog writes n lines of fail2ban's own log: bans in other
// jails (what recidive counts), bans in recidive itself, unbans, restored
// bans and found failures.
func GenerateFail2banLog(w io.Writer, n int, seed int64) error {
	jails := []string{"sshd", "postfix", "dovecot", "nginx-http-auth", "nginx-botsearch", "apache-auth"}
	return generateLines(w, n, seed, 0x66326262, func(w *bufio.Writer, r *rand.Rand, t time.Time) error {
		stamp := t.Format("2006-01-02 15:04:05,000")
		a := badAddr(r)
		j := jails[r.IntN(len(jails))]
		var err error
		switch r.IntN(8) {
		case 0, 1:
			_, err = fmt.Fprintf(w, "%s fail2ban.actions        [812]: NOTICE  [%s] Ban %s\n", stamp, j, a)
		case 2:
			_, err = fmt.Fprintf(w, "%s fail2ban.actions        [812]: NOTICE  [recidive] Ban %s\n", stamp, a)
		case 3:
			_, err = fmt.Fprintf(w, "%s fail2ban.actions        [812]: NOTICE  [%s] Unban %s\n", stamp, j, a)
		case 4:
			_, err = fmt.Fprintf(w, "%s fail2ban.actions        [812]: NOTICE  [%s] Restore Ban %s\n", stamp, j, a)
		case 5:
			_, err = fmt.Fprintf(w, "%s fail2ban.filter         [812]: INFO    [%s] Found %s - %s\n", stamp, j, a, t.Format("2006-01-02 15:04:05"))
		case 6:
			_, err = fmt.Fprintf(w, "%s fail2ban.actions        [812]: WARNING [%s] %s already banned\n", stamp, j, a)
		default:
			_, err = fmt.Fprintf(w, "%s fail2ban.filter         [812]: INFO    [%s] Found %s - %s\n", stamp, j, goodAddr(r), t.Format("2006-01-02 15:04:05"))
		}
		return err
	})
}
