package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestParseBackends: the backend each jail names, whether it reads the
// journal (auto depends on whether its files exist), its journalmatch in
// both forms, and the warning for a journal jail without journalmatch.
func TestParseBackends(t *testing.T) {
	const doc = `defaults:
  backend: auto
jails:
  present:
    logpath: [/var/log/missing.log, /var/log/present.log]
    journalmatch: _SYSTEMD_UNIT=a.service
  absent:
    logpath: /var/log/missing.log
    journalmatch:
      - _SYSTEMD_UNIT=b.service _COMM=b
      - _COMM=b2 + _COMM=b3
  journal:
    backend: systemd
    journalmatch: _SYSTEMD_UNIT=c.service
  everything:
    backend: systemd
  files:
    backend: polling
    logpath: /var/log/missing.log
  inotify:
    backend: pyinotify
    logpath: /var/log/present.log
  off:
    enabled: false
    backend: systemd
`
	exists := func(p string) bool { return p == "/var/log/present.log" }
	cfg, err := Parse("moat.yaml", []byte(doc), Options{Env: rootEnv, LogExists: exists})
	if err != nil {
		t.Fatal(err)
	}
	type src struct {
		backend string
		journal bool
		match   string
	}
	got := map[string]src{}
	for _, j := range cfg.Jails {
		got[j.Name] = src{j.Backend, j.Journal, j.JournalMatch.String()}
		if (j.Filter.LogType == "journal") != j.Journal {
			t.Errorf("jail %s reads the journal: %v; its filter's logtype is %q", j.Name, j.Journal, j.Filter.LogType)
		}
	}
	want := map[string]src{
		"present":    {"auto", false, "_SYSTEMD_UNIT=a.service"},
		"absent":     {"auto", true, "_SYSTEMD_UNIT=b.service _COMM=b + _COMM=b2 + _COMM=b3"},
		"journal":    {"systemd", true, "_SYSTEMD_UNIT=c.service"},
		"everything": {"systemd", true, ""},
		"files":      {"polling", false, ""},
		"inotify":    {"pyinotify", false, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jails = %v\nwant %v", got, want)
	}
	var warns []string
	for _, w := range cfg.Warnings {
		warns = append(warns, w.Error())
	}
	wantWarns := []string{`moat.yaml:15: jails.everything: has backend: systemd and no journalmatch: when it reads the journal, its filter sees every entry (want journalmatch: such as _SYSTEMD_UNIT=ssh.service, to read one service's entries)`}
	if !reflect.DeepEqual(warns, wantWarns) {
		t.Errorf("warnings = %q\nwant %q", warns, wantWarns)
	}
	// Without LogExists, Parse reads no files: every pattern counts as
	// existing.
	cfg, err = Parse("moat.yaml", []byte(doc), Options{Env: rootEnv})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range cfg.Jails {
		if j.Name == "absent" && j.Journal {
			t.Errorf("without LogExists, jail absent reads the journal")
		}
	}
}

// TestDefaultOnJournalHost: the embedded sshd jail reads /var/log/auth.log
// where it exists and the journal, matching both names of sshd's unit,
// where it does not.
func TestDefaultOnJournalHost(t *testing.T) {
	for _, authLog := range []bool{true, false} {
		cfg, err := Default(Options{Env: rootEnv, LogExists: func(string) bool { return authLog }})
		if err != nil {
			t.Fatal(err)
		}
		j := cfg.Jails[0]
		if j.Backend != BackendAuto || j.Journal == authLog || !reflect.DeepEqual(j.LogPath, []string{"/var/log/auth.log"}) {
			t.Errorf("auth.log exists %v: sshd backend %q journal %v logpath %v", authLog, j.Backend, j.Journal, j.LogPath)
		}
		want := JournalMatch{{"_SYSTEMD_UNIT=ssh.service"}, {"_SYSTEMD_UNIT=sshd.service"}, {"_COMM=sshd"}, {"_COMM=sshd-session"}}
		if !reflect.DeepEqual(j.JournalMatch, want) || len(cfg.Warnings) != 0 {
			t.Errorf("sshd journalmatch %q, warnings %v; want %q and none", j.JournalMatch, cfg.Warnings, want)
		}
	}
}

// TestLoadResolvesAuto: Load checks the files of an auto jail itself.
func TestLoadResolvesAuto(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.log")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "moat.yaml")
	text := "jails:\n  a: {backend: auto, logpath: " + filepath.Join(dir, "pre*.log") + ", journalmatch: _COMM=a}\n" +
		"  b: {backend: auto, logpath: " + filepath.Join(dir, "missing.log") + ", journalmatch: _COMM=b}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, Options{Env: rootEnv})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Jails[0].Journal || !cfg.Jails[1].Journal {
		t.Errorf("a (file present) journal %v, b (file missing) journal %v; want false, true", cfg.Jails[0].Journal, cfg.Jails[1].Journal)
	}
	if !LogExists(present) || LogExists(filepath.Join(dir, "missing.log")) || !LogExists(filepath.Join(dir, "*.log")) || LogExists("[") {
		t.Errorf("LogExists does not tell existing files from missing ones")
	}
}

// TestFail2banDirIsTheConfiguration: with a fail2ban directory the
// embedded default brings no jails (the directory is the configuration),
// and jails: may be empty.
func TestFail2banDirIsTheConfiguration(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	cfg, err := load("", missing, Options{Env: rootEnv, Fail2ban: "/etc/fail2ban"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != EmbeddedName || len(cfg.Jails) != 0 || cfg.Fail2ban != "/etc/fail2ban" || cfg.StateDir != "/var/lib/moat" {
		t.Errorf("embedded default with a fail2ban dir = %+v, want its settings and no jails", cfg)
	}
	cfg, err = load("", missing, Options{Env: rootEnv})
	if err != nil || len(cfg.Jails) != 1 {
		t.Errorf("embedded default alone = %+v, %v; want its sshd jail", cfg, err)
	}
	for _, doc := range []string{
		"fail2ban: /etc/fail2ban\njails: {}\n",
		"fail2ban: /etc/fail2ban\njails:\n",
		"fail2ban: /etc/fail2ban\njails:\n  web: {enabled: false, logpath: /var/log/web.log}\n",
	} {
		cfg, err := Parse("moat.yaml", []byte(doc), Options{Env: rootEnv})
		if err != nil || len(cfg.Jails) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want no jails and no error", doc, cfg, err)
		}
	}
	if _, err := Parse("moat.yaml", []byte("jails: {}\n"), Options{Env: rootEnv}); err == nil || !strings.Contains(err.Error(), "moat.yaml:1: jails: is empty") {
		t.Errorf("jails: {} without a fail2ban dir: %v, want moat.yaml:1: jails: is empty", err)
	}
}
