package journal

import (
	"slices"
	"strings"
	"testing"
)

func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Match
	}{
		{"", nil},
		{"  \n ", nil},
		{"_SYSTEMD_UNIT=sshd.service + _COMM=sshd", Match{{"_SYSTEMD_UNIT=sshd.service"}, {"_COMM=sshd"}}},
		{"_SYSTEMD_UNIT=nginx.service _COMM=nginx + CONTAINER_NAME=web", Match{{"_SYSTEMD_UNIT=nginx.service", "_COMM=nginx"}, {"CONTAINER_NAME=web"}}},
		// Lines are alternatives (each is one addjournalmatch).
		{"_COMM=a\n\n_COMM=b X=1", Match{{"_COMM=a"}, {"_COMM=b", "X=1"}}},
		// shlex: quotes and backslashes.
		{`MESSAGE="a b" X='c "d"' Y=e\ f Z="g\"\\h\i" E=`, Match{{"MESSAGE=a b", `X=c "d"`, "Y=e f", `Z=g"\h\i`, "E="}}},
		{`M=a"b c"d`, Match{{"M=ab cd"}}},
		{"F9=x _=y", Match{{"F9=x", "_=y"}}},
	} {
		got, err := ParseMatch(tc.in)
		if err != nil {
			t.Errorf("ParseMatch(%q): %v", tc.in, err)
			continue
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("ParseMatch(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, err string }{
		{"+ _COMM=a", `"+" must stand between`},
		{"_COMM=a +", `"+" must stand between`},
		{"_COMM=a + + _COMM=b", `"+" must stand between`},
		{"sshd", "not FIELD=value"},
		{"/usr/sbin/sshd", "not FIELD=value"},
		{"=x", "no field name"},
		{"_comm=sshd", "only A-Z, 0-9 and _"},
		{"A-B=1", "only A-Z, 0-9 and _"},
		{"1A=x", "cannot start with a digit"},
		{"__CURSOR=x", `starting with "__"`},
		{strings.Repeat("A", 65) + "=x", "longer than 64"},
		{`MESSAGE="open`, "no closing quotation"},
		{`MESSAGE=x\`, "backslash"},
		{"X=a\x00b", "NUL"},
		{"_COMM=a\n+", "line 2"},
	} {
		_, err := ParseMatch(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseMatch(%q) = %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

// TestMatchKey: the key does not depend on the order terms and groups
// were written in, tells different selections apart, and reads back as
// the same selection.
func TestMatchKey(t *testing.T) {
	key := func(s string) string {
		m, err := ParseMatch(s)
		if err != nil {
			t.Fatal(err)
		}
		return m.Key()
	}
	a := key("_SYSTEMD_UNIT=sshd.service + _COMM=sshd")
	if a != "journal:_COMM=sshd + _SYSTEMD_UNIT=sshd.service" {
		t.Errorf("key = %q", a)
	}
	for _, same := range []string{"_COMM=sshd + _SYSTEMD_UNIT=sshd.service", "_COMM=sshd\n_SYSTEMD_UNIT=sshd.service + _COMM=sshd", "  _COMM=sshd   +   _SYSTEMD_UNIT=sshd.service"} {
		if k := key(same); k != a {
			t.Errorf("key(%q) = %q, want %q", same, k, a)
		}
	}
	for _, other := range []string{"_COMM=sshd _SYSTEMD_UNIT=sshd.service", "_COMM=sshd", ""} {
		if k := key(other); k == a {
			t.Errorf("key(%q) = %q, the same as another selection's", other, k)
		}
	}
	if key("") != "journal:" {
		t.Errorf("key of every entry = %q", key(""))
	}
	m, _ := ParseMatch(`MESSAGE="it's a + b" X=1`)
	back, err := ParseMatch(m.String())
	if err != nil || back.Key() != m.Key() {
		t.Errorf("%q read back as %q (%v)", m.String(), back, err)
	}
}

// TestMatchArgs: journalctl gets the terms and "+" as written, after
// "--", so no value is read as an option.
func TestMatchArgs(t *testing.T) {
	m, err := ParseMatch("A=1 B=--follow + C=x")
	if err != nil {
		t.Fatal(err)
	}
	f := New(m, nil, Options{})
	args, _ := f.args()
	i := slices.Index(args, "--")
	if i < 0 || !slices.Equal(args[i+1:], []string{"A=1", "B=--follow", "+", "C=x"}) {
		t.Errorf("args = %q", args)
	}
	if args, _ := New(nil, nil, Options{}).args(); slices.Contains(args, "--") {
		t.Errorf("args without matches hold \"--\"")
	}
}

func TestCheckCursor(t *testing.T) {
	for _, ok := range []string{
		"s=ced636f30bac4fb1be09b63e5fe5368f;i=44b;b=2487cfbf5e104c36b8ee73e643e0b10f;m=56b7b6945;t=66215567d03c2;x=bb37dd267d6372d5",
		"t=66215567d03c2",
		"b=2487cfbf5e104c36b8ee73e643e0b10f;m=1;z=whatever",
	} {
		if err := CheckCursor(ok); err != nil {
			t.Errorf("CheckCursor(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "garbage", "s=123;i=1", "i=1", "t=xyz", "s=ced636f30bac4fb1be09b63e5fe5368f", "t=1;;"} {
		if err := CheckCursor(bad); err == nil {
			t.Errorf("CheckCursor(%q) accepted it", bad)
		}
	}
}
