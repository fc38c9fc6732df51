package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// clientScript is a session of fail2ban-client commands as operators'
// scripts run them.
var clientScript = [][]string{
	{"ping"},
	{"ping", "2"},
	{"version"},
	{"status"},
	{"get", "sshd", "bantime"},
	{"get", "sshd", "findtime"},
	{"get", "sshd", "maxretry"},
	{"get", "sshd", "ignoreip"},
	{"get", "sshd", "logpath"},
	{"get", "web", "bantime"},
	{"get", "web", "findtime"},
	{"get", "web", "maxretry"},
	{"get", "web", "ignoreip"},
	{"get", "web", "bantime", "extra"},
	{"get", "nosuch", "bantime"},
	{"get", "nosuch", "ignoreip"},
	{"get", "nosuch", "logpath"},
	{"get", "sshd"},
	{"set", "sshd", "banip", "203.0.113.1", "203.0.113.2"},
	// (in the order the bans end: before the re-ban below, which in
	// fail2ban prolongs 203.0.113.1's ban and in moat's banip does not)
	{"get", "sshd", "banip"},
	{"get", "sshd", "banip", ","},
	{"get", "web", "banip"},
	{"get", "nosuch", "banip"},
	{"set", "web", "banip", "203.0.113.1"},
	{"set", "sshd", "banip", "203.0.113.1"},
	{"status", "sshd"},
	{"banned"},
	{"banned", "203.0.113.1", "198.51.100.1"},
	{"get", "sshd", "banned"},
	{"get", "sshd", "banned", "203.0.113.1"},
	{"get", "sshd", "banned", "203.0.113.1", "203.0.113.9"},
	{"set", "sshd", "unbanip", "203.0.113.2", "198.51.100.9"},
	{"set", "sshd", "unbanip", "--report-absent", "198.51.100.9"},
	{"unban", "203.0.113.1"},
	{"set", "sshd", "banip", "203.0.113.5"},
	{"unban", "--all"},
	{"banned"},
	{"status", "nosuch"},
	{"set", "nosuch", "banip", "203.0.113.1"},
	// The ignore list of a running jail: a ban active when its address is
	// added stays; networks are listed before single addresses (fail2ban
	// lists those from a set, in no order: at most one is listed at once).
	{"set", "sshd", "banip", "203.0.113.7"},
	{"set", "sshd", "addignoreip", "203.0.113.7"},
	{"get", "sshd", "banip"},
	{"set", "sshd", "addignoreip", "192.0.2.9/24", "2001:db8:1::/64"},
	{"set", "sshd", "addignoreip", "192.0.2.0/24"},
	{"set", "sshd", "addignoreip"},
	{"get", "sshd", "ignoreip"},
	{"set", "sshd", "delignoreip", "203.0.113.8"},
	{"set", "sshd", "delignoreip", "192.0.2.9"},
	{"set", "sshd", "delignoreip", "203.0.113.7", "192.0.2.0/24"},
	{"set", "sshd", "delignoreip", "2001:db8:1::/64"},
	{"set", "sshd", "delignoreip"},
	{"set", "web", "addignoreip", "::ffff:192.0.2.1"},
	{"set", "web", "delignoreip", "198.51.100.0/24"},
	{"set", "nosuch", "addignoreip", "192.0.2.1"},
	{"set", "nosuch", "addignoreip"},
	{"set", "nosuch", "delignoreip", "192.0.2.1"},
	// A reload sets the ignore lists from the configuration again and
	// keeps the bans; --unban lifts them.
	{"set", "web", "addignoreip", "192.0.2.1"},
	{"set", "web", "banip", "203.0.113.9"},
	{"reload"},
	{"get", "web", "ignoreip"},
	{"get", "sshd", "banip"},
	{"get", "web", "banip"},
	{"reload", "sshd"},
	{"reload", "--all"},
	{"reload", "--restart", "sshd"},
	{"reload", "--unban", "web"},
	{"get", "web", "banip"},
	{"get", "sshd", "banip"},
	{"reload", "--unban"},
	{"get", "sshd", "banip"},
	{"reload", "nosuch"},
	{"reload", "sshd", "web"},
	{"ping", "x"},
}

// TestClientMatchesFail2banClient runs the same session against a real
// fail2ban-server (Debian's fail2ban, with a do-nothing action written
// here) through fail2ban-client, and against moat through `moat client`,
// and compares standard output and exit codes line by line.
func TestClientMatchesFail2banClient(t *testing.T) {
	needRoot(t)
	testkit.Fail2banClient(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "auth.log")
	appendFile(t, logPath, noise(0))

	f2b := startFail2ban(t, dir, logPath)
	env, _ := startInProcessWith(t, dir, fmt.Sprintf("  web:\n    filter: sshd\n    logpath: %s\n"+
		"    maxretry: 7\n    findtime: 20m\n    bantime: 2h\n    ignoreip: [198.51.100.0/24]\n", logPath))

	for _, args := range clientScript {
		cmd := strings.Join(args, " ")
		want, wantCode := f2b(args...)
		r := cli(t, env, append([]string{"client"}, args...)...)
		switch {
		case cmd == "version":
			// Each prints its own version, on one line.
			if r.stdout != moatVersion()+"\n" || r.code != 0 || wantCode != 0 || strings.Count(want, "\n") != 1 {
				t.Errorf("client version: moat printed %q (exit %d), fail2ban-client %q (exit %d)", r.stdout, r.code, want, wantCode)
			}
		case r.stdout != want || r.code != wantCode:
			t.Errorf("client %s:\nmoat (exit %d):\n%s\nfail2ban-client (exit %d):\n%s", cmd, r.code, r.stdout, wantCode, want)
		}
	}
}

// startFail2ban runs fail2ban-server with jails sshd and web on logPath and
// an action that does nothing, and returns a func running fail2ban-client
// against it.
func startFail2ban(t *testing.T, dir, logPath string) func(args ...string) (string, int) {
	t.Helper()
	cfg := filepath.Join(dir, "f2b")
	for _, d := range []string{"filter.d", "action.d", "run"} {
		if err := os.MkdirAll(filepath.Join(cfg, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"fail2ban.conf", "filter.d/sshd.conf", "filter.d/common.conf"} {
		data, err := os.ReadFile(filepath.Join("/etc/fail2ban", f))
		if err != nil {
			testkit.Missing(t, "fail2ban's configuration is not installed: %v", err)
		}
		if err := os.WriteFile(filepath.Join(cfg, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"action.d/nothing.conf": "[Definition]\nactionban = true\nactionunban = true\n",
		"fail2ban.local": fmt.Sprintf("[Definition]\nsocket = %s\npidfile = %s\nlogtarget = %s\ndbfile = :memory:\n",
			filepath.Join(cfg, "run/f2b.sock"), filepath.Join(cfg, "run/f2b.pid"), filepath.Join(cfg, "run/f2b.log")),
		// The settings of moat's jails (testConfig's and the test's web).
		"jail.conf": fmt.Sprintf("[DEFAULT]\nbackend = polling\naction = nothing\n"+
			"[sshd]\nenabled = true\nfilter = sshd\nlogpath = %[1]s\nmaxretry = 5\nfindtime = 1h\nbantime = 1h\n"+
			"[web]\nenabled = true\nfilter = sshd\nlogpath = %[1]s\nmaxretry = 7\nfindtime = 20m\nbantime = 2h\nignoreip = 198.51.100.0/24\n", logPath),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command("fail2ban-client", append([]string{"-c", cfg}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("fail2ban-client %v: %v", args, err)
			}
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := run("-x", "start"); code != 0 {
		t.Fatalf("start fail2ban-server: exit %d: %s", code, out)
	}
	t.Cleanup(func() { run("stop") })
	testkit.WaitFor(t, 30*time.Second, "fail2ban-server to answer", func() bool {
		_, code := run("ping")
		return code == 0
	})
	return run
}
