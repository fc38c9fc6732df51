package filters

import (
	"testing"
	"time"
)

func TestFindDate(t *testing.T) {
	ref := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	plus2 := time.FixedZone("", 2*3600)
	cases := []struct {
		name       string
		line       string
		loc        *time.Location
		ok         bool
		start, end int
		want       time.Time
	}{
		{"syslog", "Nov 26 21:19:40 host sshd[1]: x", time.UTC, true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"syslog space-padded day", "Nov  6 01:02:03 host x", time.UTC, true, 0, 15, time.Date(2026, 11, 6, 1, 2, 3, 0, time.UTC)},
		{"syslog in location", "Nov 26 21:19:40 host", plus2, true, 0, 15, time.Date(2026, 11, 26, 19, 19, 40, 0, time.UTC)},
		{"syslog within a day ahead keeps year", "Nov 27 23:00:00 host", time.UTC, true, 0, 15, time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC)},
		{"syslog over a day ahead is last year", "Nov 28 00:00:01 host", time.UTC, true, 0, 15, time.Date(2025, 11, 28, 0, 0, 1, 0, time.UTC)},
		{"syslog december at new year", "Dec 31 23:59:59 host", time.UTC, true, 0, 15, time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"syslog with year", "Nov 26 21:19:40 2024 host", time.UTC, true, 0, 20, time.Date(2024, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"ctime", "Thu Nov 26 21:19:40 2026 msg", time.UTC, true, 0, 24, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"rfc3339 offset", "2026-11-26T21:19:40.123+01:00 host x", time.UTC, true, 0, 29, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)}, // fail2ban keeps whole seconds
		{"rfc3339 Z", "2026-11-26T21:19:40Z host", plus2, true, 0, 20, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"iso comma fraction no zone", "2026-11-26 21:19:40,123 INFO x", plus2, true, 0, 23, time.Date(2026, 11, 26, 19, 19, 40, 0, time.UTC)},
		{"iso compact offset", "2026-11-26T21:19:40+0100 x", time.UTC, true, 0, 24, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"nginx error log", "2026/11/26 21:19:40 [error] 1#1: x", time.UTC, true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"clf in brackets", `192.0.2.1 - - [26/Nov/2026:21:19:40 +0000] "GET / HTTP/1.1"`, plus2, true, 15, 41, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"clf negative offset", `[26/Nov/2026:21:19:40 -0500]`, time.UTC, true, 1, 27, time.Date(2026, 11, 27, 2, 19, 40, 0, time.UTC)},
		{"epoch", "1764192000.123 host x", time.UTC, true, 0, 14, time.Unix(1764192000, 123e6)},
		{"epoch in brackets", "[1764192000] x", time.UTC, true, 1, 11, time.Unix(1764192000, 0)},
		{"epoch after a space", " 1764192000.123 x", time.UTC, true, 1, 15, time.Unix(1764192000, 123e6)},
		{"epoch after two non-word characters", "<[1764192000] x", time.UTC, true, 2, 12, time.Unix(1764192000, 0)},
		{"epoch bracket unclosed", "[1764192000 x", time.UTC, true, 1, 11, time.Unix(1764192000, 0)},
		{"tai64n mid-line", "x @400000004c91b044077a9e94 y", time.UTC, true, 2, 27, time.Unix(0x4c91b044, 0)},
		{"syslog before tai64n", "x @400000004c91b044077a9e94 Nov 26 21:19:40 y", time.UTC, true, 28, 43, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"epoch short fraction stays", "1764192000.5 x", time.UTC, true, 0, 10, time.Unix(1764192000, 0)},
		{"epoch nine-digit fraction stays", "1764192000.123456789 x", time.UTC, true, 0, 10, time.Unix(1764192000, 0)},
		{"epoch in selinux audit", "type=USER_AUTH msg=audit(1764192000.415:4063): pid=1", time.UTC, true, 25, 39, time.Unix(1764192000, 415e6)},
		{"date mid-line", "host: 2026-11-26T21:19:40Z x", time.UTC, true, 6, 26, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"syslog year before time", "Oct 27 2015 09:24:46 host x", time.UTC, true, 0, 20, time.Date(2015, 10, 27, 9, 24, 46, 0, time.UTC)},
		// fail2ban's day-first template leaves a zone in the line (3proxy matches it).
		{"day first zone not read", "11-06-2013 02:09:40 +0300 PROXY", time.UTC, true, 0, 19, time.Date(2013, 6, 11, 2, 9, 40, 0, time.UTC)},
		{"bind day-month-year", "11-Aug-2013 03:36:11.372 error: client", time.UTC, true, 0, 24, time.Date(2013, 8, 11, 3, 36, 11, 0, time.UTC)},
		// fail2ban's %f has at most 6 digits: with more, the date ends at the
		// seconds (and a zone after the fraction is not read).
		{"iso nine-digit fraction", "2026-11-26T21:19:40.123456789Z x", plus2, true, 0, 19, time.Date(2026, 11, 26, 19, 19, 40, 0, time.UTC)},
		{"iso six-digit fraction and zone", "2026-11-26T21:19:40.123456Z x", plus2, true, 0, 27, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"iso fraction glued to a word", "2026-11-26T21:19:40.123abc x", time.UTC, true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"bind nine-digit fraction", "26-Nov-2026 21:19:40.123456789 x", time.UTC, true, 0, 20, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"syslog nine-digit fraction", "Nov 26 21:19:40.123456789 host x", time.UTC, true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"mixed separators are no date", "11-Aug/2013 03:36:11 x", time.UTC, false, 0, 0, time.Time{}},
		{"zone abbreviation first", "[PDT Apr 16 21:05:29] error", time.UTC, true, 1, 20, time.Date(2026, 4, 17, 4, 5, 29, 0, time.UTC)},
		{"unknown abbreviation skipped", "[XYZ Apr 16 21:05:29] error", time.UTC, true, 5, 20, time.Date(2026, 4, 16, 21, 5, 29, 0, time.UTC)},
		{"mysql", "130324 19:01:39 [Warning] x", time.UTC, true, 0, 15, time.Date(2013, 3, 24, 19, 1, 39, 0, time.UTC)},
		{"mysql one-digit hour", "130324  9:01:39 [Warning] x", time.UTC, true, 0, 15, time.Date(2013, 3, 24, 9, 1, 39, 0, time.UTC)},
		{"tai64n", "@400000004c91b044077a9e94 dovecot-auth: x", time.UTC, true, 0, 25, time.Unix(0x4c91b044, 0)},
		{"iso one-digit hour after two spaces", "2015-10-07  8:25:38 1398 [Warning] x", time.UTC, true, 0, 19, time.Date(2015, 10, 7, 8, 25, 38, 0, time.UTC)},
		{"no date", "hello world 12:00", time.UTC, false, 0, 0, time.Time{}},
		{"empty", "", time.UTC, false, 0, 0, time.Time{}},
		{"invalid day", "Nov 31 10:00:00 host", time.UTC, false, 0, 0, time.Time{}},
		{"invalid month", "2026-13-01T10:00:00Z", time.UTC, false, 0, 0, time.Time{}},
		{"invalid hour", "2026-11-01T24:00:00Z", time.UTC, false, 0, 0, time.Time{}},
		{"glued to a word", "x2026-11-26T21:19:40Z", time.UTC, false, 0, 0, time.Time{}},
		// fail2ban's %z: Z, UTC, GMT or an offset with hours up to 19; ISO
		// 8601 takes any whitespace before it, whatever the date separator.
		{"iso zone UTC word", "2026-11-26 21:19:40 UTC x", plus2, true, 0, 23, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"iso slashes then offset", "2026/11/26 21:19:40 +0100 x", time.UTC, true, 0, 25, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"iso tab and two spaces before offset", "2026.11.26 21:19:40\t -0300 x", time.UTC, true, 0, 26, time.Date(2026, 11, 27, 0, 19, 40, 0, time.UTC)},
		{"iso offset of 15 hours", "2026-11-26T21:19:40+1500 x", time.UTC, true, 0, 24, time.Date(2026, 11, 26, 6, 19, 40, 0, time.UTC)},
		{"iso offset of 20 hours is none", "2026-11-26T21:19:40+2000 x", time.UTC, true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"clf zone GMT word", "[26/Nov/2026:21:19:40 GMT] x", plus2, true, 1, 25, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"offset before syslog", "+0100 Nov 26 21:19:40 x", time.UTC, true, 0, 21, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"day first with slashes and two-digit year", "26/11/26 21:19:40 x", time.UTC, true, 0, 17, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"day first one-digit hour", "26-11-2026 9:19:40 x", time.UTC, true, 0, 18, time.Date(2026, 11, 26, 9, 19, 40, 0, time.UTC)},
		{"cpanel month first", "11/26/2026:21:19:40 x", time.UTC, true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"month first with dashes and fraction", "11-26-2026 21:19:40.123 x", time.UTC, true, 0, 23, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"compact iso", "20261126T211940 x", time.UTC, true, 0, 15, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"compact iso space and zone", "20261126 211940+0100 x", time.UTC, true, 0, 20, time.Date(2026, 11, 26, 20, 19, 40, 0, time.UTC)},
		{"time only at line start is today", "21:19:40 x", time.UTC, true, 0, 8, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"time only before the reference", "[1:02:03] x", time.UTC, true, 1, 8, time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC).AddDate(0, 0, -1)},
		{"time only not mid-line", "at 21:19:40 x", time.UTC, false, 0, 0, time.Time{}},
		{"angle brackets", "<11/26/26@21:19:40> x", time.UTC, true, 0, 19, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"tomcat", "Nov 26, 2026 9:19:40 PM org.apache x", time.UTC, true, 0, 23, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"assp", "Nov-26-26 21:19:40 x", time.UTC, true, 0, 18, time.Date(2026, 11, 26, 21, 19, 40, 0, time.UTC)},
		{"glued to an underscore", "_2026-11-26T21:19:40Z", time.UTC, false, 0, 0, time.Time{}},
		{"underscore after", "2026-11-26T21:19:40_x", time.UTC, false, 0, 0, time.Time{}},
		{"epoch too short mid-line", "pid 1764192 x", time.UTC, false, 0, 0, time.Time{}},
		{"epoch not at start", "x 1764192000 y", time.UTC, false, 0, 0, time.Time{}},
		{"truncated syslog", "Nov 26 21:19", time.UTC, false, 0, 0, time.Time{}},
		{"truncated iso", "2026-11-26T21:1", time.UTC, false, 0, 0, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, e, got, ok := findDate(c.line, ref, c.loc)
			if ok != c.ok {
				t.Fatalf("findDate(%q) ok = %v, want %v", c.line, ok, c.ok)
			}
			if !ok {
				return
			}
			if s != c.start || e != c.end {
				t.Errorf("findDate(%q) span = [%d,%d) %q, want [%d,%d)", c.line, s, e, c.line[s:e], c.start, c.end)
			}
			if !got.Equal(c.want) {
				t.Errorf("findDate(%q) = %v, want %v", c.line, got.UTC(), c.want.UTC())
			}
		})
	}
}

// TestDateCut checks fail2ban's rule that the failregex sees the line with
// the date cut out: "^" anchors after it, and brackets around it remain.
func TestDateCut(t *testing.T) {
	ref := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, regex, line string
		ok                bool
	}{
		{"syslog leaves leading space", `^ host sshd\[1\]: from <HOST>$`, "Nov 26 21:19:40 host sshd[1]: from 192.0.2.1", true},
		{"caret is start of the rest", `^<HOST> - - \[\] "GET`, `192.0.2.1 - - [26/Nov/2026:21:19:40 +0000] "GET / HTTP/1.1" 404 1`, true},
		{"date text is gone", `26/Nov.*<HOST>`, `x [26/Nov/2026:21:19:40 +0000] 192.0.2.1`, false},
		{"nginx error", `^ \[error\] \d+#\d+: client: <HOST>$`, `2026/11/26 21:19:40 [error] 7#7: client: 192.0.2.1`, true},
		{"no date keeps the line", `^from <HOST>$`, `from 192.0.2.1`, true},
		{"trailing newline ignored", `from <HOST>$`, "Nov 26 21:19:40 from 192.0.2.1\n", true},
	}
	l := &Loader{Location: time.UTC}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := l.Inline("t", []string{c.regex}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.Match(c.line, ref); ok != c.ok {
				t.Errorf("Match(%q) with %q = %v, want %v", c.line, c.regex, ok, c.ok)
			}
		})
	}
}
