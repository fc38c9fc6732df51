package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// startInProcess runs a daemon with the none backend inside the test
// process and returns the environment that points the CLI at it.
func startInProcess(t *testing.T, extra string) (env map[string]string, logPath string) {
	t.Helper()
	return startInProcessWith(t, t.TempDir(), extra)
}

// startInProcessWith is startInProcess with its files in dir.
func startInProcessWith(t *testing.T, dir, extra string) (env map[string]string, logPath string) {
	t.Helper()
	cfg, socket, logPath := testConfig(t, dir, "none", extra)
	appendFile(t, logPath, noise(0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs := &testkit.Buffer{}
	go func() {
		done <- run(ctx, []string{"run", "--config", cfg}, stdio{stdout: logs, stderr: logs, getenv: func(string) string { return "" }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("daemon exited %d:\n%s", code, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("daemon did not stop within 15s")
		}
	})
	env = map[string]string{"MOAT_SOCKET": socket}
	testkit.WaitFor(t, 10*time.Second, "the control socket", func() bool {
		select {
		case code := <-done:
			t.Fatalf("daemon exited %d at start:\n%s", code, logs.String())
		default:
		}
		return cli(t, env, "status").code == 0
	})
	return env, logPath
}

func TestCLIBanRefusals(t *testing.T) {
	env, _ := startInProcess(t, "    ignoreip: [198.51.100.0/24]\n")
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{"loopback", []string{"ban", "127.0.0.1", "--jail", "sshd"}, nil, 1, "loopback"},
		{"loopback v6", []string{"ban", "::1", "--jail", "sshd"}, nil, 1, "loopback"},
		{"ignoreip", []string{"ban", "198.51.100.20", "--jail", "sshd"}, nil, 1, "ignoreip"},
		{"too wide v4", []string{"ban", "192.0.0.0/8", "--jail", "sshd"}, nil, 1, "/16"},
		{"too wide v6", []string{"ban", "2001:db8::/24", "--jail", "sshd"}, nil, 1, "/32"},
		{"malformed", []string{"ban", "192.0.2.300", "--jail", "sshd"}, nil, 1, "192.0.2.300"},
		{"unknown jail", []string{"ban", "192.0.2.7", "--jail", "nosuch"}, nil, 1, "nosuch"},
		{"no jail", []string{"ban", "192.0.2.7"}, nil, 2, "--jail"},
		{"bad duration", []string{"ban", "192.0.2.7", "--jail", "sshd", "--for", "soon"}, nil, 2, "soon"},
		{"own ssh session", []string{"ban", "203.0.113.9", "--jail", "sshd"},
			map[string]string{"SSH_CONNECTION": "203.0.113.9 51000 192.0.2.1 22"}, 1, "your own SSH session"},
		{"own ssh session over link-local", []string{"ban", "fe80::9", "--jail", "sshd"},
			map[string]string{"SSH_CONNECTION": "fe80::9%eth0 51000 fe80::1%eth0 22"}, 1, "your own SSH session"},
		{"own ssh session inside a prefix", []string{"ban", "203.0.113.0/24", "--jail", "sshd"},
			map[string]string{"SSH_CONNECTION": "203.0.113.9 51000 192.0.2.1 22"}, 1, "your own SSH session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"MOAT_SOCKET": env["MOAT_SOCKET"]}
			for k, v := range tc.env {
				e[k] = v
			}
			r := cli(t, e, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("moat %s = exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.stderr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && tc.code == 1 {
				t.Errorf("error is not one line: %q", r.stderr)
			}
		})
	}
	// One of this host's own addresses, if it has one besides loopback.
	if own := ownAddr(t); own != "" {
		r := cli(t, env, "ban", own, "--jail", "sshd")
		if r.code != 1 || !strings.Contains(r.stderr, "own addresses") {
			t.Errorf("ban of the host's own %s: exit %d, %q; want a refusal", own, r.code, r.stderr)
		}
	}
	if bans := cliBans(t, env["MOAT_SOCKET"]); len(bans) != 0 {
		t.Errorf("refused bans left bans behind: %+v", bans)
	}
	// --force bans the operator's own address.
	e := map[string]string{"MOAT_SOCKET": env["MOAT_SOCKET"], "SSH_CONNECTION": "203.0.113.9 51000 192.0.2.1 22"}
	if r := cli(t, e, "ban", "203.0.113.9", "--jail", "sshd", "--force"); r.code != 0 {
		t.Errorf("ban --force: exit %d: %s", r.code, r.stderr)
	}
}

func TestCLIBansStatusUnban(t *testing.T) {
	env, logPath := startInProcess(t, "")
	for _, args := range [][]string{
		{"ban", "192.0.2.7", "--jail", "sshd", "--for", "2h"},
		{"ban", "2001:db8:1::/64", "--jail", "sshd", "--for", "-1"},
	} {
		if r := cli(t, env, args...); r.code != 0 {
			t.Fatalf("moat %v: %s", args, r.stderr)
		}
	}
	bans := cliBans(t, env["MOAT_SOCKET"])
	if len(bans) != 2 {
		t.Fatalf("bans = %+v, want 2", bans)
	}
	for _, b := range bans {
		switch b.IP {
		case "192.0.2.7":
			if b.ExpiresAt == nil || b.ExpiresAt.Sub(b.BannedAt).Round(time.Minute) != 2*time.Hour {
				t.Errorf("192.0.2.7: %+v, want a 2h ban", b)
			}
		case "2001:db8:1::/64":
			if b.ExpiresAt != nil {
				t.Errorf("2001:db8:1::/64: expires_at = %v, want null (no end)", b.ExpiresAt)
			}
		default:
			t.Errorf("unexpected ban %+v", b)
		}
	}
	table := cli(t, env, "bans")
	for _, want := range []string{"JAIL", "192.0.2.7", "2001:db8:1::/64", "never"} {
		if !strings.Contains(table.stdout, want) {
			t.Errorf("moat bans table lacks %q:\n%s", want, table.stdout)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "the log in the status's file list", func() bool {
		return strings.Contains(cli(t, env, "status", "sshd").stdout, logPath)
	})
	st := cli(t, env, "status", "sshd")
	for _, want := range []string{"Status for the jail: sshd", "Currently banned:\t2", logPath, "192.0.2.7"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("moat status sshd lacks %q:\n%s", want, st.stdout)
		}
	}
	if r := cli(t, env, "status", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("status of an unknown jail: exit %d, %q", r.code, r.stderr)
	}
	// An address inside a banned prefix lifts the prefix.
	if r := cli(t, env, "unban", "2001:db8:1::5"); r.code != 0 || !strings.Contains(r.stdout, "2001:db8:1::/64") {
		t.Errorf("unban inside a prefix: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, env, "unban", "198.51.100.1"); r.code != 1 || !strings.Contains(r.stderr, "not banned") {
		t.Errorf("unban of an address not banned: exit %d, %q", r.code, r.stderr)
	}
	if r := cli(t, env, "unban", "--all"); r.code != 0 || !strings.Contains(r.stdout, "lifted 1 bans") {
		t.Errorf("unban --all: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if bans := cliBans(t, env["MOAT_SOCKET"]); len(bans) != 0 {
		t.Errorf("bans after unban --all = %+v", bans)
	}
}

func TestCLIDaemonNotRunning(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "nobody.sock")
	for _, args := range [][]string{{"status"}, {"bans"}, {"unban", "--all"}} {
		r := cli(t, map[string]string{"MOAT_SOCKET": socket}, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "not running") || !strings.Contains(r.stderr, socket) {
			t.Errorf("moat %v without a daemon: exit %d, %q; want a one-line error naming %s", args, r.code, r.stderr, socket)
		}
		if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); n != 0 {
			t.Errorf("moat %v: error has %d extra lines: %q", args, n, r.stderr)
		}
	}
	// --socket wins over MOAT_SOCKET.
	r := cli(t, map[string]string{"MOAT_SOCKET": "/nonexistent/a.sock"}, "status", "--socket", socket)
	if !strings.Contains(r.stderr, socket) {
		t.Errorf("--socket did not win over MOAT_SOCKET: %q", r.stderr)
	}
}

func TestCLICheck(t *testing.T) {
	dir := t.TempDir()
	cfg, _, _ := testConfig(t, dir, "none", "")
	r := cli(t, nil, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "sshd") || !strings.Contains(r.stdout, "1h0m0s") {
		t.Errorf("check of a good config: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("jails:\n  sshd:\n    logpath: /var/log/auth.log\n    findtime: 10x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = cli(t, nil, "check", "--config", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "bad.yaml:4") || !strings.Contains(r.stderr, "findtime") || !strings.Contains(r.stderr, "10x") {
		t.Errorf("check of a bad config: exit %d, stderr %q; want file:line, field and value", r.code, r.stderr)
	}
	nofilter := filepath.Join(dir, "nofilter.yaml")
	if err := os.WriteFile(nofilter, []byte("jails:\n  sshd:\n    logpath: /var/log/auth.log\n    filter: nosuchfilter\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = cli(t, nil, "check", "--config", nofilter)
	if r.code != 1 || !strings.Contains(r.stderr, "nofilter.yaml:4") || !strings.Contains(r.stderr, "nosuchfilter") {
		t.Errorf("check of a config naming a missing filter: exit %d, stderr %q; want file:line and the name", r.code, r.stderr)
	}
	r = cli(t, nil, "check", "--config", filepath.Join(dir, "missing.yaml"))
	if r.code != 1 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("check of a missing file: exit %d, %q", r.code, r.stderr)
	}
	// Embedded default: no --config and (normally) no /etc/moat/moat.yaml.
	if _, err := os.Stat("/etc/moat/moat.yaml"); os.IsNotExist(err) {
		r = cli(t, map[string]string{"HOME": dir}, "check")
		if r.code != 0 || !strings.Contains(r.stdout, "/var/log/auth.log") {
			t.Errorf("check of the embedded default: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
	}
}

func TestCLIUsage(t *testing.T) {
	if r := cli(t, nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "moat ") {
		t.Errorf("version: %d %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"ban"}, {"unban"}, {"bans", "extra"}, {"status", "a", "b"}, {"regex", "log"}, {"client"}} {
		if r := cli(t, nil, args...); r.code != 2 || r.stderr == "" {
			t.Errorf("moat %v: exit %d, stderr %q; want usage error 2", args, r.code, r.stderr)
		}
	}
}

// TestCLIRegexClientWiring: moat regex and moat client reach
// fail2ban/emulate with the process's streams, environment and socket (the
// emulation's own tests are in that package).
func TestCLIRegexClientWiring(t *testing.T) {
	r := cli(t, nil, "regex", "-o", "ip", "Nov 26 21:00:00 h app: login failed from 192.0.2.7", "from <HOST>$")
	if r.code != 0 || r.stdout != "192.0.2.7\n" {
		t.Errorf("moat regex -o ip: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	socket := filepath.Join(t.TempDir(), "nobody.sock")
	for _, args := range [][]string{{"--socket", socket, "status"}, {"-s", socket, "status"}} {
		r := cli(t, map[string]string{"MOAT_SOCKET": "/nonexistent/a.sock"}, append([]string{"client"}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "not running") || !strings.Contains(r.stderr, socket) {
			t.Errorf("moat client %v without a daemon: exit %d, %q; want an error naming %s", args, r.code, r.stderr, socket)
		}
	}
}

// ownAddr is a non-loopback address of this host, or "".
func ownAddr(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr().String()
		}
	}
	return ""
}
