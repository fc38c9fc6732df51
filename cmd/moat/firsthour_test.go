package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gnft "github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/moatproj/moat/internal/testkit"
)

// The tests of an operator's first hour (issue 14): the log's format, global
// flags on either side of the command, each command's help, `moat firewall
// remove`.

// openPTY opens a pseudo-terminal pair with golang.org/x/sys/unix (already
// a dependency): /dev/ptmx, unlocked, and the /dev/pts/N it names.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testkit.Missing(t, "needs /dev/ptmx to open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestIsTerminal: a pty is a terminal; /dev/null, a character device too,
// is not (the old check, ModeCharDevice, took it for one), nor a pipe.
func TestIsTerminal(t *testing.T) {
	_, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Errorf("a pty slave is not taken for a terminal")
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Errorf("/dev/null is taken for a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Errorf("a pipe is taken for a terminal")
	}
}

// firstLogLine starts `moat run` (the test binary as moat) with standard
// error on a pty or a pipe, returns the first line it logs and stops it.
func firstLogLine(t *testing.T, onPTY bool, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg, _, logPath := testConfig(t, dir, "none", "")
	appendFile(t, logPath, noise(0))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"run", "--config", cfg}, extra...)...)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1", "MOAT_LOG_FORMAT=")
	var r *os.File
	if onPTY {
		m, s := openPTY(t)
		r, cmd.Stderr = m, s
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close() })
		r, cmd.Stderr = pr, pw
		defer pw.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		return strings.TrimRight(s, "\r\n")
	case <-time.After(15 * time.Second):
		t.Fatalf("moat run logged nothing within 15s")
		return ""
	}
}

// TestLogFormat: text on a terminal, JSON on a pipe, and --log-format
// overrides either way.
func TestLogFormat(t *testing.T) {
	isJSON := func(s string) bool { return strings.HasPrefix(s, `{"time":`) }
	isText := func(s string) bool { return strings.HasPrefix(s, "time=") && strings.Contains(s, " level=") }
	for _, tt := range []struct {
		name  string
		pty   bool
		flags []string
		text  bool
	}{
		{"pty", true, nil, true},
		{"pipe", false, nil, false},
		{"pty --log-format json", true, []string{"--log-format", "json"}, false},
		{"pipe --log-format text", false, []string{"--log-format=text"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := firstLogLine(t, tt.pty, tt.flags...)
			if tt.text && !isText(got) || !tt.text && !isJSON(got) {
				t.Errorf("first log line %q; want %s", got, map[bool]string{true: "text", false: "JSON"}[tt.text])
			}
		})
	}
	r := cli(t, nil, "run", "--log-format", "yaml")
	if r.code != 2 || !strings.Contains(r.stderr, "text or json") {
		t.Errorf("run --log-format yaml: exit %d, %q; want 2 and the values", r.code, r.stderr)
	}
}

// TestGlobalFlagsEitherSide: the global flags work before the command as
// after it; unknown flags and flags a command does not take are usage
// errors that say so.
func TestGlobalFlagsEitherSide(t *testing.T) {
	env, _ := startInProcess(t, "")
	socket := env["MOAT_SOCKET"]
	noEnv := map[string]string{"MOAT_SOCKET": filepath.Join(t.TempDir(), "none.sock")}
	after := cli(t, noEnv, "status", "--socket", socket)
	if after.code != 0 {
		t.Fatalf("status --socket: exit %d, %q", after.code, after.stderr)
	}
	for _, args := range [][]string{
		{"--socket", socket, "status"},
		{"--socket=" + socket, "status"},
		{"-socket", socket, "status"},
	} {
		r := cli(t, noEnv, args...)
		if r.code != 0 || r.stdout != after.stdout {
			t.Errorf("moat %q: exit %d, stdout %q, stderr %q; want what status --socket prints", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := cli(t, noEnv, "--socket", socket, "bans", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("moat --socket P bans --json: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, noEnv, "--socket", socket, "client", "status"); r.code != 0 || !strings.Contains(r.stdout, "sshd") {
		t.Errorf("moat --socket P client status: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	cfg, _, _ := testConfig(t, t.TempDir(), "none", "")
	if r := cli(t, nil, "--config", cfg, "check"); r.code != 0 || !strings.Contains(r.stdout, cfg+": ok") {
		t.Errorf("moat --config F check: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--frob", "status"}, "unknown flag --frob"},
		{[]string{"status", "--frob"}, "unknown flag -frob"},
		{[]string{"--config", cfg, "status"}, "--config does not apply to status"},
		{[]string{"--socket", socket, "regex", "a", "b"}, "--socket does not apply to regex"},
		{[]string{"--socket"}, "needs a value"},
		{[]string{"--socket", socket}, "no command"},
	} {
		r := cli(t, noEnv, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("moat %q: exit %d, stderr %q; want 2 and one line with %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestCommandHelp: every command of the general help has its own, with an
// example, from `moat help CMD`, `moat CMD --help` and `moat CMD -h`
// alike, on standard output, exit 0.
func TestCommandHelp(t *testing.T) {
	general := cli(t, nil, "help")
	if general.code != 0 {
		t.Fatalf("moat help: exit %d", general.code)
	}
	_, list, ok := strings.Cut(general.stdout, "Commands:\n")
	if !ok {
		t.Fatalf("moat help lists no commands:\n%s", general.stdout)
	}
	var names []string
	for line := range strings.SplitSeq(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		names = append(names, strings.Fields(line)[0])
	}
	for _, want := range []string{"run", "check", "status", "bans", "ban", "unban", "client", "regex", "audit", "firewall", "version"} {
		if !slices.Contains(names, want) {
			t.Errorf("moat help does not list %s: %q", want, names)
		}
	}
	for _, name := range names {
		if name == "help" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			h := cli(t, nil, "help", name)
			if h.code != 0 || h.stderr != "" {
				t.Fatalf("moat help %s: exit %d, stderr %q", name, h.code, h.stderr)
			}
			if !strings.HasPrefix(h.stdout, "Usage: moat "+name) || !strings.Contains(h.stdout, "\nExample:\n  moat "+name) {
				t.Errorf("moat help %s printed:\n%s\nwant its usage and an example", name, h.stdout)
			}
			for _, flag := range []string{"--help", "-h"} {
				r := cli(t, nil, name, flag)
				if r.code != 0 || r.stdout != h.stdout || r.stderr != "" {
					t.Errorf("moat %s %s: exit %d, stdout %q, stderr %q; want moat help %s's", name, flag, r.code, r.stdout, r.stderr, name)
				}
			}
		})
	}
	if r := cli(t, nil, "help", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "frobnicate") {
		t.Errorf("moat help frobnicate: exit %d, %q", r.code, r.stderr)
	}
	// The flags of a command are in its help.
	if r := cli(t, nil, "help", "ban"); !strings.Contains(r.stdout, "-jail") || !strings.Contains(r.stdout, "-for") {
		t.Errorf("moat help ban lacks the flags:\n%s", r.stdout)
	}
}

// runMoatIn runs the test binary as moat inside ns and returns what it
// printed and its exit code.
func runMoatIn(t *testing.T, ns *netNS, args ...string) cliResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, self}, args...)...)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1", "MOAT_SOCKET=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run moat %q in %s: %v", args, ns.Name, err)
	}
	return cliResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

// hasTable reports whether the inet table exists in ns.
func hasTable(t *testing.T, ns *netNS, name string) bool {
	t.Helper()
	c, err := gnft.New(gnft.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListTableOfFamily(name, gnft.TableFamilyINet)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("list table %s in %s: %v", name, ns.Name, err)
	}
	return true
}

// TestFirewallRemove: `moat firewall remove` is refused while the daemon
// runs (found by its socket, or by the lock of its state when the socket
// given is elsewhere), and after it stopped deletes the table the daemon
// left, then finds nothing to delete.
func TestFirewallRemove(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	cfg, socket, _ := testConfig(t, dir, "nftables", "") // its auth.log need not exist
	ns := newNetNS(t)
	p := startDaemon(t, ns, cfg, socket)
	testkit.WaitFor(t, 10*time.Second, "the daemon's table", func() bool { return hasTable(t, ns, "moat") })

	r := runMoatIn(t, ns, "firewall", "remove", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing") || !strings.Contains(r.stderr, socket+" answers") {
		t.Errorf("firewall remove with the daemon running: exit %d, %q; want 1, refused because its socket answers", r.code, r.stderr)
	}
	r = runMoatIn(t, ns, "firewall", "remove", "--config", cfg, "--socket", filepath.Join(dir, "elsewhere.sock"))
	if r.code != 1 || !strings.Contains(r.stderr, "refusing") || !strings.Contains(r.stderr, "holds the lock of "+filepath.Join(dir, "state", "moat.db")) {
		t.Errorf("firewall remove with the daemon running, another socket: exit %d, %q; want 1, refused because of the lock", r.code, r.stderr)
	}
	if !hasTable(t, ns, "moat") {
		t.Fatalf("the table is gone after a refused remove")
	}

	p.stop(t)
	if !hasTable(t, ns, "moat") {
		t.Fatalf("the daemon took its table with it: nothing left to test")
	}
	r = runMoatIn(t, ns, "--config", cfg, "firewall", "remove")
	if r.code != 0 || !strings.Contains(r.stdout, "removed nftables table inet moat") {
		t.Errorf("firewall remove after the daemon stopped: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if hasTable(t, ns, "moat") {
		t.Errorf("table inet moat is still there after firewall remove")
	}
	r = runMoatIn(t, ns, "firewall", "remove", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to remove") {
		t.Errorf("firewall remove without a table: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "firewall", "frob"); r.code != 2 || !strings.Contains(r.stderr, "remove") {
		t.Errorf("firewall frob: exit %d, %q; want 2 naming remove", r.code, r.stderr)
	}
}
