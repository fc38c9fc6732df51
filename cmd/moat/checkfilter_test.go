package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCheckNamesFilterFiles: `moat check` says, per jail, which file
// (or built-in) its filter name resolves to, as text and in --json: a
// fail2ban jail's filter.d first, then the built-ins.
func TestCheckNamesFilterFiles(t *testing.T) {
	dir := t.TempDir()
	f2b := copyFail2ban(t, map[string]string{"jail.local": "[sshd]\nenabled = true\n[nginx-http-auth]\nenabled = true\n"})
	// No nginx-http-auth in this filter.d: the built-in one runs.
	if err := os.Remove(filepath.Join(f2b, "filter.d", "nginx-http-auth.conf")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "moat.yaml")
	yaml := "state_dir: " + dir + "\nfirewall: {backend: none}\njails:\n  mine:\n    filter: sshd\n    logpath: [" + filepath.Join(dir, "x.log") + "]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	sshdFile := filepath.Join(f2b, "filter.d", "sshd.conf")
	r := cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b)
	for _, want := range []string{`\nsshd +sshd\S* \(` + regexp.QuoteMeta(sshdFile) + `\) `,
		`\nnginx-http-auth +nginx-http-auth\S* \(built-in nginx-http-auth\) `, `\nmine +sshd \(built-in sshd\) `} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("check lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	r = cli(t, nil, "check", "--config", cfg, "--fail2ban", f2b, "--json")
	var out struct {
		Jails []struct {
			Name       string `json:"name"`
			FilterFile string `json:"filter_file"`
		} `json:"jails"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("check --json printed %q: %v", r.stdout, err)
	}
	got := map[string]string{}
	for _, j := range out.Jails {
		got[j.Name] = j.FilterFile
	}
	if got["sshd"] != sshdFile || got["nginx-http-auth"] != "built-in nginx-http-auth" {
		t.Errorf("filter_file = %v; want sshd %s, nginx-http-auth built-in", got, sshdFile)
	}
	if !strings.Contains(r.stdout, "\"maxretry\"") || strings.Index(r.stdout, "\"name\"") > strings.Index(r.stdout, "\"filter_file\"") {
		t.Errorf("--json lost its keys or their order:\n%s", r.stdout)
	}
}
