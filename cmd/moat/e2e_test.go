package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	gnft "github.com/google/nftables"

	"github.com/moatproj/moat/internal/testkit"
)

// TestEndToEndBanBlocksConnection: five failure lines appended to the log →
// the address is in `moat bans --json` and in the kernel set, and a client
// in a second namespace can no longer open a TCP connection to a server in
// the first; `moat unban` → it can again.
func TestEndToEndBanBlocksConnection(t *testing.T) {
	needRoot(t)
	server, client := newNetNS(t), newNetNS(t)
	link(t, server, client)
	addr := serveTCP(t, server, "192.0.2.1:0")
	if !reaches(t, client, addr) {
		t.Fatalf("client cannot reach %s before any ban", addr)
	}

	dir := t.TempDir()
	cfg, socket, logPath := testConfig(t, dir, "nftables", "")
	appendFile(t, logPath, noise(0))
	d := startDaemon(t, server, cfg, socket)
	env := map[string]string{"MOAT_SOCKET": socket}

	for i := 1; i <= 4; i++ {
		appendFile(t, logPath, sshdFailure("192.0.2.2", i)+noise(i))
	}
	testkit.WaitFor(t, 10*time.Second, "4 failures counted", func() bool {
		return strings.Contains(cli(t, env, "status", "sshd").stdout, "Total failed:\t4\n")
	})
	if bans := cliBans(t, socket); len(bans) != 0 {
		t.Fatalf("after 4 failures (maxretry 5): bans = %+v, want none", bans)
	}
	appendFile(t, logPath, sshdFailure("192.0.2.2", 5))
	testkit.WaitFor(t, 10*time.Second, "192.0.2.2 in moat bans --json", func() bool {
		bans := cliBans(t, socket)
		return len(bans) == 1 && bans[0].IP == "192.0.2.2" && bans[0].Jail == "sshd"
	})
	b := cliBans(t, socket)[0]
	if b.ExpiresAt == nil || b.ExpiresAt.Sub(b.BannedAt).Round(time.Second) != time.Hour || b.Count != 1 {
		t.Errorf("ban = %+v, want a 1h ban with count 1", b)
	}
	kb := kernelBans(t, server, "moat")
	if len(kb) != 1 || kb[0].Prefix.String() != "192.0.2.2/32" || kb[0].Jail != "sshd" {
		t.Fatalf("kernel bans = %+v, want 192.0.2.2/32 in sshd", kb)
	}
	if left := time.Until(kb[0].Expires); left < 58*time.Minute || left > time.Hour {
		t.Errorf("kernel element times out in %s, want about 1h", left)
	}
	if canConnect(t, client, addr) {
		t.Fatalf("banned client still connects to %s", addr)
	}
	if n := countLogLines(d.logs.String(), "ban", "192.0.2.2"); n != 1 {
		t.Errorf("%d log lines for the ban of 192.0.2.2, want exactly 1:\n%s", n, d.logs.String())
	}

	r := cli(t, env, "unban", "192.0.2.2")
	if r.code != 0 || !strings.Contains(r.stdout, "unbanned 192.0.2.2 in sshd") {
		t.Fatalf("moat unban: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if kb := kernelBans(t, server, "moat"); len(kb) != 0 {
		t.Fatalf("kernel bans after unban = %+v, want none", kb)
	}
	if !reaches(t, client, addr) {
		t.Fatalf("unbanned client cannot connect to %s", addr)
	}
	if n := countLogLines(d.logs.String(), "unban", "192.0.2.2"); n != 1 {
		t.Errorf("%d log lines for the unban of 192.0.2.2, want exactly 1", n)
	}
}

// countLogLines counts the daemon's JSON log lines with this msg for ip
// that carry the jail, the failure count, the ban count and the end.
func countLogLines(logs, msg, ip string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg || rec["ip"] != ip {
			continue
		}
		_, f := rec["failures"]
		_, c := rec["count"]
		_, u := rec["until"]
		if rec["jail"] == "sshd" && f && c && u {
			n++
		}
	}
	return n
}

// markRead appends maxretry (5) failures of addr to the sshd log and waits
// until addr is banned. The daemon handles a file's lines in order, one
// after the other: by then every line written before has been counted, and
// any ban it led to is listed.
func markRead(t *testing.T, logPath, socket, addr string) {
	t.Helper()
	var text strings.Builder
	for i := 0; i < 5; i++ {
		text.WriteString(sshdFailure(addr, 900+i))
	}
	appendFile(t, logPath, text.String())
	testkit.WaitFor(t, 20*time.Second, addr+" banned: the log read up to it", func() bool {
		return slices.ContainsFunc(cliBans(t, socket), func(b banJSON) bool { return b.IP == addr })
	})
}

// TestEndToEndCrashRestart: `kill -9` while lines are being written, then a
// restart: every ban is still listed and in the kernel set with its
// remaining time; no failure line is counted twice; lines written while
// moat was down are read.
//
// The log is built so that counting wrong shows: each address of group
// "five" fails exactly maxretry times (must end banned, which needs the
// lines written around and during the crash), each of group "four" exactly
// maxretry-1 times (banned only if some failure were counted twice).
func TestEndToEndCrashRestart(t *testing.T) {
	needRoot(t)
	ns := newNetNS(t)
	dir := t.TempDir()
	cfg, socket, logPath := testConfig(t, dir, "nftables", "")
	appendFile(t, logPath, noise(0))
	d := startDaemon(t, ns, cfg, socket)

	var lines []string
	five := make([]string, 30)
	four := make([]string, 30)
	for i := range five {
		five[i] = fmt.Sprintf("198.51.100.%d", i+1)
		four[i] = fmt.Sprintf("203.0.113.%d", i+1)
	}
	for round := 0; round < 5; round++ {
		for i := range five {
			lines = append(lines, sshdFailure(five[i], round*100+i))
			if round < 4 {
				lines = append(lines, sshdFailure(four[i], round*100+i))
			}
			lines = append(lines, noise(i), noise(i+1))
		}
	}
	// The first round bans a few addresses outright before the crash.
	early := []string{"192.0.2.10", "192.0.2.11"}
	var head []string
	for _, a := range early {
		for i := 0; i < 5; i++ {
			head = append(head, sshdFailure(a, i))
		}
	}
	appendFile(t, logPath, strings.Join(head, ""))
	testkit.WaitFor(t, 10*time.Second, "the early bans", func() bool { return len(cliBans(t, socket)) == len(early) })
	before := cliBans(t, socket)

	crashAt, restartAt := len(lines)*2/5, len(lines)*3/5
	for i, l := range lines {
		if i == crashAt {
			d.kill()
		}
		if i == restartAt {
			d = startDaemon(t, ns, cfg, socket)
		}
		appendFile(t, logPath, l)
		if i%7 == 0 {
			// Lines keep coming over time, so that the crash and the
			// restart fall while they are being written and read.
			time.Sleep(time.Millisecond)
		}
	}
	// Once a last address is banned, any wrong extra ban has shown.
	markRead(t, logPath, socket, "192.0.2.99")
	after := cliBans(t, socket)
	var got []string
	for _, b := range after {
		got = append(got, b.IP)
	}
	if want := len(early) + len(five) + 1; len(after) != want {
		t.Errorf("%d bans after the last address's, want %d: %v", len(after), want, got)
	}
	for _, a := range four {
		if slices.Contains(got, a) {
			t.Errorf("%s failed 4 times (maxretry 5) but is banned: a failure was counted twice", a)
		}
	}
	for _, a := range five {
		if !slices.Contains(got, a) {
			t.Errorf("%s failed 5 times but is not banned: lines were lost", a)
		}
	}
	for _, b := range before {
		i := slices.IndexFunc(after, func(x banJSON) bool { return x.IP == b.IP && x.Jail == b.Jail })
		if i < 0 {
			t.Errorf("ban of %s from before the crash is gone", b.IP)
			continue
		}
		if !after[i].ExpiresAt.Equal(*b.ExpiresAt) {
			t.Errorf("ban of %s: expires %s after restart, %s before", b.IP, after[i].ExpiresAt, b.ExpiresAt)
		}
	}
	kb := kernelBans(t, ns, "moat")
	if len(kb) != len(after) {
		t.Errorf("kernel set holds %d bans, moat lists %d", len(kb), len(after))
	}
	for _, k := range kb {
		i := slices.IndexFunc(after, func(x banJSON) bool { return x.IP == k.Prefix.Addr().String() })
		if i < 0 {
			t.Errorf("kernel holds %s, which moat does not list", k.Prefix)
			continue
		}
		if diff := k.Expires.Sub(*after[i].ExpiresAt); diff < -5*time.Second || diff > 5*time.Second {
			t.Errorf("kernel element %s expires %s, moat says %s", k.Prefix, k.Expires, after[i].ExpiresAt)
		}
	}
}

// TestEndToEndFlushRestored: `nft flush ruleset` while moat runs → the
// table and its bans are back within 5 s.
func TestEndToEndFlushRestored(t *testing.T) {
	needRoot(t)
	ns := newNetNS(t)
	dir := t.TempDir()
	metrics := "metrics:\n  listen: 127.0.0.1:9477\n" // in the daemon's own namespace
	cfg, socket, _ := testConfig(t, dir, "nftables", metrics)
	startDaemon(t, ns, cfg, socket)
	env := map[string]string{"MOAT_SOCKET": socket}
	for _, a := range []string{"198.51.100.7", "2001:db8::/64"} {
		if r := cli(t, env, "ban", a, "--jail", "sshd", "--for", "30m"); r.code != 0 {
			t.Fatalf("moat ban %s: %s", a, r.stderr)
		}
	}
	if kb := kernelBans(t, ns, "moat"); len(kb) != 2 {
		t.Fatalf("kernel bans before flush = %+v, want 2", kb)
	}
	flushed := time.Now()
	if _, err := exec.LookPath("nft"); err == nil {
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "flush", "ruleset").CombinedOutput(); err != nil {
			t.Fatalf("nft flush ruleset: %v: %s", err, out)
		}
	} else {
		conn, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
		if err != nil {
			t.Fatal(err)
		}
		conn.FlushRuleset()
		if err := conn.Flush(); err != nil {
			t.Fatalf("flush ruleset: %v", err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "the table and both bans back in the kernel", func() bool {
		conn, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
		if err != nil {
			return false
		}
		tables, err := conn.ListTables()
		if err != nil || len(tables) == 0 {
			return false
		}
		return len(kernelBans(t, ns, "moat")) == 2
	})
	t.Logf("restored %s after the flush", time.Since(flushed).Round(time.Millisecond))
	// moat status says the kernel was repaired, and when. The engine
	// records the check a moment after the kernel is whole again.
	var r cliResult
	testkit.WaitFor(t, 5*time.Second, "the repair in moat status", func() bool {
		r = cli(t, env, "status")
		return strings.Contains(r.stdout, "(layout 1)")
	})
	if r.code != 0 || !strings.Contains(r.stdout, "`- Firewall:\tnftables: ") || !strings.Contains(r.stdout, "(layout 1)") {
		t.Errorf("moat status after the flush:\n%s%s\nwant the firewall line with the layout repair", r.stdout, r.stderr)
	}
	// An element deleted behind moat's back is put back, and the next
	// checks find the kernel matching again.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "delete", "element", "inet", "moat", "sshd_v4", "{ 198.51.100.7 }").CombinedOutput(); err != nil {
		t.Fatalf("nft delete element: %v: %s", err, out)
	}
	testkit.WaitFor(t, 5*time.Second, "the deleted element back and a check that matched", func() bool {
		r := cli(t, env, "status")
		return len(kernelBans(t, ns, "moat")) == 2 && strings.Contains(r.stdout, "held exactly the bans") && strings.Contains(r.stdout, "(missing 1)")
	})
	if m := scrapeIn(t, ns, "127.0.0.1:9477"); !strings.Contains(m, `moat_firewall_repairs_total{kind="missing"} 1`) || !strings.Contains(m, `moat_firewall_repairs_total{kind="layout"} 1`) || !strings.Contains(m, "moat_firewall_matched 1") {
		t.Errorf("metrics lack the repairs:\n%s", m)
	}
}

// TestEndToEndReload: SIGHUP adds a jail (which restarts the follower on
// the new set of logs) and keeps the bans and the failure counts of an
// unchanged one without reading a line twice; two SIGHUPs in a row are
// fine; a broken configuration is refused and the old one stays in force;
// removing a jail lifts its bans.
func TestEndToEndReload(t *testing.T) {
	dir := t.TempDir()
	metrics := "metrics:\n  listen: " + freeAddr(t) + "\n"
	cfg, socket, authLog := testConfig(t, dir, "none", metrics)
	appendFile(t, authLog, noise(0))
	d := startDaemon(t, nil, cfg, socket)
	env := map[string]string{"MOAT_SOCKET": socket}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	if r := cli(t, env, "ban", "198.51.100.9", "--jail", "sshd"); r.code != 0 {
		t.Fatalf("moat ban: %s", r.stderr)
	}
	var text strings.Builder
	for i := 1; i <= 4; i++ {
		text.WriteString(sshdFailure("203.0.113.77", i) + noise(i))
	}
	for i := 0; i < 3000; i++ {
		text.WriteString(noise(i))
	}
	appendFile(t, authLog, text.String())
	counted := func(n int) func() bool {
		return func() bool {
			return strings.Contains(cli(t, env, "status", "sshd").stdout, fmt.Sprintf("Total failed:\t%d\n", n))
		}
	}
	testkit.WaitFor(t, 10*time.Second, "4 sshd failures counted", counted(4))

	webLog := filepath.Join(dir, "access.log")
	_, _, _ = testConfig(t, dir, "none", fmt.Sprintf(`  web:
    filter:
      failregex: '^<HOST> .* "GET /wp-login\.php'
    logpath: %s
    maxretry: 2
`, webLog)+metrics)
	hup()
	hup()
	testkit.WaitFor(t, 10*time.Second, "jail web after reload", func() bool {
		return strings.Contains(cli(t, env, "status").stdout, "web")
	})
	// The follower restarted on the new logs: auth.log is not read again
	// (its 4 failures would count 8 and ban 203.0.113.77). Once the new
	// follower has taken auth.log up, and an address failing after that is
	// banned, a second reading has shown.
	testkit.WaitFor(t, 10*time.Second, "the follower restarted on the new logs", func() bool {
		n := 0
		for _, l := range strings.Split(d.logs.String(), "\n") {
			if strings.Contains(l, `"msg":"following file"`) && strings.Contains(l, authLog+`"`) {
				n++
			}
		}
		return n >= 2
	})
	const marker = "192.0.2.99"
	markRead(t, authLog, socket, marker)
	if bans := cliBans(t, socket); len(bans) != 2 || !slices.ContainsFunc(bans, func(b banJSON) bool { return b.IP == "198.51.100.9" }) {
		t.Fatalf("bans after reload = %+v, want the sshd ban kept, %s's, and nothing else", bans, marker)
	}
	if !counted(4 + 5)() {
		t.Fatalf("after reload: %s; want the 4 failures kept, none read twice, and %s's 5", cli(t, env, "status", "sshd").stdout, marker)
	}
	const written = 1 + 8 + 3000 + 5
	if m := fmt.Sprintf(`moat_lines_read_total{jail="sshd"} %d`+"\n", written); !strings.Contains(scrape(t, metricsAddr(metrics)), m) {
		got := regexp.MustCompile(`moat_lines_read_total.*`).FindAllString(scrape(t, metricsAddr(metrics)), -1)
		t.Errorf("after reload the sshd jail did not read exactly the %d lines written (no line twice): %q", written, got)
	}
	// The failure count survived: one more failure bans.
	appendFile(t, authLog, sshdFailure("203.0.113.77", 5))
	testkit.WaitFor(t, 10*time.Second, "203.0.113.77 banned on its 5th failure", func() bool { return len(cliBans(t, socket)) == 3 })
	// The new jail works.
	line := fmt.Sprintf(`203.0.113.5 - - [%s] "GET /wp-login.php HTTP/1.1" 404 153 "-" "curl/8"`+"\n", time.Now().Format("02/Jan/2006:15:04:05 -0700"))
	appendFile(t, webLog, line+line)
	testkit.WaitFor(t, 10*time.Second, "203.0.113.5 banned by jail web", func() bool {
		return len(cliBans(t, socket)) == 4
	})

	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("jails:\n  sshd:\n    maxretry: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	testkit.WaitFor(t, 10*time.Second, "the refused reload in the log", func() bool {
		return strings.Contains(d.logs.String(), "reload refused")
	})
	if !strings.Contains(d.logs.String(), "maxretry") {
		t.Errorf("the refusal does not name the bad field:\n%s", d.logs.String())
	}
	st := cli(t, env, "status")
	if st.code != 0 || !strings.Contains(st.stdout, "web") || len(cliBans(t, socket)) != 4 {
		t.Fatalf("after a refused reload: status %q (exit %d); want both jails and bans in force", st.stdout, st.code)
	}

	// Removing jail web lifts its ban.
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(good), string(good[strings.Index(string(good), "  web:"):strings.Index(string(good), "metrics:")]), "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	testkit.WaitFor(t, 10*time.Second, "jail web gone with its ban", func() bool {
		return !strings.Contains(cli(t, env, "status").stdout, "web") && len(cliBans(t, socket)) == 3
	})
}

// metricsAddr is the address in a "metrics:\n  listen: ADDR\n" snippet.
func metricsAddr(snippet string) string {
	return strings.TrimSpace(snippet[strings.LastIndex(snippet, " ")+1:])
}
