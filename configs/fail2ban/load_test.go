package fail2ban

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (relative path → content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func findJail(t *testing.T, r *Result, name string) Jail {
	t.Helper()
	for _, j := range r.Jails {
		if j.Name == name {
			return j
		}
	}
	t.Fatalf("jail %s not among enabled jails %v", name, jailNames(r))
	return Jail{}
}

func jailNames(r *Result) []string {
	var out []string
	for _, j := range r.Jails {
		out = append(out, j.Name)
	}
	return out
}

// baseConf is a small jail.conf in the shape of fail2ban's: defaults that
// interpolate the section name and a paths file included before it.
const baseConf = `[INCLUDES]
before = paths-test.conf

[DEFAULT]
bantime  = 10m
findtime = 10m
maxretry = 5
enabled = false
mode = normal
filter = %(__name__)s[mode=%(mode)s]
port = 0:65535
protocol = tcp
banaction = nftables-multiport
banaction_allports = nftables-allports
action_ = %(banaction)s[port="%(port)s", protocol="%(protocol)s"]
action_mw = %(action_)s
            sendmail-whois[dest="root"]
action = %(action_)s
usedns = warn
ignorecommand =

[sshd]
port    = ssh
logpath = %(sshd_log)s

[web]
port = http,https
logpath = %(web_log)s
          /srv/other.log tail

[off]
logpath = /x
`

const pathsConf = `[DEFAULT]
syslog_authpriv = /var/log/auth.log
sshd_log = %(syslog_authpriv)s
web_log = /var/log/web/*.log
`

// TestLoadPrecedence checks fail2ban's file order: jail.conf <
// jail.d/*.conf < jail.local < jail.d/*.local, with includes and their
// .local overrides, option by option.
func TestLoadPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		jail  string
		check func(t *testing.T, j Jail)
	}{
		{
			name:  "conf only, disabled by default",
			files: map[string]string{"jail.d/a.conf": "[sshd]\nenabled = true\n"},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) {
				if j.MaxRetry != 5 || j.BanTime != 10*time.Minute || j.Filter.Name != "sshd[mode=normal]" {
					t.Errorf("got maxretry %d bantime %v filter %q", j.MaxRetry, j.BanTime, j.Filter.Name)
				}
				if !slices.Equal(j.LogPath, []string{"/var/log/auth.log"}) {
					t.Errorf("logpath %v", j.LogPath)
				}
			},
		},
		{
			name: "local beats jail.d conf",
			files: map[string]string{
				"jail.d/a.conf": "[sshd]\nenabled = true\nmaxretry = 7\n",
				"jail.local":    "[sshd]\nmaxretry = 3\n",
			},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantInt(t, "maxretry", j.MaxRetry, 3) },
		},
		{
			name: "jail.d local beats jail.local",
			files: map[string]string{
				"jail.local":     "[sshd]\nenabled = true\nmaxretry = 3\n",
				"jail.d/z.local": "[sshd]\nmaxretry = 2\n",
			},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantInt(t, "maxretry", j.MaxRetry, 2) },
		},
		{
			name: "jail.d confs in name order",
			files: map[string]string{
				"jail.d/b.conf": "[sshd]\nmaxretry = 8\n",
				"jail.d/a.conf": "[sshd]\nenabled = true\nmaxretry = 9\n",
			},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantInt(t, "maxretry", j.MaxRetry, 8) },
		},
		{
			name: "default in local reaches jail.conf's sections",
			files: map[string]string{
				"jail.local": "[DEFAULT]\nbantime = 1h\nmode = aggressive\n[sshd]\nenabled = true\n",
			},
			jail: "sshd",
			check: func(t *testing.T, j Jail) {
				if j.BanTime != time.Hour || j.Filter.Name != "sshd[mode=aggressive]" || j.FilterOptions["mode"] != "aggressive" || j.FilterName != "sshd" {
					t.Errorf("bantime %v filter %q %q %v", j.BanTime, j.Filter.Name, j.FilterName, j.FilterOptions)
				}
			},
		},
		{
			name: "section value beats a default set later",
			files: map[string]string{
				"jail.local": "[DEFAULT]\nport = 1\n[sshd]\nenabled = true\n",
			},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantString(t, "port", j.Port, "ssh") },
		},
		{
			name: "paths .local overrides the included file",
			files: map[string]string{
				"paths-test.local": "[DEFAULT]\nsyslog_authpriv = /srv/auth.log\n",
				"jail.local":       "[sshd]\nenabled = true\n",
			},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantStrings(t, "logpath", j.LogPath, []string{"/srv/auth.log"}) },
		},
		{
			name:  "multi-line logpath with tail marker",
			files: map[string]string{"jail.local": "[web]\nenabled = true\n"},
			jail:  "web",
			check: func(t *testing.T, j Jail) {
				wantStrings(t, "logpath", j.LogPath, []string{"/var/log/web/*.log", "/srv/other.log"})
				wantString(t, "filter", j.Filter.Name, "web[mode=normal]")
			},
		},
		{
			name:  "known value extends jail.conf's",
			files: map[string]string{"jail.local": "[web]\nenabled = true\nport = %(known/port)s,8080\n"},
			jail:  "web",
			check: func(t *testing.T, j Jail) {
				wantString(t, "port", j.Port, "http,https,8080")
				if len(j.Ports) != 3 || j.Ports[2].First != 8080 {
					t.Errorf("ports %v", j.Ports)
				}
			},
		},
		{
			name: "times, escalation, ignore lists",
			files: map[string]string{"jail.local": `[sshd]
enabled = true
bantime = -1
findtime = 1h 30m
bantime.increment = true
bantime.factor = 2
bantime.maxtime = 5w
bantime.multipliers = 1 2 4 8
bantime.rndtime = 10m
ignoreip = 127.0.0.1/8 ::1, 192.0.2.7
ignoreself = false
`},
			jail: "sshd",
			check: func(t *testing.T, j Jail) {
				if j.BanTime >= 0 || j.FindTime != 90*time.Minute {
					t.Errorf("bantime %v findtime %v", j.BanTime, j.FindTime)
				}
				inc := j.Increment
				if !inc.Enabled || inc.Factor != 2 || inc.MaxTime != 35*24*time.Hour || inc.RndTime != 10*time.Minute || !slices.Equal(inc.Multipliers, []float64{1, 2, 4, 8}) {
					t.Errorf("increment %+v", inc)
				}
				var ips []string
				for _, p := range j.IgnoreIP {
					ips = append(ips, p.String())
				}
				wantStrings(t, "ignoreip", ips, []string{"127.0.0.0/8", "::1/128", "192.0.2.7/32"})
				if j.IgnoreSelf {
					t.Error("ignoreself true, want false")
				}
			},
		},
		{
			name:  "allports action covers every port",
			files: map[string]string{"jail.local": "[sshd]\nenabled = true\nbanaction = %(banaction_allports)s\n"},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) {
				if j.Ports != nil {
					t.Errorf("ports %v, want nil (all)", j.Ports)
				}
			},
		},
		{
			name:  "action port option wins",
			files: map[string]string{"jail.local": "[sshd]\nenabled = true\naction = nftables-multiport[port=\"2222\"]\n"},
			jail:  "sshd",
			check: func(t *testing.T, j Jail) { wantString(t, "port", j.Port, "2222") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"jail.conf": baseConf, "paths-test.conf": pathsConf}
			for k, v := range tt.files {
				files[k] = v
			}
			dir := writeTree(t, files)
			r, err := Load(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(jailNames(r), "off") {
				t.Error("disabled jail off is listed")
			}
			tt.check(t, findJail(t, r, tt.jail))
		})
	}
}

func wantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func wantString(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func wantStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestLoadWarnings checks that options moat does not carry out are
// reported by jail and option, and that the jail is still loaded.
func TestLoadWarnings(t *testing.T) {
	ignoreFile := filepath.Join(t.TempDir(), "ignore.txt")
	if err := os.WriteFile(ignoreFile, []byte("# trusted\n198.51.100.0/24\n203.0.113.9 # one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := writeTree(t, map[string]string{
		"jail.conf":       baseConf,
		"paths-test.conf": pathsConf,
		"jail.local": `[sshd]
enabled = true
action = %(action_mw)s
ignorecommand = /usr/local/bin/check <ip>
usedns = yes
ignoreip = 192.0.2.1 file:` + ignoreFile + ` trusted.example.org
failregex = ^bad <HOST>$

[web]
enabled = true
backend = systemd
bantime.increment = true
bantime.formula = ban.Time * 2
`,
	})
	r, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, w := range r.Warnings {
		got[w.Jail+" "+w.Option+" "+w.Value] = true
	}
	for _, want := range []string{
		"sshd action sendmail-whois",
		"sshd ignorecommand /usr/local/bin/check <ip>",
		"sshd usedns yes",
		"sshd ignoreip trusted.example.org",
		"sshd failregex ^bad <HOST>$",
		"web bantime.formula ban.Time * 2",
	} {
		if !got[want] {
			t.Errorf("no warning %q; got %v", want, r.Warnings)
		}
	}
	if len(r.Warnings) != 6 {
		t.Errorf("%d warnings, want 6 (none for the journal backend, which moat reads): %v", len(r.Warnings), r.Warnings)
	}
	sshd := findJail(t, r, "sshd")
	var ips []string
	for _, p := range sshd.IgnoreIP {
		ips = append(ips, p.String())
	}
	wantStrings(t, "ignoreip", ips, []string{"192.0.2.1/32", "198.51.100.0/24", "203.0.113.9/32"})
	wantString(t, "port", sshd.Port, "ssh")
	web := findJail(t, r, "web")
	if !web.Journal || len(web.LogPath) != 0 || web.Backend != "systemd" {
		t.Errorf("web backend %q journal %v logpath %v, want systemd, journal and no paths", web.Backend, web.Journal, web.LogPath)
	}
}

// TestLoadJournal: which jails read the journal (auto when no logpath
// pattern matches a file), their journalmatch (the jail's, even empty,
// over the filter's) and the logtype their filter gets.
func TestLoadJournal(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"jail.conf":       baseConf,
		"paths-test.conf": pathsConf,
		"filter.d/app.conf": "[Init]\nunit = app.service\n[Definition]\nfailregex = ^fail <HOST>$\n" +
			"journalmatch = _SYSTEMD_UNIT=%(unit)s + _COMM=app\n",
		"jail.local": `[app-files]
enabled = true
filter = app
logpath = /present/app.log
[app-missing]
enabled = true
filter = app[unit=other.service]
backend = auto
logpath = /missing/app.log
[app-journal]
enabled = true
filter = app
backend = systemd
logpath = /present/app.log
[app-own]
enabled = true
filter = app
backend = systemd
journalmatch = _SYSTEMD_UNIT=own.service PRIORITY=3
[app-all]
enabled = true
filter = app
backend = systemd
journalmatch =
[app-polling]
enabled = true
filter = app
backend = polling
logpath = /missing/app.log
[app-options]
enabled = true
filter = app
backend = systemd[journalflags=1]
`,
	})
	r, err := Load(dir, Options{LogExists: func(p string) bool { return strings.HasPrefix(p, "/present/") }})
	if err != nil {
		t.Fatal(err)
	}
	type src struct {
		backend string
		logpath []string
		journal bool
		match   string
		logtype string
	}
	want := map[string]src{
		"app-files":   {"auto", []string{"/present/app.log"}, false, "_SYSTEMD_UNIT=app.service + _COMM=app", "file"},
		"app-missing": {"auto", []string{"/missing/app.log"}, true, "_SYSTEMD_UNIT=other.service + _COMM=app", "journal"},
		"app-journal": {"systemd", nil, true, "_SYSTEMD_UNIT=app.service + _COMM=app", "journal"},
		"app-own":     {"systemd", nil, true, "_SYSTEMD_UNIT=own.service PRIORITY=3", "journal"},
		"app-all":     {"systemd", nil, true, "", "journal"},
		"app-polling": {"polling", []string{"/missing/app.log"}, false, "_SYSTEMD_UNIT=app.service + _COMM=app", "file"},
		"app-options": {"systemd", nil, true, "_SYSTEMD_UNIT=app.service + _COMM=app", "journal"},
	}
	for name, w := range want {
		j := findJail(t, r, name)
		got := src{j.Backend, j.LogPath, j.Journal, j.JournalMatch.String(), j.Filter.LogType}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %+v, want %+v", name, got, w)
		}
	}
	var warns []string
	for _, w := range r.Warnings {
		warns = append(warns, w.String())
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "jail app-options: backend = systemd[journalflags=1]: backend options are not carried out") {
		t.Errorf("warnings %q, want one for the backend's options", warns)
	}
}

// TestLoadErrors checks that bad values and bad files are errors naming
// the file and line.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		local string
		want  string
	}{
		{name: "bad maxretry", local: "[sshd]\nenabled = true\nmaxretry = lots\n", want: "jail.local:3: maxretry = \"lots\""},
		{name: "bad bantime", local: "[sshd]\nenabled = true\nbantime = 10 parsecs\n", want: "jail.local:3: bantime"},
		{name: "bad factor", local: "[sshd]\nenabled = true\nbantime.factor = x\n", want: "jail.local:3: bantime.factor"},
		{name: "missing interpolation", local: "[sshd]\nenabled = true\nlogpath = %(nope_log)s\n", want: "jail.local:3: [sshd] logpath"},
		{name: "syntax", local: "[sshd]\nenabled\n", want: "jail.local:2: line \"enabled\""},
		{name: "bad filter options", local: "[sshd]\nenabled = true\nfilter = sshd[mode\n", want: "jail.local:3: filter"},
		{name: "unknown backend", local: "[sshd]\nenabled = true\nbackend = journald\n", want: "jail.local:3: backend = \"journald\": want auto, pyinotify, gamin, polling or systemd"},
		{name: "bad journalmatch", local: "[sshd]\nenabled = true\nbackend = systemd\njournalmatch = _SYSTEMD_UNIT=ssh.service + sshd\n",
			want: "jail.local:4: journalmatch = \"_SYSTEMD_UNIT=ssh.service + sshd\": want FIELD=value matches such as _SYSTEMD_UNIT=sshd.service, with + between alternatives (this one journalmatch line 1: term \"sshd\" is not FIELD=value)"},
		{name: "bad journalmatch in [DEFAULT]", local: "[DEFAULT]\njournalmatch = _COMM=\"x\n[sshd]\nenabled = true\n", want: "jail.local:2: journalmatch"},
		{name: "disabled jail is not checked", local: "[off]\nmaxretry = lots\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"jail.conf": baseConf, "paths-test.conf": pathsConf, "jail.local": tt.local})
			_, err := Load(dir, Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := Load(t.TempDir(), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: error %v, want fs.ErrNotExist", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "nope"), Options{}); err == nil {
		t.Error("missing dir: no error")
	}
}

// TestJSON checks the check --json shape: seconds, -1 for no end, and
// lists that are never null.
func TestJSON(t *testing.T) {
	dir := writeTree(t, map[string]string{"jail.conf": baseConf, "paths-test.conf": pathsConf,
		"jail.local": "[sshd]\nenabled = true\nbantime = -1\nfindtime = 1h\nmaxretry = 3\n[web]\nenabled = true\nbackend = systemd\n"})
	r, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Jails []struct {
			Name     string   `json:"name"`
			MaxRetry int      `json:"maxretry"`
			FindTime float64  `json:"findtime"`
			BanTime  float64  `json:"bantime"`
			Filter   string   `json:"filter"`
			LogPath  []string `json:"logpath"`
			Ports    []string `json:"ports"`
		} `json:"jails"`
		Warnings []map[string]string `json:"warnings"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Jails) != 2 {
		t.Fatalf("%d jails in %s", len(got.Jails), data)
	}
	s := got.Jails[0]
	if s.Name != "sshd" || s.MaxRetry != 3 || s.FindTime != 3600 || s.BanTime != -1 || s.Filter != "sshd[mode=normal]" ||
		!slices.Equal(s.LogPath, []string{"/var/log/auth.log"}) || !slices.Equal(s.Ports, []string{"22"}) {
		t.Errorf("sshd = %+v", s)
	}
	if !strings.Contains(string(data), `"logpath": []`) {
		t.Errorf("journal jail's logpath is not []: %s", data)
	}
	var raw struct{ Jails []map[string]any }
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	web := raw.Jails[1]
	if web["name"] != "web" || web["backend"] != "systemd" || web["journal"] != true || web["journalmatch"] != "" || web["logtype"] != "journal" ||
		raw.Jails[0]["journal"] == nil {
		t.Errorf("web = %v, want backend systemd reading the journal, every entry; journal always present", web)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("warnings %v, want none", got.Warnings)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"sshd", "sshd[mode=aggressive]", `iptables-multiport[port="ssh,2222", protocol="tcp"]`, "a[x='1'][y=2]", "a[", "[x=1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parseSpec(s)
		_, _ = splitActions(s)
	})
}
