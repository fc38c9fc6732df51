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
	{"status"},
	{"set", "sshd", "banip", "203.0.113.1", "203.0.113.2"},
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
	env, _ := startInProcessWith(t, dir, fmt.Sprintf("  web:\n    filter: sshd\n    logpath: %s\n", logPath))

	for _, args := range clientScript {
		want, wantCode := f2b(args...)
		r := cli(t, env, append([]string{"client"}, args...)...)
		if r.stdout != want || r.code != wantCode {
			t.Errorf("client %s:\nmoat (exit %d):\n%s\nfail2ban-client (exit %d):\n%s", strings.Join(args, " "), r.code, r.stdout, wantCode, want)
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
		"jail.conf": fmt.Sprintf("[DEFAULT]\nbackend = polling\naction = nothing\n"+
			"[sshd]\nenabled = true\nfilter = sshd\nlogpath = %[1]s\n[web]\nenabled = true\nfilter = sshd\nlogpath = %[1]s\n", logPath),
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
