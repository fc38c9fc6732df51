package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"

	"github.com/moatproj/moat/internal/testkit"
)

// TestMain lets the test binary stand in for the moat binary: with
// MOAT_TEST_MAIN=1 it runs moat's command line instead of the tests, so the
// end-to-end tests can start real daemon processes (in network namespaces,
// and kill them with SIGKILL) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("MOAT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// banJSON is one element of `moat bans --json`: the public contract.
type banJSON struct {
	Jail      string     `json:"jail"`
	IP        string     `json:"ip"`
	BannedAt  time.Time  `json:"banned_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Count     int        `json:"count"`
	Failures  int        `json:"failures"`
}

// cliResult is what one in-process CLI call printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs moat's command line in-process with env as its whole environment.
func cli(t testing.TB, env map[string]string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	io := stdio{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	code := run(context.Background(), args, io)
	return cliResult{out.String(), errb.String(), code}
}

// cliJSON runs `moat bans --json` against socket and decodes it.
func cliBans(t testing.TB, socket string) []banJSON {
	t.Helper()
	r := cli(t, map[string]string{"MOAT_SOCKET": socket}, "bans", "--json")
	if r.code != 0 {
		t.Fatalf("moat bans --json: exit %d: %s", r.code, r.stderr)
	}
	var bans []banJSON
	if err := json.Unmarshal([]byte(r.stdout), &bans); err != nil {
		t.Fatalf("moat bans --json printed %q: %v", r.stdout, err)
	}
	return bans
}

func needRoot(t testing.TB) {
	t.Helper()
	nftest.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		testkit.Missing(t, "needs the ip command from iproute2 (installed by .ci/run)")
	}
}

// netNS is a named network namespace made by a test (usable with
// `ip netns exec`), removed when the test ends.
type netNS = nftest.NetNS

func newNetNS(t testing.TB) *netNS { return nftest.New(t) }

// link joins two namespaces with a veth pair: a gets 192.0.2.1/24, b gets
// 192.0.2.2/24 (documentation addresses).
func link(t testing.TB, a, b *netNS) {
	nftest.Veth(t, a, b, []string{"192.0.2.1/24"}, []string{"192.0.2.2/24"})
}

// serveTCP listens on addr inside ns until the test ends.
func serveTCP(t testing.TB, ns *netNS, addr string) string { return ns.ServeTCP(t, addr) }

// canConnect reports whether a TCP connection from ns to addr opens within
// a second.
func canConnect(t testing.TB, ns *netNS, addr string) bool { return ns.CanDial(t, addr, time.Second) }

// reaches says whether a client in ns connects to addr within 10 s, dialing
// again after each failure: on a loaded machine one 1-second dial over a
// fresh veth pair once failed with nothing banned. A check that a ban
// blocks stays a single dial (canConnect).
func reaches(t testing.TB, ns *netNS, addr string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ns.CanDial(t, addr, time.Second) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kernelBans reads the bans back from moat's nftables table in ns.
func kernelBans(t testing.TB, ns *netNS, table string) []firewall.Ban {
	t.Helper()
	b, err := nftables.New(nftables.Options{Table: table, NetNS: ns.FD()})
	if err != nil {
		t.Fatalf("open nftables in %s: %v", ns.Name, err)
	}
	defer b.Close()
	bans, err := b.List(context.Background())
	if err != nil {
		t.Fatalf("list kernel bans: %v", err)
	}
	return bans
}

// daemonProc is a moat daemon running as a child process.
type daemonProc struct {
	cmd  *exec.Cmd
	logs *testkit.Buffer
	done chan struct{}
}

// startDaemon runs `moat run --config cfg [extra...]` as a child process, inside ns
// when ns is not nil, and waits until its control socket answers.
func startDaemon(t testing.TB, ns *netNS, cfg, socket string, extra ...string) *daemonProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{self, "run", "--config", cfg}, extra...)
	if ns != nil {
		args = append([]string{"ip", "netns", "exec", ns.Name}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1", "MOAT_LOG_LEVEL=debug")
	logs := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	p := &daemonProc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	testkit.WaitFor(t, 15*time.Second, "the control socket to answer", func() bool {
		select {
		case <-p.done:
			t.Fatalf("daemon exited at start:\n%s", logs.String())
		default:
		}
		return cli(t, map[string]string{"MOAT_SOCKET": socket}, "status").code == 0
	})
	return p
}

// stop sends SIGTERM and waits for the process to end; the daemon must
// exit 0 and its log must hold no data race report (the test binary, and so
// the daemon, may be built with -race).
func (p *daemonProc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("daemon did not stop within 20s of SIGTERM")
		return
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("daemon exited %d after SIGTERM, want 0", code)
	}
	if strings.Contains(p.logs.String(), "DATA RACE") {
		t.Errorf("data race in the daemon")
	}
}

// kill sends SIGKILL (a crash) and waits for the process to be gone. With
// `ip netns exec` the daemon is the same process (ip execs it).
func (p *daemonProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// sshdFailure is one failure line of OpenSSH as it appears in auth.log,
// dated now.
func sshdFailure(addr string, n int) string {
	return fmt.Sprintf("%s web1 sshd[%d]: Failed password for invalid user admin%d from %s port %d ssh2\n",
		time.Now().Format(time.Stamp), 4000+n, n, addr, 40000+n)
}

// noise is a line of auth.log that no filter counts.
func noise(n int) string {
	return fmt.Sprintf("%s web1 CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)\n",
		time.Now().Format(time.Stamp), 9000+n)
}

// appendFile appends text to path with one write (as a logger does).
func appendFile(t testing.TB, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// testConfig writes a daemon configuration into dir and returns its path,
// the socket and the log path.
func testConfig(t testing.TB, dir, backend, extra string) (cfg, socket, logPath string) {
	t.Helper()
	socket = filepath.Join(dir, "moat.sock")
	logPath = filepath.Join(dir, "auth.log")
	text := fmt.Sprintf(`state_dir: %s
socket: %s
firewall:
  backend: %s
  table: moat
jails:
  sshd:
    filter: sshd
    logpath: %s
    maxretry: 5
    findtime: 1h
    bantime: 1h
%s`, filepath.Join(dir, "state"), socket, backend, logPath, extra)
	cfg = filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, socket, logPath
}

// scrapeIn fetches the metrics text served at addr inside ns.
func scrapeIn(t testing.TB, ns *netNS, addr string) string {
	t.Helper()
	var conn net.Conn
	var err error
	ns.Do(t, func() { conn, err = net.DialTimeout("tcp", addr, 2*time.Second) })
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, ns.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\nHost: moat\r\n\r\n"); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return string(body)
}
