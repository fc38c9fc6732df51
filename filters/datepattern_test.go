package filters

import (
	"testing"
	"time"
)

func TestDatePattern(t *testing.T) {
	ref := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, pattern, line string
		ok                  bool
		start, end          int
		want                time.Time
	}{
		{"strptime", `%Y/%m/%d %H:%M:%S`, "x 2026/11/26 21:19:40 y", true, 2, 21, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"month name no year", `%b %d %H:%M:%S`, "Nov 26 21:19:40 y", true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"zone and fraction", `%Y-%m-%dT%H:%M:%S\.%f%z`, "2026-11-26T21:19:40.5+01:00", true, 0, 27, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"fraction of seven digits is given up", `%Y-%m-%dT%H:%M:%S(?:\.%f)?`, "2026-11-26T21:19:40.1234567 x", true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"fraction and zone", `^%Y-%m-%d %H:%M:%S(?:[.,]%f)?(?:\s*%z)?`, "2026-11-26 21:19:40.123456 +0100 x", true, 0, 32, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"fraction glued to a word is given up", `^%Y-%m-%d %H:%M:%S(?:[.,]%f)?`, "2026-11-26 21:19:40,123abc x", true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults read a zone after any space", `^{DATE}`, "2026/11/26 21:19:40 +0100 x", true, 0, 25, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"defaults read a zone word", `^\[({DATE})\]`, "[26-Nov-2026 21:19:40 UTC] x", true, 1, 25, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults leave a word starting with Z", `^{DATE}`, "2026-11-26 21:19:40 Zebra", true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults compact iso", `^<W>{DATE}`, "<W>20261126T211940 x", true, 0, 18, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults tomcat", `^{DATE}`, "Nov 26, 2026 9:19:40 PM x", true, 0, 23, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"12-hour clock", `%d/%m/%Y %I:%M %p`, "26/11/2026 09:19 PM x", true, 0, 19, time.Date(2026, 11, 26, 21, 19, 0, 0, time.UTC)},
		{"line start only", `{^LN-BEG}%Y-%m-%d %H:%M:%S`, "x 2026-11-26 21:19:40", false, 0, 0, time.Time{}},
		{"line start not after an underscore", `{^LN-BEG}%Y-%m-%d %H:%M:%S`, "_2026-11-26 21:19:40 x", false, 0, 0, time.Time{}},
		{"line start after bracket", `{^LN-BEG}%Y-%m-%d %H:%M:%S`, "[2026-11-26 21:19:40] x", true, 1, 20, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"default formats at line start", `{^LN-BEG}`, "Nov 26 21:19:40 x", true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"default formats not mid-line", `{^LN-BEG}`, "host Nov 26 21:19:40 x", false, 0, 0, time.Time{}},
		{"epoch", `{EPOCH}`, "1764192000.250 x", true, 0, 14, time.Unix(1764192000, 25e7)},
		// fail2ban's fraction has 3 to 6 digits: a shorter or longer one stays in the line.
		{"epoch short fraction stays", `{EPOCH}`, "1764192000.25 x", true, 0, 10, time.Unix(1764192000, 0)},
		{"epoch long fraction stays", `{EPOCH}`, "1764192000.1234567 x", true, 0, 10, time.Unix(1764192000, 0)},
		{"epoch where a word begins", `{EPOCH}`, "t=1764192000.5 x", true, 2, 12, time.Unix(1764192000, 0)},
		{"epoch glued to a word", `{EPOCH}`, "x1764192000 y", false, 0, 0, time.Time{}},
		{"line-begin Epoch any case", `{^LN-BEG}Epoch`, " 1764192000.118      0 x", true, 1, 15, time.Unix(1764192000, 118e6)},
		{"line-begin epoch in brackets", `{^LN-BEG}EPOCH`, "[1764192000.118] x", true, 1, 15, time.Unix(1764192000, 118e6)},
		{"line-begin epoch bracket unclosed", `{^LN-BEG}EPOCH`, "[1764192000.118 x", false, 0, 0, time.Time{}},
		{"line-begin epoch after three", `{^LN-BEG}EPOCH`, "   1764192000 x", false, 0, 0, time.Time{}},
		{"bare EPOCH not mid-line", `EPOCH`, "id 1764192000 x", false, 0, 0, time.Time{}},
		// fail2ban's EPOCH means to want ":N)" after audit( and ']' after '[',
		// but its regex requires neither.
		{"bare EPOCH audit without :N)", `EPOCH`, "audit(1764192000.415) x", true, 6, 20, time.Unix(1764192000, 415e6)},
		{"bare EPOCH audit short fraction", `EPOCH`, "audit(1764192000.5:7) x", true, 6, 16, time.Unix(1764192000, 0)},
		{"bare EPOCH bracket unclosed", `EPOCH`, "[1764192000.415 x", true, 1, 15, time.Unix(1764192000, 415e6)},
		{"bare EPOCH after a word audit only", `EPOCH`, "xaudit(1764192000.415:1) x", false, 0, 0, time.Time{}},
		{"microseconds epoch", `{LEPOCH}`, "1764192000250000 x", true, 0, 16, time.Unix(1764192000, 25e7)},
		{"milliseconds epoch with fraction", `{LEPOCH}`, "1764192000250.5 x", true, 0, 15, time.Unix(1764192000, 250499964)}, // float(v)/1000, as fail2ban,
		{"milliseconds epoch", `{LEPOCH}`, "1764192000250 x", true, 0, 13, time.Unix(1764192000, 25e7)},
		{"none", `{NONE}`, "Nov 26 21:19:40 x", false, 0, 0, time.Time{}},
		{"backreference", `%Y(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S`, "at 2026.11.26 21:19:40 x", true, 3, 22, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"unnamed group with a backreference", `^(?:=[^=]+={3,} )?(%Y(?P<_sep>[-/.])%m(?P=_sep)%d %H:%M:%S)`, "=INFO REPORT==== 2026-11-26 21:19:40 ===", true, 17, 36, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"backreference mismatch", `%Y(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S`, "at 2026.11-26 21:19:40 x", false, 0, 0, time.Time{}},
		{"defaults after a prefix", `^[^\[]*\[({DATE})`, `192.0.2.1 - - [26/Nov/2026:21:19:40 +0000] "GET /"`, true, 15, 41, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults with suffix", `^\[({DATE})\]`, `[Nov 26 21:19:40] x`, true, 1, 16, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults suffix missing", `^\[({DATE})\]`, `[Nov 26 21:19:40 x`, false, 0, 0, time.Time{}},
		{"unnamed group is the date", `at (%Y-%m-%d) now`, `at 2026-11-26 now x`, true, 3, 13, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)},
		{"defaults inside a group", `^[^\[]*(\[{DATE}\s*\])`, `192.0.2.1 - - [26/Nov/2026:21:19:40 +0000] "GET /"`, true, 14, 42, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"defaults after a backreference", `^(?P<q>")?{DATE}(?(q)")`, `"2026-11-26 21:19:40" x`, true, 0, 21, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"stars dropped", `^WARNING:()**`, `WARNING: x`, true, 8, 8, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"bare EPOCH", `EPOCH`, `audit(1764192000.415:4063): x`, true, 6, 20, time.Unix(1764192000, 415e6)},
		{"exact two-digit year", `%b-%d-%Exy %H:%M:%S`, `Nov-26-26 21:19:40 x`, true, 0, 18, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"second template", "%Y.%m.%d\n%b %d %H:%M:%S", "Nov 26 21:19:40", true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fn, err := compileDatePattern(c.pattern)
			if err != nil {
				t.Fatal(err)
			}
			s, e, got, ok := fn(c.line, ref, time.UTC)
			if ok != c.ok {
				t.Fatalf("datepattern %q on %q: ok = %v, want %v", c.pattern, c.line, ok, c.ok)
			}
			if ok && (s != c.start || e != c.end || !got.Equal(c.want)) {
				t.Errorf("datepattern %q on %q = [%d,%d) %v, want [%d,%d) %v", c.pattern, c.line, s, e, got, c.start, c.end, c.want)
			}
		})
	}
	for _, bad := range []string{`%Q`, `%`, `(?<=x%Y`} {
		if _, err := compileDatePattern(bad); err == nil {
			t.Errorf("compileDatePattern(%q) accepted it", bad)
		}
	}
}

func TestDatePatternInFilter(t *testing.T) {
	fsys := map[string]string{"a.conf": "[Definition]\ndatepattern = ^%%Y-%%m-%%d %%H:%%M:%%S\nfailregex = ^ bad <HOST>$\n"}
	doc := newIniDoc()
	if err := parseIni(doc, "a.conf", fsys["a.conf"]); err != nil {
		t.Fatal(err)
	}
	f, err := (&Loader{Location: time.UTC}).build("a", doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := f.Match("2026-11-26 21:19:40 bad 192.0.2.1", time.Unix(0, 0))
	if !ok || !m.Time.Equal(time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)) {
		t.Errorf("Match = %+v, %v; want the pattern's date", m, ok)
	}
}
