package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("jails:\n  web: {logpath: /var/log/web.log}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("jails:\n  web: {logpath: /var/log/web.log, maxretry: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	opts := Options{Env: rootEnv}

	tests := []struct {
		name, path, system string
		wantFile           string // Config.File on success
		wantJail           string
		wantNotFound       bool
		wantConfigErr      string // a *Error's message
		wantOtherErr       bool
	}{
		{name: "named file", path: good, system: missing, wantFile: good, wantJail: "web"},
		{name: "no path, system file present", path: "", system: good, wantFile: good, wantJail: "web"},
		{name: "no path, no system file", path: "", system: missing, wantFile: "(embedded default)", wantJail: "sshd"},
		{name: "named file missing", path: missing, system: good, wantNotFound: true},
		{name: "named file bad", path: bad, system: good, wantConfigErr: bad + `:2: jails.web.maxretry: "0" is out of range (want a whole number of at least 1, such as 5)`},
		{name: "no path, system file bad", path: "", system: bad, wantConfigErr: bad + `:2: jails.web.maxretry: "0" is out of range (want a whole number of at least 1, such as 5)`},
		{name: "named path is a directory", path: dir, system: good, wantOtherErr: true},
		{name: "system path is a directory", path: "", system: dir, wantOtherErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(tc.path, tc.system, opts)
			var ce *Error
			switch {
			case tc.wantNotFound:
				if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tc.path) {
					t.Errorf("load = %v, want ErrNotFound naming the path", err)
				}
			case tc.wantConfigErr != "":
				if !errors.As(err, &ce) || ce.Error() != tc.wantConfigErr || errors.Is(err, ErrNotFound) {
					t.Errorf("load = %v, want %s", err, tc.wantConfigErr)
				}
			case tc.wantOtherErr:
				if err == nil || errors.Is(err, ErrNotFound) || errors.As(err, &ce) {
					t.Errorf("load = %v, want a read error that is neither ErrNotFound nor a *Error", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if cfg.File != tc.wantFile || len(cfg.Jails) != 1 || cfg.Jails[0].Name != tc.wantJail {
					t.Errorf("load = %+v, want file %s with jail %s", cfg, tc.wantFile, tc.wantJail)
				}
			}
		})
	}
}

func TestEnvFromOS(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/tmp/state-test")
	t.Setenv("XDG_RUNTIME_DIR", "/tmp/run-test")
	env := EnvFromOS()
	if env.XDGStateHome != "/tmp/state-test" || env.XDGRuntimeDir != "/tmp/run-test" {
		t.Errorf("EnvFromOS = %+v, want the XDG variables", env)
	}
	if env.Root != (os.Geteuid() == 0) || env.UID != os.Getuid() {
		t.Errorf("EnvFromOS = %+v, want root %v uid %d", env, os.Geteuid() == 0, os.Getuid())
	}
}

func TestCheckFilterErrorUnwraps(t *testing.T) {
	errMissing := errors.New("no such filter")
	_, err := Parse("moat.yaml", []byte("jails:\n  sshd: {logpath: /var/log/auth.log}\n"), Options{Env: rootEnv, CheckFilter: func(Filter) error {
		return fmt.Errorf("load filter sshd: %w", errMissing)
	}})
	var ce *Error
	if !errors.Is(err, errMissing) || !errors.As(err, &ce) || ce.Line != 2 || ce.Field != "jails.sshd.filter" {
		t.Errorf("Parse = %v, want a *Error at line 2 wrapping the CheckFilter error", err)
	}
}
