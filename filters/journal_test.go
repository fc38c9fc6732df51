package filters

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// journalFilters are filter.d files written the ways fail2ban's are:
// journalmatch in [Definition] or [Init], with %(x)s and <tags>, and
// logtype set in the different places fail2ban tells apart.
var journalFilters = map[string]string{
	"common.conf": "[DEFAULT]\nlogtype = file\n",
	"plain.conf": `[INCLUDES]
before = common.conf
[Definition]
_daemon = app
failregex = ^fail <HOST>$
journalmatch = _SYSTEMD_UNIT=%(_daemon)s.service + _COMM=<_daemon>
`,
	"init.conf": `[INCLUDES]
before = common.conf
[Init]
unit = init.service
journalmatch = _SYSTEMD_UNIT=%(unit)s PRIORITY=5
logtype = journal
[Definition]
failregex = ^fail <HOST>$
`,
	"pinned.conf": `[Definition]
logtype = short
failregex = ^fail <HOST>$
`,
	"none.conf": "[Definition]\nfailregex = ^fail <HOST>$\n",
}

func writeJournalFilters(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range journalFilters {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFilterJournalOptions(t *testing.T) {
	dir := writeJournalFilters(t)
	tests := []struct {
		spec, match, logtype string
		pinned               bool
	}{
		{"plain", "_SYSTEMD_UNIT=app.service + _COMM=app", "file", false},
		{"plain[_daemon=web]", "_SYSTEMD_UNIT=web.service + _COMM=web", "file", false},
		{"plain[logtype=journal]", "_SYSTEMD_UNIT=app.service + _COMM=app", "journal", true},
		{"plain[journalmatch=_COMM=x]", "_COMM=x", "file", false},
		{"init", "_SYSTEMD_UNIT=init.service PRIORITY=5", "journal", false},
		{"init[unit=other.service]", "_SYSTEMD_UNIT=other.service PRIORITY=5", "journal", false},
		{"pinned", "", "short", true},
		{"none", "", "", false},
	}
	loader := &Loader{Dirs: []string{dir}}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			f, err := loader.Load(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			match, err := f.JournalMatch()
			if err != nil || match != tc.match {
				t.Errorf("JournalMatch() = %q, %v; want %q", match, err, tc.match)
			}
			lt, pinned, err := f.LogType()
			if err != nil || lt != tc.logtype || pinned != tc.pinned {
				t.Errorf("LogType() = %q, %v, %v; want %q, %v", lt, pinned, err, tc.logtype, tc.pinned)
			}
		})
	}
}

// TestLoadLogType: a jail's logtype reaches a filter that reads it and
// does not pin it, as fail2ban's does.
func TestLoadLogType(t *testing.T) {
	dir := writeJournalFilters(t)
	tests := []struct{ spec, jail, want string }{
		{"plain", "journal", "journal"},
		{"plain", "file", "file"},
		{"plain", "", "file"},
		{"plain[_daemon=x]", "journal", "journal"},
		{"plain[logtype=file]", "journal", "file"},
		{"init", "file", "file"},
		{"init", "journal", "journal"},
		{"pinned", "journal", "short"},
		{"none", "journal", ""},
	}
	loader := &Loader{Dirs: []string{dir}}
	for _, tc := range tests {
		t.Run(tc.spec+"/"+tc.jail, func(t *testing.T) {
			f, err := loader.LoadLogType(tc.spec, tc.jail)
			if err != nil {
				t.Fatal(err)
			}
			if lt, _, err := f.LogType(); err != nil || lt != tc.want {
				t.Errorf("logtype %q, %v; want %q", lt, err, tc.want)
			}
			if m, _ := f.JournalMatch(); strings.HasPrefix(tc.spec, "plain[_daemon=x]") && m != "_SYSTEMD_UNIT=x.service + _COMM=x" {
				t.Errorf("the options given with the name were lost: journalmatch %q", m)
			}
		})
	}
	if _, err := loader.LoadLogType("missing", "journal"); err == nil {
		t.Error("LoadLogType of a missing filter: no error")
	}
}

// TestStockFilterJournalMatch: fail2ban's sshd filter names sshd's unit
// and command, and every installed filter's journalmatch can be read.
func TestStockFilterJournalMatch(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(stockFilterDir, "*.conf"))
	if err != nil || len(files) == 0 {
		testkit.Missing(t, "needs /etc/fail2ban/filter.d from Debian's fail2ban (installed by .ci/run)")
	}
	loader := &Loader{Dirs: []string{stockFilterDir}}
	withMatch := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".conf")
		if name == "common" || strings.HasSuffix(name, "-common") {
			continue
		}
		f, err := loader.Load(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		m, err := f.JournalMatch()
		if err != nil {
			t.Errorf("%s: JournalMatch: %v", name, err)
		}
		if m != "" {
			withMatch++
		}
		if name == "sshd" && m != "_SYSTEMD_UNIT=sshd.service + _COMM=sshd" {
			t.Errorf("sshd: JournalMatch() = %q, want fail2ban's sshd.service or sshd", m)
		}
	}
	if withMatch < 10 {
		t.Errorf("only %d stock filters have a journalmatch", withMatch)
	}
}
