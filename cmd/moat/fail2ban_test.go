package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// copyFail2ban copies the installed /etc/fail2ban into a temp directory
// and adds files (name → text) to it.
func copyFail2ban(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := os.Stat("/etc/fail2ban/jail.conf"); err != nil {
		testkit.Missing(t, "needs /etc/fail2ban from Debian's fail2ban (installed by .ci/run)")
	}
	dir := filepath.Join(t.TempDir(), "fail2ban")
	if out, err := exec.Command("cp", "-a", "/etc/fail2ban", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/fail2ban: %v: %s", err, out)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRunFail2banDir: a daemon started with --fail2ban DIR bans through
// nftables from a jail defined there, with fail2ban's own sshd filter.
func TestRunFail2banDir(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "auth.log")
	appendFile(t, logPath, noise(0))
	f2b := copyFail2ban(t, map[string]string{"jail.local": fmt.Sprintf(
		"[sshd]\nenabled = true\nbackend = polling\nlogpath = %s\nmaxretry = 3\nbantime = 2h\naction = %%(action_mw)s\n", logPath)})
	socket := filepath.Join(dir, "moat.sock")
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf("state_dir: %s\nsocket: %s\nfirewall: {backend: nftables, table: moat}\n", filepath.Join(dir, "state"), socket)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := newNetNS(t)
	d := startDaemon(t, ns, cfg, socket, "--fail2ban", f2b)
	for i := 1; i <= 3; i++ {
		appendFile(t, logPath, sshdFailure("198.51.100.23", i))
	}
	testkit.WaitFor(t, 10*time.Second, "198.51.100.23 banned by fail2ban's sshd jail", func() bool {
		bans := cliBans(t, socket)
		return len(bans) == 1 && bans[0].IP == "198.51.100.23" && bans[0].Jail == "sshd"
	})
	b := cliBans(t, socket)[0]
	if b.ExpiresAt == nil || b.ExpiresAt.Sub(b.BannedAt).Round(time.Minute) != 2*time.Hour {
		t.Errorf("ban = %+v, want jail.local's bantime of 2h", b)
	}
	kb := kernelBans(t, ns, "moat")
	if len(kb) != 1 || kb[0].Prefix.String() != "198.51.100.23/32" {
		t.Errorf("kernel bans = %+v, want 198.51.100.23/32", kb)
	}
	if !strings.Contains(d.logs.String(), "fail2ban option not carried out") || !strings.Contains(d.logs.String(), "sendmail") {
		t.Errorf("the mail action of action_mw was not reported at start:\n%s", d.logs.String())
	}
}

// TestCheckFail2banJSON: `moat check --fail2ban DIR --json` prints each
// enabled jail's effective values, and the plain form lists them.
func TestCheckFail2banJSON(t *testing.T) {
	dir := t.TempDir()
	f2b := copyFail2ban(t, map[string]string{"jail.local": "[DEFAULT]\nbantime = 1h\n[sshd]\nenabled = true\nmaxretry = 4\n" +
		"[nginx-http-auth]\nenabled = true\nfindtime = 5m\n"})
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+dir+"\nfirewall: {backend: none}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b, "--json")
	if r.code != 0 {
		t.Fatalf("check --json: exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		Jails []struct {
			Name     string   `json:"name"`
			MaxRetry int      `json:"maxretry"`
			FindTime float64  `json:"findtime"`
			BanTime  float64  `json:"bantime"`
			Filter   string   `json:"filter"`
			LogPath  []string `json:"logpath"`
		} `json:"jails"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("check --json printed %q: %v", r.stdout, err)
	}
	got := map[string]string{}
	for _, j := range out.Jails {
		got[j.Name] = fmt.Sprintf("%d %v %v %s", j.MaxRetry, j.FindTime, j.BanTime, j.Filter)
	}
	if !strings.HasPrefix(got["sshd"], "4 600 3600 sshd") || !strings.HasPrefix(got["nginx-http-auth"], "5 300 3600 nginx-http-auth") {
		t.Errorf("effective jails = %v; want sshd 4/600/3600 and nginx-http-auth 5/300/3600", got)
	}
	r = cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b)
	if r.code != 0 || !strings.Contains(r.stdout, "nginx-http-auth") || !strings.Contains(r.stdout, "fail2ban: "+f2b) {
		t.Errorf("check --fail2ban: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
