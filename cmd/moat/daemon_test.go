package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// TestMetrics: the opt-in metrics listener serves lines read, failures,
// bans, active bans and the ban latency histogram per jail, and no series
// is labelled by an address.
func TestMetrics(t *testing.T) {
	addr := freeAddr(t)
	env, logPath := startInProcess(t, fmt.Sprintf("metrics:\n  listen: %s\n", addr))
	// Two failures older than findtime: skipped, and counted as such.
	old := time.Now().Add(-2 * time.Hour).Format(time.Stamp)
	for i := 1; i <= 2; i++ {
		appendFile(t, logPath, fmt.Sprintf("%s web1 sshd[77]: Failed password for root from 203.0.113.9 port %d ssh2\n", old, 50000+i))
	}
	for i := 1; i <= 5; i++ {
		appendFile(t, logPath, noise(i)+sshdFailure("192.0.2.44", i))
	}
	testkit.WaitFor(t, 10*time.Second, "the ban", func() bool { return len(cliBans(t, env["MOAT_SOCKET"])) == 1 })
	if r := cli(t, env, "unban", "192.0.2.44"); r.code != 0 {
		t.Fatalf("unban: %s", r.stderr)
	}
	if r := cli(t, env, "ban", "198.51.100.3", "--jail", "sshd"); r.code != 0 {
		t.Fatalf("ban: %s", r.stderr)
	}
	text := scrape(t, addr)
	for _, want := range []string{
		`moat_lines_read_total{jail="sshd"} 13`,
		`moat_failures_total{jail="sshd"} 7`,
		`moat_failures_too_old_total{jail="sshd"} 2`,
		`moat_bans_total{jail="sshd"} 2`,
		`moat_unbans_total{jail="sshd",reason="unban"} 1`,
		`moat_active_bans{jail="sshd"} 1`,
		`moat_ban_latency_seconds_count{jail="sshd"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^moat_.*(192\.0\.2|198\.51\.100|2001:db8).*$`).FindString(text); m != "" {
		t.Errorf("a series carries an address: %s", m)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape fetches the metrics text served at addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return string(body)
}

// asNobody copies the test binary where uid 65534 can run it and returns a
// command that runs `moat args...` as that user.
func asNobody(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "moat")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"MOAT_TEST_MAIN=1", "HOME=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// TestFirewallPermission: with backend nftables and no CAP_NET_ADMIN, moat
// exits with an error naming what it needs and the way out; with auto it
// runs on the none backend and says so loudly.
func TestFirewallPermission(t *testing.T) {
	needRoot(t)
	t.Run("nftables", func(t *testing.T) {
		dir := t.TempDir()
		cfg, _, _ := testConfig(t, dir, "nftables", "")
		cmd := asNobody(t, dir, "run", "--config", cfg)
		os.Chown(cfg, 65534, 65534)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("moat run as nobody with backend nftables: %v, want exit 1\n%s", err, out)
		}
		for _, want := range []string{"CAP_NET_ADMIN", "backend: none"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("error does not mention %q:\n%s", want, out)
			}
		}
	})
	t.Run("auto", func(t *testing.T) {
		dir := t.TempDir()
		cfg, socket, _ := testConfig(t, dir, "auto", "")
		os.Chown(cfg, 65534, 65534)
		cmd := asNobody(t, dir, "run", "--config", cfg)
		logs := &testkit.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		testkit.WaitFor(t, 10*time.Second, "the daemon to answer", func() bool {
			_, err := os.Stat(socket)
			return err == nil
		})
		if !strings.Contains(logs.String(), "FIREWALL NOT ENFORCING") || !strings.Contains(logs.String(), "CAP_NET_ADMIN") {
			t.Errorf("auto without permission did not say loudly that nothing is enforced:\n%s", logs.String())
		}
	})
}

// TestDefaultConfigAsUser is the README's first command as an ordinary
// user: no config file, no root. moat runs on its embedded default, keeps
// its state and socket in the user's directories, enforces nothing, and
// says what it watches and what is missing.
func TestDefaultConfigAsUser(t *testing.T) {
	needRoot(t) // to become uid 65534
	if _, err := os.Stat("/etc/moat/moat.yaml"); err == nil {
		testkit.Missing(t, "/etc/moat/moat.yaml exists on this machine: the embedded default is not used")
	}
	dir := t.TempDir()
	cmd := asNobody(t, dir, "run")
	logs := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	socket := filepath.Join(dir, ".local/state/moat/moat.sock")
	testkit.WaitFor(t, 10*time.Second, "the daemon to answer at "+socket, func() bool {
		return cli(t, map[string]string{"MOAT_SOCKET": socket}, "status").code == 0
	})
	st := cli(t, map[string]string{"MOAT_SOCKET": socket}, "status", "sshd")
	if st.code != 0 || !strings.Contains(st.stdout, "Status for the jail: sshd") {
		t.Errorf("status sshd: exit %d, %q %q", st.code, st.stdout, st.stderr)
	}
	out := logs.String()
	for _, want := range []string{"(embedded default)", "/var/log/auth.log", `"firewall":"none"`} {
		if !strings.Contains(out, want) {
			t.Errorf("start log does not say %q:\n%s", want, out)
		}
	}
	// The sshd jail is auto: without /var/log/auth.log it reads the
	// journal, and says why.
	if _, err := os.Stat("/var/log/auth.log"); os.IsNotExist(err) &&
		(!strings.Contains(out, `"jail reading the journal","jail":"sshd"`) || !strings.Contains(out, `"missing":["/var/log/auth.log"]`)) {
		t.Errorf("start log does not say sshd reads the journal as its log file is missing:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".local/state/moat/moat.db")); err != nil {
		t.Errorf("state not kept in the user's state directory: %v", err)
	}
}

// TestMultiLineFilter: the daemon keeps a filter's state per log, so a
// maxlines filter sees a failure that spans two lines.
func TestMultiLineFilter(t *testing.T) {
	dir := t.TempDir()
	filterFile := filepath.Join(dir, "twoline.conf")
	if err := os.WriteFile(filterFile, []byte("[Definition]\nfailregex = ^login attempt from <HOST>\\n.*access denied$\nmaxlines = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appLog := filepath.Join(dir, "app.log")
	appendFile(t, appLog, "starting\n")
	env, _ := startInProcess(t, fmt.Sprintf("  app:\n    filter: %s\n    logpath: %s\n    maxretry: 2\n", filterFile, appLog))
	for i := 0; i < 2; i++ {
		appendFile(t, appLog, "login attempt from 203.0.113.44\n")
		appendFile(t, appLog, "access denied\n")
	}
	testkit.WaitFor(t, 10*time.Second, "203.0.113.44 banned by the two-line filter", func() bool {
		bans := cliBans(t, env["MOAT_SOCKET"])
		return len(bans) == 1 && bans[0].IP == "203.0.113.44" && bans[0].Jail == "app"
	})
}
