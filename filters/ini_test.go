package filters

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// loadFS reads name from fsys and builds it as Load would.
func loadFS(t testing.TB, fsys fstest.MapFS, name string, opts map[string]string) (*Filter, error) {
	t.Helper()
	doc := newIniDoc()
	if err := readIni(doc, fsys, name, 0); err != nil {
		return nil, err
	}
	return (&Loader{Location: time.UTC}).build("t", doc, opts)
}

func TestParseIni(t *testing.T) {
	text := "# comment\n" +
		"[DEFAULT]\n" +
		"d = from default\n" +
		"[Definition]\n" +
		"a = one\n" +
		"b: two ; inline comment\n" +
		"list = first\n" +
		"       second\n" +
		"\n" +
		"   # comment inside\n" +
		"       third\n" +
		"c=%(a)s and %(d)s 100%%\n" +
		"semi = a;b\n"
	doc := newIniDoc()
	if err := parseIni(doc, "x.conf", text); err != nil {
		t.Fatal(err)
	}
	v := vars{doc: doc, sec: "Definition"}
	cases := []struct{ key, want string }{
		{"a", "one"},
		{"b", "two"},
		{"list", "first\nsecond\n\nthird"},
		{"c", "one and from default 100%"},
		{"d", "from default"},
		{"semi", "a;b"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			got, ok, err := v.get(c.key)
			if err != nil || !ok || got != c.want {
				t.Errorf("get(%q) = %q, %v, %v; want %q", c.key, got, ok, err, c.want)
			}
		})
	}
	list, _ := doc.value("Definition", "list")
	items, lines := splitList(list.val, list.lines)
	if strings.Join(items, ",") != "first,second,third" || lines[0] != 7 || lines[1] != 8 {
		t.Errorf("splitList = %q at %v, want first,second,third at 7,8,…", items, lines)
	}
}

func TestParseIniErrors(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"option before section", "a = b\n", "x.conf:1"},
		{"bad header", "[Definition\n", "x.conf:1"},
		{"no separator", "[D]\njunk line\n", "x.conf:2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := parseIni(newIniDoc(), "x.conf", c.text)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("parseIni(%q) = %v, want an error naming %s", c.text, err, c.want)
			}
		})
	}
}

func TestIncludesLocalInterpolation(t *testing.T) {
	fsys := fstest.MapFS{
		"f/common.conf": {Data: []byte("[DEFAULT]\n_daemon = \\S+\n__prefix = ^%(_daemon)s:\\s\n")},
		"f/after.conf":  {Data: []byte("[Definition]\nextra = after\n")},
		"f/x.conf": {Data: []byte("[INCLUDES]\nbefore = common.conf\nafter = after.conf\n" +
			"[Init]\nmode = normal\n" +
			"[Definition]\n_daemon = food\nword = conf\n" +
			"failregex = %(__prefix)s<word> <mode> <extra> <HOST>$\n")},
		"f/x.local": {Data: []byte("[Definition]\nword = local-%(known/word)s\n")},
	}
	cases := []struct {
		name string
		opts map[string]string
		line string
	}{
		{"defaults", nil, "food: local-conf normal after 192.0.2.1"},
		{"option overrides init", map[string]string{"mode": "aggressive"}, "food: local-conf aggressive after 192.0.2.1"},
		{"option overrides definition", map[string]string{"word": "opt"}, "food: opt normal after 192.0.2.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := loadFS(t, fsys, "f/x.conf", c.opts)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := f.Match(c.line, time.Unix(0, 0))
			if !ok || m.Addr.String() != "192.0.2.1" {
				t.Errorf("Match(%q) = %v, %v; want 192.0.2.1 (regex %q)", c.line, m, ok, f.fail[0].src)
			}
		})
	}
}

func TestIniIncludeErrors(t *testing.T) {
	cases := []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"unreadable include", fstest.MapFS{"a.conf": {Data: []byte("[INCLUDES]\nbefore = d\n[Definition]\nfailregex = x <HOST>\n")}, "d/x": {}}, "include d from a.conf"},
		// fail2ban skips an include already on the include path (a.conf
		// naming a.conf reads it twice), but not one written differently.
		{"include cycle", fstest.MapFS{"a.conf": {Data: []byte("[INCLUDES]\nbefore = ./a.conf\n")}}, "nested deeper"},
		{"missing interpolation", fstest.MapFS{"a.conf": {Data: []byte("[Definition]\nfailregex = %(nope)s <HOST>\n")}}, "a.conf:2"},
		{"no failregex", fstest.MapFS{"a.conf": {Data: []byte("[Definition]\nfailregex =\n")}}, "no failregex"},
		{"no failure-id group", fstest.MapFS{"a.conf": {Data: []byte("[Definition]\nfailregex = ok <HOST>\n            no host here\n")}}, "a.conf:3: failregex \"no host here\": no failure-id group"},
		{"prefregex without content", fstest.MapFS{"a.conf": {Data: []byte("[Definition]\nprefregex = ^x\nfailregex = ok <HOST>\n")}}, "no <F-CONTENT>"},
		{"bad regex", fstest.MapFS{"a.conf": {Data: []byte("[Definition]\nfailregex = ok <HOST>\n            bad( <HOST>\n")}}, "a.conf:3: failregex"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadFS(t, c.fsys, "a.conf", nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("load = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestMissingIncludeSkipped(t *testing.T) {
	fsys := fstest.MapFS{"a.conf": {Data: []byte("[INCLUDES]\nafter = a-extra.local\n[Definition]\nfailregex = x <HOST>\n")}}
	if _, err := loadFS(t, fsys, "a.conf", nil); err != nil {
		t.Errorf("a missing include is skipped by fail2ban; got %v", err)
	}
}

func TestParseSpec(t *testing.T) {
	cases := []struct {
		spec, name string
		opts       map[string]string
		err        bool
	}{
		{"sshd", "sshd", nil, false},
		{"sshd[mode=aggressive]", "sshd", map[string]string{"mode": "aggressive"}, false},
		{`x[a=1, b="p, q", c='r']`, "x", map[string]string{"a": "1", "b": "p, q", "c": "r"}, false},
		{`x[a="unterminated]`, "", nil, true},
		{`x[novalue]`, "", nil, true},
		{"", "", nil, true},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			name, opts, err := parseSpec(c.spec)
			if (err != nil) != c.err {
				t.Fatalf("parseSpec(%q) error = %v, want error %v", c.spec, err, c.err)
			}
			if c.err {
				return
			}
			if name != c.name || len(opts) != len(c.opts) {
				t.Fatalf("parseSpec(%q) = %q, %v; want %q, %v", c.spec, name, opts, c.name, c.opts)
			}
			for k, v := range c.opts {
				if opts[k] != v {
					t.Errorf("parseSpec(%q)[%s] = %q, want %q", c.spec, k, opts[k], v)
				}
			}
		})
	}
}

func TestLoaderDirsAndPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("common.conf", "[DEFAULT]\np = ^mine\\s\n")
	write("mine.conf", "[INCLUDES]\nbefore = common.conf\n[Definition]\nfailregex = %(p)sbad <HOST>$\n")
	write("mine.local", "[Definition]\nfailregex = %(p)sworse <HOST>$\n")
	write("sshd.conf", "[Definition]\nfailregex = ^shadowed <HOST>$\n")
	l := &Loader{Dirs: []string{filepath.Join(dir, "missing"), dir}, Location: time.UTC}
	cases := []struct {
		name, spec, line string
		ok               bool
	}{
		{"local overrides conf", "mine", "mine worse 192.0.2.5", true},
		{"conf regex replaced", "mine", "mine bad 192.0.2.5", false},
		{"dirs before builtins", "sshd", "shadowed 192.0.2.6", true},
		{"path", filepath.Join(dir, "mine.conf"), "mine worse 192.0.2.5", true},
		{"builtin", "nginx-limit-req", `2026/11/26 21:20:00 [error] 1#1: *1 limiting requests, excess: 1.0 by zone "z", client: 192.0.2.7, server: x`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := l.Load(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.Match(c.line, time.Unix(0, 0)); ok != c.ok {
				t.Errorf("Load(%q).Match(%q) = %v, want %v", c.spec, c.line, ok, c.ok)
			}
		})
	}
	_, err := l.Load("nosuch")
	if !errors.Is(err, ErrNoFilter) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load(nosuch) = %v, want ErrNoFilter naming %s", err, dir)
	}
	if _, err := l.Load(filepath.Join(dir, "nosuch.conf")); err == nil || errors.Is(err, ErrNoFilter) {
		t.Errorf("Load(missing path) = %v, want a read error", err)
	}
}

func TestBuiltins(t *testing.T) {
	got := strings.Join(Builtins(), ",")
	if got != "moat-proxy,nginx-botsearch,nginx-http-auth,nginx-limit-req,sshd" {
		t.Errorf("Builtins() = %s", got)
	}
	l := &Loader{}
	for _, name := range Builtins() {
		f, err := l.Load(name)
		if err != nil {
			t.Fatalf("Load(%s): %v", name, err)
		}
		if f.Name() != name {
			t.Errorf("Load(%s).Name() = %q", name, f.Name())
		}
	}
}

func TestInline(t *testing.T) {
	l := &Loader{Location: time.UTC}
	f, err := l.Inline("web", []string{`^login failed for <F-USER>\S+</F-USER> from <SUBNET>$`, `^probe <F-ID>\d+</F-ID> <HOST>$`},
		[]string{`from 198\.51\.100\.`})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, line, addr, user, id, prefix string
		ok                                 bool
	}{
		{"user", "login failed for bob from 192.0.2.1", "192.0.2.1", "bob", "", "invalid Prefix", true},
		{"subnet", "login failed for bob from 2001:db8::1/64", "2001:db8::1", "bob", "", "2001:db8::/64", true},
		{"ignored", "login failed for bob from 198.51.100.1", "", "", "", "", false},
		{"id", "probe 42 192.0.2.2", "192.0.2.2", "", "42", "invalid Prefix", true},
		{"dns never resolved", "probe 42 host.example.com", "", "", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := f.Match(c.line, time.Unix(0, 0))
			if ok != c.ok {
				t.Fatalf("Match(%q) = %v, want %v", c.line, ok, c.ok)
			}
			if !ok {
				return
			}
			if m.Addr.String() != c.addr || m.User != c.user || m.ID != c.id || m.Prefix.String() != c.prefix {
				t.Errorf("Match(%q) = %+v, want addr %s user %q id %q prefix %s", c.line, m, c.addr, c.user, c.id, c.prefix)
			}
		})
	}
	if _, err := l.Inline("bad", []string{"ok <HOST>", "(bad"}, nil); err == nil || !strings.Contains(err.Error(), "#2") || !strings.Contains(err.Error(), "(bad") {
		t.Errorf("Inline with a bad regex = %v, want an error naming #2 and the regex", err)
	}
}

func TestNoFailAndPrefregex(t *testing.T) {
	fsys := fstest.MapFS{"p.conf": {Data: []byte("[Definition]\n" +
		"prefregex = ^\\s*svc\\[<F-ID>\\d+</F-ID>\\]: <F-CONTENT>.+</F-CONTENT>$\n" +
		"failregex = ^bad login from <HOST>$\n" +
		"            ^<F-NOFAIL>hello</F-NOFAIL> from <HOST>$\n" +
		"ignoreregex = ^bad login from 192\\.0\\.2\\.99$\n" +
		"              ^\\s*svc\\[13\\]\n")}}
	f, err := loadFS(t, fsys, "p.conf", nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, line, id string
		ok             bool
	}{
		{"content matched", "Nov 26 21:19:40 svc[12]: bad login from 192.0.2.3", "12", true},
		{"nofail", "Nov 26 21:19:40 svc[12]: hello from 192.0.2.3", "", false},
		{"prefix missing", "Nov 26 21:19:40 other[12]: bad login from 192.0.2.3", "", false},
		{"caret is start of content", "Nov 26 21:19:40 svc[12]: x bad login from 192.0.2.3", "", false},
		{"ignoreregex sees the content", "Nov 26 21:19:40 svc[12]: bad login from 192.0.2.99", "", false},
		{"ignoreregex anchored at content", "Nov 26 21:19:40 svc[13]: bad login from 192.0.2.98", "13", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := f.Match(c.line, time.Unix(0, 0))
			if ok != c.ok || m.ID != c.id {
				t.Errorf("Match(%q) = %+v, %v; want ok %v id %q", c.line, m, ok, c.ok, c.id)
			}
		})
	}
}

func TestKnownAndSectionReferences(t *testing.T) {
	fsys := fstest.MapFS{
		"base.conf": {Data: []byte("[lt_file]\npre = ^file:\n[lt_journal]\npre = ^journal:\n" +
			"[Definition]\nlogtype = file\nfailregex = <lt_<logtype>/pre> one <HOST>$\n")},
		"x.conf": {Data: []byte("[INCLUDES]\nbefore = base.conf\n[Definition]\n" +
			"failregex = %(known/failregex)s\n            <lt_<logtype>/pre> two <HOST>$\n")},
		"x.local": {Data: []byte("[Definition]\nfailregex = %(known/failregex)s\n            %(lt_journal/pre)s three <HOST>$\n")},
	}
	f, err := loadFS(t, fsys, "x.conf", nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		line string
		ok   bool
	}{
		{"file: one 192.0.2.1", true},
		{"file: two 192.0.2.1", true},
		{"journal: three 192.0.2.1", true},
		{"journal: one 192.0.2.1", false},
	}
	for _, c := range cases {
		t.Run(c.line, func(t *testing.T) {
			if _, ok := f.Match(c.line, time.Unix(0, 0)); ok != c.ok {
				t.Errorf("Match(%q) = %v, want %v (%d regexes)", c.line, ok, c.ok, len(f.fail))
			}
		})
	}
	if len(f.fail) != 3 {
		t.Errorf("%d failregexes, want 3 (known/ chain)", len(f.fail))
	}
}

func TestExamine(t *testing.T) {
	f, err := (&Loader{Location: time.UTC}).Inline("x", []string{`^bad <HOST>$`, `^\s*worse <HOST>$`}, []string{`worse 192\.0\.2\.9$`})
	if err != nil {
		t.Fatal(err)
	}
	ref := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, line     string
		failure        bool
		regex          int
		ignored, dated bool
		host           string
	}{
		{"failure", "Nov 26 10:00:00 worse 192.0.2.1", true, 1, false, true, "192.0.2.1"},
		{"ignored", "worse 192.0.2.9", false, 1, true, false, "192.0.2.9"},
		{"host name", "bad example.com", false, 0, false, false, "example.com"},
		{"missed", "good 192.0.2.1", false, -1, false, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.Examine(c.line, ref)
			if r.Failure != c.failure || r.Failregex != c.regex || r.Ignored != c.ignored || r.HasDate != c.dated || r.Host != c.host {
				t.Errorf("Examine(%q) = %+v, want failure %v regex %d ignored %v dated %v host %q", c.line, r, c.failure, c.regex, c.ignored, c.dated, c.host)
			}
		})
	}
	if got := f.Failregexes(); len(got) != 2 || got[1] != `^\s*worse <HOST>$` {
		t.Errorf("Failregexes() = %q", got)
	}
}

func TestErrorsNameAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(path, []byte("[Definition]\nfailregex = ok <HOST>\n            bad( <HOST>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&Loader{}).Load(path)
	if err == nil || !strings.Contains(err.Error(), path+":3: failregex") || !strings.Contains(err.Error(), "bad( <HOST>") {
		t.Errorf("Load(%s) = %v, want an error naming %s:3 and the regex", path, err, path)
	}
}
