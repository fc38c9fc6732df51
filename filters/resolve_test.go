package filters

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestResolveOrder: a path is itself, a name is looked for in each
// filter.d in order (NAME.conf or NAME.local), then among the built-ins;
// Load reads what Resolve names and says so in Filter.Source.
func TestResolveOrder(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	def := "[Definition]\nfailregex = ^mine from <HOST>$\n"
	for _, p := range []string{filepath.Join(a, "sshd.conf"), filepath.Join(b, "sshd.conf"), filepath.Join(b, "onlylocal.local")} {
		if err := os.WriteFile(p, []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		spec string
		dirs []string
		want string
	}{
		{"sshd", nil, "built-in sshd"},
		{"sshd[mode=aggressive]", []string{a, b}, filepath.Join(a, "sshd.conf")},
		{"sshd", []string{b, a}, filepath.Join(b, "sshd.conf")},
		{"sshd", []string{t.TempDir()}, "built-in sshd"},
		{"onlylocal", []string{a, b}, filepath.Join(b, "onlylocal.local")},
		{filepath.Join(a, "sshd.conf"), []string{b}, filepath.Join(a, "sshd.conf")},
	}
	for _, c := range cases {
		src, err := Resolve(c.spec, c.dirs)
		if err != nil || src.String() != c.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", c.spec, c.dirs, src, err, c.want)
			continue
		}
		f, err := (&Loader{Dirs: c.dirs}).Load(c.spec)
		if err != nil {
			t.Fatalf("Load(%q): %v", c.spec, err)
		}
		if f.Source() != src {
			t.Errorf("Load(%q).Source() = %q, Resolve says %q", c.spec, f.Source(), src)
		}
		_, mine := f.Match("mine from 192.0.2.1", time.Now())
		if mine != (src.File != "") {
			t.Errorf("Load(%q) matched its file's regex: %v, want %v", c.spec, mine, src.File != "")
		}
	}
	if _, err := Resolve("nosuch", []string{a}); !errors.Is(err, ErrNoFilter) {
		t.Errorf("unknown name: %v, want ErrNoFilter", err)
	}
}
