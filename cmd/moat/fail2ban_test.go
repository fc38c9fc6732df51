package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/internal/testkit"
	"github.com/moatproj/moat/sources/journal"
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

// checkJSONOut is what `moat check --fail2ban DIR --json` prints.
type checkJSONOut struct {
	Jails []struct {
		Name         string   `json:"name"`
		MaxRetry     int      `json:"maxretry"`
		FindTime     float64  `json:"findtime"`
		BanTime      float64  `json:"bantime"`
		Filter       string   `json:"filter"`
		LogPath      []string `json:"logpath"`
		Backend      string   `json:"backend"`
		Journal      bool     `json:"journal"`
		JournalMatch string   `json:"journalmatch"`
		LogType      string   `json:"logtype"`
	} `json:"jails"`
}

func checkJSON(t *testing.T, stdout string) checkJSONOut {
	t.Helper()
	var out checkJSONOut
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("check --json printed %q: %v", stdout, err)
	}
	return out
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
	out := checkJSON(t, r.stdout)
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

// fail2banReader is a Python script that reads a fail2ban directory with
// fail2ban's own JailsReader and prints, per jail, what it hands the
// server: backend, maxretry, findtime and bantime in seconds, log files
// found, and the journalmatch arguments ("+" between commands).
const fail2banReader = `import sys, json
from fail2ban.client.jailsreader import JailsReader
from fail2ban.server.mytime import MyTime
r = JailsReader(basedir=sys.argv[1])
if not r.read() or not r.getOptions():
    sys.exit("fail2ban cannot read " + sys.argv[1])
out = {}
for c in r.convert(allow_no_files=True):
    if c[0] == "add":
        out[c[1]] = {"backend": c[2], "logpath": [], "journalmatch": []}
    elif c[0] == "set" and c[1] in out:
        j = out[c[1]]
        if c[2] == "maxretry":
            j["maxretry"] = int(c[3])
        elif c[2] in ("findtime", "bantime"):
            j[c[2]] = float(MyTime.str2seconds(c[3]))
        elif c[2] == "addlogpath":
            j["logpath"].append(c[3])
        elif c[2] == "addjournalmatch":
            j["journalmatch"] += (["+"] if j["journalmatch"] else []) + list(c[3:])
print(json.dumps(out))
`

type f2bReaderJail struct {
	Backend      string   `json:"backend"`
	MaxRetry     int      `json:"maxretry"`
	FindTime     float64  `json:"findtime"`
	BanTime      float64  `json:"bantime"`
	LogPath      []string `json:"logpath"`
	JournalMatch []string `json:"journalmatch"`
}

// readWithFail2ban runs fail2banReader on dir with the Python that has
// Debian's fail2ban module.
func readWithFail2ban(t *testing.T, dir string) map[string]f2bReaderJail {
	t.Helper()
	const py = "/usr/bin/python3"
	if exec.Command(py, "-c", "import fail2ban.client.jailsreader").Run() != nil {
		testkit.Missing(t, "%s cannot import fail2ban (Debian's fail2ban package): cannot compare with fail2ban's reader", py)
	}
	cmd := exec.Command(py, "-c", fail2banReader, dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fail2ban's JailsReader on %s: %v\n%s", dir, err, stderr.String())
	}
	var jails map[string]f2bReaderJail
	if err := json.Unmarshal(out, &jails); err != nil {
		t.Fatalf("fail2ban's JailsReader printed %q: %v", out, err)
	}
	return jails
}

// TestCheckFail2banAsInstalled: Debian's /etc/fail2ban as the package
// installs it (jail.d/defaults-debian.conf enables sshd) is a whole
// configuration: `moat check --fail2ban DIR` without a YAML file exits 0,
// and --json shows the sshd jail with fail2ban's effective values, on the
// journal when fail2ban finds no log file (journalmatch from
// filter.d/sshd.conf).
func TestCheckFail2banAsInstalled(t *testing.T) {
	if _, err := os.Stat(configs.SystemPath); err == nil {
		testkit.Missing(t, "%s exists: moat check without --config would read it, not the embedded default", configs.SystemPath)
	}
	f2b := copyFail2ban(t, nil)
	env := map[string]string{"HOME": t.TempDir()}
	r := cli(t, env, "check", "--fail2ban", f2b)
	if r.code != 0 || !strings.Contains(r.stdout, "sshd") {
		t.Fatalf("check --fail2ban %s: exit %d\n%s%s", f2b, r.code, r.stdout, r.stderr)
	}
	r = cli(t, env, "check", "--fail2ban", f2b, "--json")
	if r.code != 0 {
		t.Fatalf("check --fail2ban --json: exit %d: %s", r.code, r.stderr)
	}
	out := checkJSON(t, r.stdout)
	want := readWithFail2ban(t, f2b)
	if len(out.Jails) != len(want) {
		t.Fatalf("moat enables %d jails, fail2ban %v", len(out.Jails), want)
	}
	for _, j := range out.Jails {
		w, ok := want[j.Name]
		if !ok {
			t.Errorf("moat enables %s, fail2ban does not", j.Name)
			continue
		}
		if j.Backend != w.Backend || j.MaxRetry != w.MaxRetry || j.FindTime != w.FindTime || j.BanTime != w.BanTime {
			t.Errorf("%s: backend %s maxretry %d findtime %v bantime %v; fail2ban %s %d %v %v",
				j.Name, j.Backend, j.MaxRetry, j.FindTime, j.BanTime, w.Backend, w.MaxRetry, w.FindTime, w.BanTime)
		}
		// fail2ban reads the journal for systemd; moat also for auto when
		// fail2ban finds no log file (fail2ban would not start the jail).
		inJournal := strings.HasPrefix(w.Backend, "systemd") || w.Backend == "auto" && len(w.LogPath) == 0
		if j.Journal != inJournal || (j.LogType == "journal") != inJournal {
			t.Errorf("%s: journal %v logtype %s; fail2ban backend %s found log files %v", j.Name, j.Journal, j.LogType, w.Backend, w.LogPath)
		}
		m, err := journal.ParseMatch(j.JournalMatch)
		if err != nil || !slices.Equal(m.Args(), w.JournalMatch) {
			t.Errorf("%s: journalmatch %q (%v), fail2ban %q", j.Name, j.JournalMatch, err, w.JournalMatch)
		}
	}
	sshd, ok := want["sshd"]
	if !ok || len(sshd.JournalMatch) == 0 {
		t.Errorf("fail2ban's sshd jail %+v: want it enabled, with filter.d/sshd.conf's journalmatch", sshd)
	}
}

// TestCheckFail2banJailInBothPlaces: a YAML jail that the fail2ban
// directory also enables is an error naming the YAML line, the fail2ban
// file and section, and the ways out.
func TestCheckFail2banJailInBothPlaces(t *testing.T) {
	f2b := copyFail2ban(t, nil)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	text := "state_dir: " + dir + "\nfirewall: {backend: none}\njails:\n  web: {logpath: /var/log/web.log, filter: sshd}\n  sshd: {logpath: /var/log/auth.log}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b)
	line := fmt.Sprintf("%s:5: jails.sshd: is also a jail of the fail2ban directory %s (%s:", cfg, f2b, filepath.Join(f2b, "jail.conf"))
	for _, want := range []string{line, "[sshd], enabled in " + filepath.Join(f2b, "jail.d", "defaults-debian.conf") + ":",
		"rename this one, or disable one of the two (enabled: false here, or enabled = false in [sshd] of " + filepath.Join(f2b, "jail.local")} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("check of a jail in both: exit %d, stderr %q; want %q", r.code, r.stderr, want)
		}
	}
	// Disabling the YAML jail is one way out.
	text = strings.Replace(text, "sshd: {", "sshd: {enabled: false, ", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b); r.code != 0 {
		t.Errorf("with the YAML sshd disabled: exit %d: %s", r.code, r.stderr)
	}
}

// TestCheckFail2banKeyNoJails: fail2ban: DIR with jails: {} takes the
// jails from DIR; a systemd jail there is listed with its journal match.
func TestCheckFail2banKeyNoJails(t *testing.T) {
	f2b := copyFail2ban(t, map[string]string{"jail.local": "[nginx-http-auth]\nenabled = true\nbackend = systemd\n"})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	text := "state_dir: " + dir + "\nfirewall: {backend: none}\nfail2ban: " + f2b + "\njails: {}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, nil, "check", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("check of fail2ban: with jails: {}: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"sshd", "nginx-http-auth  nginx-http-auth", "systemd", "journal:\n", "  nginx-http-auth: _SYSTEMD_UNIT=nginx.service + _COMM=nginx\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
}
