package fail2ban

import (
	"strings"
	"testing"

	"github.com/moatproj/moat/fail2ban/ini"
)

// TestParseINIAndGet checks ConfigParser's reading and interpolation on
// literals: get(section, option) = want, or an error containing wantErr.
func TestParseINIAndGet(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		sec     string
		opt     string
		want    string
		unset   bool
		wantErr string
	}{
		{name: "plain", text: "[a]\nx = 1\n", sec: "a", opt: "x", want: "1"},
		{name: "colon separator", text: "[a]\nx: 1\n", sec: "a", opt: "x", want: "1"},
		{name: "first separator wins", text: "[a]\nx = a:b=c\n", sec: "a", opt: "x", want: "a:b=c"},
		{name: "key lower-cased", text: "[a]\nMaxRetry = 4\n", sec: "a", opt: "maxretry", want: "4"},
		{name: "default inherited", text: "[DEFAULT]\nx = d\n[a]\ny = 1\n", sec: "a", opt: "x", want: "d"},
		{name: "section overrides default", text: "[DEFAULT]\nx = d\n[a]\nx = s\n", sec: "a", opt: "x", want: "s"},
		{name: "unset", text: "[a]\ny = 1\n", sec: "a", opt: "x", unset: true},
		{name: "multi-line", text: "[a]\nx = one\n    two\n\tthree\n", sec: "a", opt: "x", want: "one\ntwo\nthree"},
		{name: "blank line kept inside value", text: "[a]\nx = one\n\n  two\n", sec: "a", opt: "x", want: "one\n\ntwo"},
		{name: "trailing blank lines dropped", text: "[a]\nx = one\n\n\ny = 2\n", sec: "a", opt: "x", want: "one"},
		{name: "comment inside value skipped", text: "[a]\nx = one\n# note\n  two\n", sec: "a", opt: "x", want: "one\ntwo"},
		{name: "inline comment", text: "[a]\nx = 10m ; ten minutes\n", sec: "a", opt: "x", want: "10m"},
		{name: "semicolon without space kept", text: "[a]\nx = a;b\n", sec: "a", opt: "x", want: "a;b"},
		{name: "hash is not inline", text: "[a]\nx = a # b\n", sec: "a", opt: "x", want: "a # b"},
		{name: "continuation must be deeper than key", text: "[a]\n  x = 1\n  y = 2\n", sec: "a", opt: "y", want: "2"},
		{name: "empty value", text: "[a]\nx =\n", sec: "a", opt: "x", want: ""},
		{name: "interpolation", text: "[a]\nx = %(y)s/log\ny = /var\n", sec: "a", opt: "x", want: "/var/log"},
		{name: "interpolation from default sees section", text: "[DEFAULT]\nf = %(__name__)s[mode=%(mode)s]\nmode = normal\n[sshd]\nmode = aggressive\n", sec: "sshd", opt: "f", want: "sshd[mode=aggressive]"},
		{name: "interpolation name lower-cased", text: "[a]\nx = %(Y)s\ny = 1\n", sec: "a", opt: "x", want: "1"},
		{name: "nested interpolation", text: "[DEFAULT]\na = %(b)s\nb = %(c)s\nc = deep\n[s]\n", sec: "s", opt: "a", want: "deep"},
		{name: "percent escape", text: "[a]\nx = 100%%\n", sec: "a", opt: "x", want: "100%"},
		{name: "section reference", text: "[a]\nx = %(b/y)s\n[b]\ny = fromb\n", sec: "a", opt: "x", want: "fromb"},
		{name: "section reference falls back to default", text: "[DEFAULT]\ny = d\n[a]\nx = %(b/y)s\n[b]\nz = 1\n", sec: "a", opt: "x", want: "d"},
		{name: "default reference", text: "[DEFAULT]\nbackend = auto\nb = %(default/backend)s\n[a]\nbackend = systemd\n", sec: "a", opt: "b", want: "auto"},
		{name: "known without earlier value is default", text: "[DEFAULT]\nx = d\n[a]\nx = %(known/x)s+s\n", sec: "a", opt: "x", want: "d+s"},
		{name: "missing reference", text: "[a]\nx = %(nope)s\n", sec: "a", opt: "x", wantErr: `no option "nope"`},
		{name: "lone percent", text: "[a]\nx = 5%\n", sec: "a", opt: "x", wantErr: "must be followed"},
		{name: "self reference loops", text: "[a]\nx = %(x)s\n", sec: "a", opt: "x", wantErr: "deeper than 10"},
		{name: "option before section", text: "x = 1\n", wantErr: "before any [section]"},
		{name: "no separator", text: "[a]\njunk\n", wantErr: "want key = value"},
		{name: "duplicate section", text: "[a]\nx = 1\n[a]\ny = 2\n", wantErr: "appears twice"},
		{name: "duplicate option", text: "[a]\nx = 1\nX = 2\n", wantErr: "set twice"},
		{name: "default twice allowed", text: "[DEFAULT]\nx = 1\n[DEFAULT]\ny = 2\n[a]\n", sec: "a", opt: "y", want: "2"},
		{name: "empty key", text: "[a]\n= 2\n", wantErr: "option name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := parseINI("t.conf", tt.text)
			if err == nil {
				var got string
				var ok bool
				got, ok, err = doc.get(tt.sec, tt.opt)
				if err == nil && tt.wantErr == "" {
					if ok == tt.unset {
						t.Fatalf("get(%s, %s) set = %v, want %v", tt.sec, tt.opt, ok, !tt.unset)
					}
					if got != tt.want {
						t.Fatalf("get(%s, %s) = %q, want %q", tt.sec, tt.opt, got, tt.want)
					}
				}
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v, want none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestMergeKnown checks that merging files overrides option by option and
// keeps the overridden value for %(known/x)s.
func TestMergeKnown(t *testing.T) {
	conf, err := parseINI("jail.conf", "[DEFAULT]\nbantime = 10m\n[sshd]\nport = ssh\nlogpath = /a\n")
	if err != nil {
		t.Fatal(err)
	}
	local, err := parseINI("jail.local", "[DEFAULT]\nbantime = 1h\n[sshd]\nport = %(known/port)s,2222\n[new]\nx = 1\n")
	if err != nil {
		t.Fatal(err)
	}
	doc := newDocument()
	doc.merge(conf)
	doc.merge(local)
	for _, c := range []struct{ sec, opt, want string }{
		{"sshd", "port", "ssh,2222"},
		{"sshd", "logpath", "/a"},
		{"sshd", "bantime", "1h"},
		{"new", "x", "1"},
	} {
		got, _, err := doc.get(c.sec, c.opt)
		if err != nil || got != c.want {
			t.Errorf("get(%s, %s) = %q, %v; want %q", c.sec, c.opt, got, err, c.want)
		}
	}
	if got := strings.Join(doc.Sections(), ","); got != "sshd,new" {
		t.Errorf("section order %s, want sshd,new", got)
	}
	v, _ := doc.raw("sshd", "port")
	if v.file != "jail.local" || v.line != 4 {
		t.Errorf("port set at %s:%d, want jail.local:4", v.file, v.line)
	}
}

// FuzzParseINI checks that no input makes the reader panic or loop, and
// that every option of a parsed file can be asked for.
func FuzzParseINI(f *testing.F) {
	f.Add("[a]\nx = %(y)s\ny = 1\n")
	f.Add("[DEFAULT]\nf = %(__name__)s[mode=%(mode)s]\nmode = normal\n[sshd]\n")
	f.Add("[a]\nx = one\n\n  two ; c\n# c\n[b]\ny = %(a/x)s %(known/x)s %%\n")
	f.Fuzz(func(t *testing.T, text string) {
		doc, err := parseINI("f.conf", text)
		if err != nil {
			return
		}
		for _, name := range doc.Sections() {
			for _, k := range doc.Section(name).Keys() {
				_, _, _ = doc.get(name, k)
			}
			for _, k := range doc.Section(ini.Default).Keys() {
				_, _, _ = doc.get(name, k)
			}
		}
	})
}
