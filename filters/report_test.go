package filters

import (
	"strings"
	"testing"
	"time"
)

var optionTagCases = []struct {
	name, in, want string
}{
	{"known tag", "^<pre>x$", "^PRE:x$"},
	{"unknown tags stay", "<HOST> <F-USER>u</F-USER>", "<HOST> <F-USER>u</F-USER>"},
	{"nested tag", "<mdre-<mode>>", "normal-re"},
	{"tag around a tag", "<lt_<logtype>/datepattern>", "{^LN-BEG}"},
	{"value with a tag", "<outer>", "[PRE:]"},
	{"every occurrence", "<pre><pre>", "PRE:PRE:"},
	{"group syntax is no option", "(?P<cond>a)(?(cond)b)", "(?P<cond>a)(?(cond)b)"},
	// fail2ban gives up on a tag that refers to itself; moat stops
	// replacing it after a bound.
	{"self reference stops", "<loop>", "<loop>"},
}

func optionLookup(k string) (string, bool) {
	v, ok := map[string]string{
		"pre": "PRE:", "mode": "normal", "mdre-normal": "normal-re", "logtype": "file",
		"lt_file/datepattern": "{^LN-BEG}", "outer": "[<pre>]", "loop": "<loop>",
	}[k]
	return v, ok
}

func TestOptionTags(t *testing.T) {
	for _, c := range optionTagCases {
		t.Run(c.name, func(t *testing.T) {
			if got := optionTags(c.in, optionLookup); got != c.want {
				t.Errorf("optionTags(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func FuzzOptionTags(f *testing.F) {
	for _, c := range optionTagCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := optionTags(s, optionLookup)
		if !strings.Contains(s, "<") && out != s {
			t.Errorf("optionTags(%q) = %q: changed a text without tags", s, out)
		}
		_ = pythonHostTags(out)
		_ = localFlags(out)
	})
}

func TestPythonHostTags(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"host", "from <HOST>$", "from " + pyHost + "$"},
		{"field", "<F-USER>.+</F-USER>", "(?P<user>.+)"},
		{"id field", "<F-ID>x</F-ID>", "(?P<fid>x)"},
		{"unopened close stays", "a</F-USER>", "a</F-USER>"},
		{"other tags stay", "<W> <lt_file/x>", "<W> <lt_file/x>"},
		{"skiplines numbered", "a<SKIPLINES>b<SKIPLINES>", `a\n(?P<skiplines0>(?:(?:.*\n)*?))b\n(?P<skiplines1>(?:(?:.*\n)*?))`},
		{"self-closed id", "<F-ID/>", `(?P<fid>\S+)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pythonHostTags(c.in); got != c.want {
				t.Errorf("pythonHostTags(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestLocalFlags(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"group with global flag", "a((?i)b)", "a(?i:b)"},
		{"non-capturing group", "(?:(?is)b)", "(?is:b)"},
		{"escaped paren", `\((?i)b)`, `\((?i)b)`},
		{"plain", "(a)(?:b)", "(a)(?:b)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := localFlags(c.in); got != c.want {
				t.Errorf("localFlags(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestTemplateName(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"syslog", `(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`, `(?:DAY )?MON Day %k:Minute:Second(?:\.Microseconds)?(?: ExYear)?`},
		{"iso", `%ExY(?P<_sep>[-/.])%m(?P=_sep)%d`, `ExYear(?P<_sep>[-/.])Month(?P=_sep)Day`},
		{"two-digit year", `%Exy%Exm%Exd`, `ExYear2ExMonthExDay`},
		{"zone", `%H:%M:%S %z %Z`, `24hour:Minute:Second Zone offset Zone name`},
		{"percent", `%%d`, `%d`},
		{"unknown directive", `%q`, `%q`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := templateName(c.in); got != c.want {
				t.Errorf("templateName(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestLeadingRunes(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"ascii", "[x", "[x"},
		{"byte order mark", "\ufeff2026", "\x012026"},
		{"letter stays", "é1", "é1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := leadingRunes(c.in); got != c.want {
				t.Errorf("leadingRunes(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// loadInline builds a filter from a [Definition] text.
func loadInline(t *testing.T, def string) *Filter {
	t.Helper()
	doc := newIniDoc()
	if err := parseIni(doc, "test.conf", "[Definition]\n"+def); err != nil {
		t.Fatal(err)
	}
	f, err := (&Loader{}).build("test", doc, map[string]string{"mode": "b"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestShownRegexes(t *testing.T) {
	f := loadInline(t, `_pre = ^\s*<_d>:
_d = daemon
re-a = a from <HOST>
re-b = b from <HOST>
   c from <HOST>
prefregex = <_pre> <F-CONTENT>.+</F-CONTENT>$
failregex = <re-<mode>>
            ^%(_d)s <F-USER>\S+</F-USER> <HOST>
datepattern = {^LN-BEG}
`)
	want := []string{"b from <HOST>", "c from <HOST>", `^daemon <F-USER>\S+</F-USER> <HOST>`}
	if got := f.ShownFailregexes(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ShownFailregexes() = %q, want %q", got, want)
	}
	if got, want := f.ShownPrefregex(), `^\s*daemon: (?P<content>.+)$`; got != want {
		t.Errorf("ShownPrefregex() = %q, want %q", got, want)
	}
	if dp, ok := f.DatePatternOption(); !ok || dp != "{^LN-BEG}" {
		t.Errorf("DatePatternOption() = %q, %v, want {^LN-BEG}, true", dp, ok)
	}
	if f.MaxLinesSet() {
		t.Errorf("MaxLinesSet() = true for a filter without maxlines")
	}
	ok, groups := f.PrefregexMatch("Nov 26 21:19:40 daemon: hello", time.Now(), true)
	if !ok || len(groups) != 1 || groups[0] != (Group{"content", "hello", true}) {
		t.Errorf("PrefregexMatch = %v, %v, want the content group 'hello'", ok, groups)
	}
	if ok, _ := f.PrefregexMatch("Nov 26 21:19:40 other: hello", time.Now(), false); ok {
		t.Errorf("PrefregexMatch matched a line of another daemon")
	}
}

func TestDateTemplatesReplay(t *testing.T) {
	ref := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	cases := []struct {
		name, datepattern string
		lines             []string
		desc              string
		// want is the head of the list after the lines, name=hits.
		want []string
	}{
		{
			name: "line start defaults", datepattern: "{^LN-BEG}",
			lines: []string{"Nov 26 21:19:40 host a", "Nov 26 21:19:41 host b", "2026-11-26 21:19:42 c"},
			desc:  "Default Detectors",
			want: []string{
				`{^LN-BEG}(?:DAY )?MON Day %k:Minute:Second(?:\.Microseconds)?(?: ExYear)?=2`,
				`{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\s*Zone offset)?=1`,
				`{^LN-BEG}(?:DAY )?MON Day ExYear %k:Minute:Second(?:\.Microseconds)?=0`,
			},
		},
		{
			name: "one pattern", datepattern: `^%%Y-%%m-%%d %%H:%%M:%%S`,
			lines: []string{"2026-11-26 21:19:40 a", "no date"},
			desc:  "^Year-Month-Day 24hour:Minute:Second",
			want:  []string{"^Year-Month-Day 24hour:Minute:Second=1"},
		},
		{
			name: "date in brackets", datepattern: `^[^\[]*\[({DATE})`,
			lines: []string{"host [26/Nov/2026:21:19:40 +0000] x"},
			desc:  "Default Detectors",
			// The template that found the date moves to the front.
			want: []string{
				`^[^\[]*\[(Day(?P<_sep>[-/])MON(?P=_sep)ExYear[ :]?24hour:Minute:Second(?:\.Microseconds)?(?: Zone offset)?)=1`,
				`^[^\[]*\[(ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\s*Zone offset)?)=0`,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := loadInline(t, "failregex = <HOST>\ndatepattern = "+c.datepattern+"\n")
			d := f.DateTemplates()
			if d.Description() != c.desc {
				t.Errorf("Description() = %q, want %q", d.Description(), c.desc)
			}
			for _, l := range c.lines {
				d.Observe(l, ref)
			}
			hits := d.Hits()
			for i, w := range c.want {
				if i >= len(hits) {
					t.Fatalf("only %d templates, want %s at %d", len(hits), w, i)
				}
				if got := hits[i].Name + "=" + itoa(hits[i].Hits); got != w {
					t.Errorf("template %d = %s, want %s", i, got, w)
				}
			}
		})
	}
}

func FuzzDateTemplates(f *testing.F) {
	for _, s := range []string{"{^LN-BEG}", `^%Y-%m-%d %H:%M:%S`, `^[^\[]*\[({DATE})`, "EPOCH", "{NONE}", "^TAI64N", "%d/%b/%Y:%H:%M:%S %z\n{^LN-BEG}"} {
		f.Add(s, "Nov 26 21:19:40 host a 2026-11-26 21:19:42")
	}
	ref := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, datepattern, line string) {
		doc := newIniDoc()
		sec := doc.section("Definition")
		sec.set("failregex", &iniValue{val: "<HOST>"})
		sec.set("datepattern", &iniValue{val: datepattern})
		fl, err := (&Loader{}).build("fuzz", doc, nil)
		if err != nil {
			return
		}
		d := fl.DateTemplates()
		d.Observe(line, ref)
		d.Observe(line, ref)
		total := 0
		for _, h := range d.Hits() {
			total += h.Hits
		}
		if total > 2 {
			t.Errorf("two lines gave %d template hits", total)
		}
	})
}
