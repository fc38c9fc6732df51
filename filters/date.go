package filters

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Date detection, as fail2ban does it by default (no datepattern):
//
// fail2ban looks for a date anywhere in the line with its list of default
// templates and, when one matches, splits the line into (before, date,
// after). The failregex is then searched in before+after plus "\n": the
// date text is cut out and the rest joined, so "^" means the start of what
// is left. A syslog line "Nov 26 21:19:40 host sshd[1]: msg" becomes
// " host sshd[1]: msg" (note the leading space); an access log line
// `192.0.2.1 - - [26/Nov/2026:21:19:40 +0000] "GET …` becomes
// `192.0.2.1 - - [] "GET …` (the brackets stay); nginx's error log
// "2026/11/26 21:19:40 [error] …" becomes " [error] …". moat does the same
// without the "\n" (a Go "$" is the end of the text; Python's "$" matches
// before that final newline, so both read a line the same way).
//
// Dates without a year take the reference time's year, or the year before
// when that puts them more than a day after the reference time. Dates
// without a zone are read in the filter's location.
//
// The formats found, leftmost first, at the start of the line or after a
// character that is neither letter nor digit:
//
//	Nov 26 21:19:40 / Nov  6 21:19:40 [2026]   syslog (BSD), optional year
//	Thu Nov 26 21:19:40 2026                   ctime
//	PDT Nov 26 21:19:40                        syslog after a zone abbreviation
//	2026-11-26T21:19:40[.123][Z|+01:00|+0100]  ISO 8601 / RFC 3339 ('T' or ' ', ',' or '.')
//	2026/11/26 21:19:40                        nginx error log (also 2026.11.26)
//	26/Nov/2026:21:19:40 +0000                 Common Log Format
//	26-Nov-2026 21:19:40.123                   BIND
//	1764192000[.123]                           epoch seconds, at line start or after a leading '['
//	@4000000069277c8000000000                  TAI64N, at line start
//	Oct 27 2015 09:24:46                       syslog with the year before the time
//	26-11-2026 21:19:40                        day first
//	261126 21:19:40                            MySQL (YYMMDD)
//
// A later datepattern option plugs in by replacing dateFunc in the Filter.

// dateFunc finds the date in line: its byte span and its time.
type dateFunc func(line string, ref time.Time, loc *time.Location) (start, end int, t time.Time, ok bool)

// findDate is the default dateFunc.
func findDate(line string, ref time.Time, loc *time.Location) (start, end int, t time.Time, ok bool) {
	if loc == nil {
		loc = time.Local
	}
	// Epoch and TAI64N only where fail2ban looks for them: first at the
	// line's start (after up to two non-word characters, as fail2ban's
	// line-anchored copies of its templates, tried first, allow), the epoch
	// also after a '[' without its ']'; then, after every other format, an
	// epoch in a SELinux "audit(" and a TAI64N label anywhere.
	if s, e, t, ok := findEpoch(line, epochLineBegin, false); ok {
		return s, e, t, true
	}
	if len(line) > 0 && line[0] == '[' {
		if e, ok := epochAt(line, 1, 0, false); ok {
			return 1, e, epochTime(line[1:e], false), true
		}
	}
	for i := 0; i <= 2 && i < len(line); i++ {
		if e, t, ok := parseTAI64N(line, i); ok {
			return i, e, t, true
		}
		if isWordByte(line[i]) {
			break
		}
	}
	for i := 0; i < len(line); i++ {
		if i > 0 && isWordByte(line[i-1]) {
			continue
		}
		if e, t, ok := dateAt(line, i, ref, loc); ok {
			return i, e, t, true
		}
	}
	if s, e, t, ok := findEpoch(line, epochAnchored, false); ok {
		return s, e, t, true
	}
	for i := strings.IndexByte(line, '@'); i >= 0; {
		if e, t, ok := parseTAI64N(line, i); ok {
			return i, e, t, true
		}
		k := strings.IndexByte(line[i+1:], '@')
		if k < 0 {
			break
		}
		i += 1 + k
	}
	return 0, 0, time.Time{}, false
}

// dateAt reads one of the default formats (but epoch) starting exactly at i.
func dateAt(line string, i int, ref time.Time, loc *time.Location) (int, time.Time, bool) {
	if i >= len(line) {
		return 0, time.Time{}, false
	}
	switch c := line[i]; {
	case c >= '0' && c <= '9':
		if e, t, ok := parseNumericDate(line, i, loc); ok {
			return e, t, ok
		}
		return parseTimeOnly(line, i, ref, loc)
	case c == '<' && i == 0:
		return parseAngleDate(line, loc)
	case c >= 'A' && c <= 'Z':
		if e, t, ok := parseSyslogDate(line, i, ref, loc); ok {
			return e, t, ok
		}
		if e, t, ok := parseTomcat(line, i, loc); ok {
			return e, t, ok
		}
		if i == 0 {
			if e, t, ok := parseASSP(line, loc); ok {
				return e, t, ok
			}
		}
		// A zone abbreviation before a syslog date (monit: "PDT Apr 16
		// 21:05:29"), read as that zone's fixed offset.
		j := i
		for j < len(line) && j-i < 5 && line[j] >= 'A' && line[j] <= 'Z' {
			j++
		}
		if j < len(line) && line[j] == ' ' {
			if off, ok := zoneAbbrevs[line[i:j]]; ok {
				z := time.FixedZone(line[i:j], off*60)
				return parseSyslogDate(line, j+1, ref, z)
			}
		}
	case c == '+' || c == '-':
		// A numeric zone before a syslog date ("+0100 Nov 26 21:19:52").
		if z, j, ok := zone(line, i, false); ok && j < len(line) && line[j] == ' ' {
			return parseSyslogDate(line, j+1, ref, z)
		}
	}
	return 0, time.Time{}, false
}

// hms reads fail2ban's %H:%M:%S (or %k:%M:%S) at i: one or two digits
// each (hours to 23, minutes to 59, seconds to 61).
func hms(s string, i int) (h, m, sec, end int, ok bool) {
	num := func(k int) (int, int, bool) {
		if k >= len(s) || !isDigit(s[k]) {
			return 0, k, false
		}
		if k+1 < len(s) && isDigit(s[k+1]) {
			return int(s[k]-'0')*10 + int(s[k+1]-'0'), k + 2, true
		}
		return int(s[k] - '0'), k + 1, true
	}
	var k int
	if h, k, ok = num(i); !ok || h > 23 || k >= len(s) || s[k] != ':' {
		return 0, 0, 0, 0, false
	}
	if m, k, ok = num(k + 1); !ok || m > 59 || k >= len(s) || s[k] != ':' {
		return 0, 0, 0, 0, false
	}
	if sec, k, ok = num(k + 1); !ok || sec > 61 {
		return 0, 0, 0, 0, false
	}
	return h, m, min(sec, 59), k, true
}

// parseTimeOnly reads fail2ban's {^LN-BEG}%H:%M:%S: a time alone at the
// line's start (after at most two non-word characters), on the reference
// time's day, or the day before when that would be after it.
func parseTimeOnly(s string, i int, ref time.Time, loc *time.Location) (int, time.Time, bool) {
	if i > 2 {
		return 0, time.Time{}, false
	}
	for k := 0; k < i; k++ {
		if isWordByte(s[k]) {
			return 0, time.Time{}, false
		}
	}
	h, m, sec, end, ok := hms(s, i)
	if !ok || !boundaryAt(s, end) {
		return 0, time.Time{}, false
	}
	r := ref.In(loc)
	t := time.Date(r.Year(), r.Month(), r.Day(), h, m, sec, 0, loc)
	if t.After(ref) {
		t = t.AddDate(0, 0, -1)
	}
	return end, t, true
}

// parseAngleDate reads "<MM/DD/YY@HH:MM:SS>" at the line's start; the
// date is what is inside the brackets.
func parseAngleDate(s string, loc *time.Location) (int, time.Time, bool) {
	mo, ok1 := digits(s, 1, 2)
	d, ok2 := digits(s, 4, 2)
	yy, ok3 := digits(s, 7, 2)
	if !ok1 || !ok2 || !ok3 || s[3] != '/' || s[6] != '/' || len(s) < 10 || s[9] != '@' ||
		mo < 1 || mo > 12 || !validDay(2000+yy, time.Month(mo), d) {
		return 0, time.Time{}, false
	}
	h, m, sec, end, ok := hms(s, 10)
	if !ok || end >= len(s) || s[end] != '>' {
		return 0, time.Time{}, false
	}
	return end + 1, time.Date(2000+yy, time.Month(mo), d, h, m, sec, 0, loc), true
}

// parseTomcat reads "Mon DD, YYYY H:MM:SS AM" (Apache Tomcat).
func parseTomcat(s string, i int, loc *time.Location) (int, time.Time, bool) {
	mo, ok := month(s, i)
	if !ok || i+4 >= len(s) || s[i+3] != ' ' {
		return 0, time.Time{}, false
	}
	k := i + 4
	d, ok := digits(s, k, 2)
	if ok {
		k += 2
	} else if d, ok = digits(s, k, 1); ok {
		k++
	} else {
		return 0, time.Time{}, false
	}
	y, ok := digits(s, k+2, 4)
	if !ok || k+6 >= len(s) || s[k] != ',' || s[k+1] != ' ' || s[k+6] != ' ' || !validDay(y, mo, d) {
		return 0, time.Time{}, false
	}
	h, m, sec, end, ok := hms(s, k+7)
	if !ok || h < 1 || h > 12 || end+3 > len(s) || s[end] != ' ' {
		return 0, time.Time{}, false
	}
	switch strings.ToUpper(s[end+1 : end+3]) {
	case "AM":
		h %= 12
	case "PM":
		h = h%12 + 12
	default:
		return 0, time.Time{}, false
	}
	if !boundaryAt(s, end+3) {
		return 0, time.Time{}, false
	}
	return end + 3, time.Date(y, mo, d, h, m, sec, 0, loc), true
}

// parseASSP reads ASSP's "Mon-DD-YY HH:MM:SS" at the line's start.
func parseASSP(s string, loc *time.Location) (int, time.Time, bool) {
	mo, ok := month(s, 0)
	d, ok1 := digits(s, 4, 2)
	yy, ok2 := digits(s, 7, 2)
	if !ok || !ok1 || !ok2 || s[3] != '-' || s[6] != '-' || len(s) < 10 || s[9] != ' ' || !validDay(2000+yy, mo, d) {
		return 0, time.Time{}, false
	}
	k := 10
	if k < len(s) && s[k] == ' ' {
		k++ // %k's space before a one-digit hour
	}
	h, m, sec, end, ok := hms(s, k)
	if !ok || !boundaryAt(s, end) {
		return 0, time.Time{}, false
	}
	return end, time.Date(2000+yy, mo, d, h, m, sec, 0, loc), true
}

// zoneAbbrevs are the offsets, in minutes east of UTC, of the zone
// abbreviations read before a syslog date. Ambiguous ones (IST) are left
// out; CST is North America's.
var zoneAbbrevs = map[string]int{
	"UTC": 0, "UT": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 60, "BST": 60,
	"CET": 60, "CEST": 120, "MET": 60, "MEST": 120, "EET": 120, "EEST": 180, "MSK": 180,
	"EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360,
	"PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600,
	"JST": 540, "KST": 540, "AWST": 480, "ACST": 570, "AEST": 600, "AEDT": 660,
	"NZST": 720, "NZDT": 780,
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits reads exactly n digits at i.
func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for k := i; k < i+n; k++ {
		if !isDigit(s[k]) {
			return 0, false
		}
		v = v*10 + int(s[k]-'0')
	}
	return v, true
}

// boundaryAt reports whether position i ends a token: end of line or a
// character that is not a letter or digit.
func boundaryAt(s string, i int) bool { return i >= len(s) || !isWordByte(s[i]) }

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// month reads a three-letter English month name at i (case as written in logs).
func month(s string, i int) (time.Month, bool) {
	if i+3 > len(s) {
		return 0, false
	}
	m := s[i : i+3]
	for k, name := range months {
		if m == name {
			return time.Month(k + 1), true
		}
	}
	return 0, false
}

func weekday(s string, i int) bool {
	if i+3 > len(s) {
		return false
	}
	switch s[i : i+3] {
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		return true
	}
	return false
}

// clock reads HH:MM:SS at i and returns the index after it.
func clock(s string, i int) (h, m, sec, end int, ok bool) {
	var ok1, ok2, ok3 bool
	h, ok1 = digits(s, i, 2)
	m, ok2 = digits(s, i+3, 2)
	sec, ok3 = digits(s, i+6, 2)
	if !ok1 || !ok2 || !ok3 || s[i+2] != ':' || s[i+5] != ':' || h > 23 || m > 59 || sec > 60 {
		return 0, 0, 0, 0, false
	}
	if sec == 60 {
		sec = 59
	}
	return h, m, sec, i + 8, true
}

// clock1 reads H:MM:SS (a one-digit hour) at i.
func clock1(s string, i int) (h, m, sec, end int, ok bool) {
	m, ok1 := digits(s, i+2, 2)
	sec, ok2 := digits(s, i+5, 2)
	if !isDigit(s[i]) || !ok1 || !ok2 || s[i+1] != ':' || s[i+4] != ':' || m > 59 || sec > 59 {
		return 0, 0, 0, 0, false
	}
	return int(s[i] - '0'), m, sec, i + 7, true
}

// fraction reads [.,]digits at i and returns nanoseconds. Like fail2ban's
// %f it takes 1 to 6 digits: a longer run is no fraction (fail2ban's
// templates then end at the seconds and leave it in the line).
func fraction(s string, i int, seps string) (ns, end int) {
	if i+1 >= len(s) || (s[i] != '.' && !(s[i] == ',' && len(seps) > 1)) || !isDigit(s[i+1]) {
		return 0, i
	}
	j, scale := i+1, 100000000
	for j < len(s) && isDigit(s[j]) {
		ns += int(s[j]-'0') * scale
		scale /= 10
		j++
	}
	if j-i-1 > 6 {
		return 0, i
	}
	return ns, j
}

// zone reads what fail2ban's %z does: Z, UTC, GMT, ±hh:mm, ±hhmm or ±hh
// (hh up to 19) at i (after an optional space when space is true).
func zone(s string, i int, space bool) (*time.Location, int, bool) {
	j := i
	if space && j < len(s) && s[j] == ' ' {
		j++
	}
	if j < len(s) && s[j] == 'Z' && boundaryAt(s, j+1) {
		return time.UTC, j + 1, true
	}
	if j+3 <= len(s) && (s[j:j+3] == "UTC" || s[j:j+3] == "GMT") && boundaryAt(s, j+3) {
		return time.UTC, j + 3, true
	}
	if j >= len(s) || (s[j] != '+' && s[j] != '-') {
		return nil, i, false
	}
	sign := 1
	if s[j] == '-' {
		sign = -1
	}
	hh, ok := digits(s, j+1, 2)
	if !ok {
		return nil, i, false
	}
	k := j + 3
	mm := 0
	if v, ok := digits(s, k, 2); ok {
		mm, k = v, k+2
	} else if k < len(s) && s[k] == ':' {
		if v, ok := digits(s, k+1, 2); ok {
			mm, k = v, k+3
		}
	}
	if hh > 19 || mm > 59 || !boundaryAt(s, k) {
		return nil, i, false
	}
	off := sign * (hh*3600 + mm*60)
	if off == 0 {
		return time.UTC, k, true
	}
	return time.FixedZone("", off), k, true
}

var daysIn = [...]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func validDay(y int, m time.Month, d int) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	n := daysIn[m]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		n = 29
	}
	return d <= n
}

// parseNumericDate reads the formats that start with a digit at i.
func parseNumericDate(s string, i int, loc *time.Location) (int, time.Time, bool) {
	if y, ok := digits(s, i, 4); ok && i+4 < len(s) && (s[i+4] == '-' || s[i+4] == '/' || s[i+4] == '.') {
		sep := s[i+4]
		mo, ok1 := digits(s, i+5, 2)
		d, ok2 := digits(s, i+8, 2)
		if !ok1 || !ok2 || s[i+7] != sep || mo < 1 || mo > 12 || !validDay(y, time.Month(mo), d) {
			return 0, time.Time{}, false
		}
		k := i + 10
		if k >= len(s) || (s[k] != 'T' && s[k] != ' ') {
			return 0, time.Time{}, false
		}
		k++
		if k < len(s) && s[k] == ' ' && s[k-1] == ' ' {
			k++
		}
		h, m, sec, end, ok := clock(s, k)
		if !ok && s[k-1] == ' ' && k+7 <= len(s) && isDigit(s[k]) && s[k+1] == ':' {
			// "2015-10-07  8:25:38": a one-digit hour after two spaces
			h, m, sec, end, ok = clock1(s, k)
		}
		if !ok {
			return 0, time.Time{}, false
		}
		end, zl, ok := fractionAndZone(s, end, loc)
		if !ok {
			return 0, time.Time{}, false
		}
		return end, time.Date(y, time.Month(mo), d, h, m, sec, 0, zl), true
	}
	if e, t, ok := parseDayFirst(s, i, loc); ok {
		return e, t, true
	}
	if e, t, ok := parseMySQL(s, i, loc); ok {
		return e, t, true
	}
	if e, t, ok := parseMonthFirst(s, i, loc); ok {
		return e, t, true
	}
	if e, t, ok := parseCompactISO(s, i, loc); ok {
		return e, t, true
	}
	// Common Log Format: 26/Nov/2026:21:19:40 +0000; also BIND's
	// 26-Nov-2026 21:19:40.123 (fail2ban's template takes '/' or '-',
	// then ':', ' ' or nothing before the time).
	d, ok := digits(s, i, 2)
	if !ok || i+2 >= len(s) || (s[i+2] != '/' && s[i+2] != '-') {
		return 0, time.Time{}, false
	}
	sep := s[i+2]
	mo, ok := month(s, i+3)
	if !ok || i+6 >= len(s) || s[i+6] != sep {
		return 0, time.Time{}, false
	}
	y, ok := digits(s, i+7, 4)
	if !ok || i+11 >= len(s) || !validDay(y, mo, d) {
		return 0, time.Time{}, false
	}
	at := i + 11
	if s[at] == ':' || s[at] == ' ' {
		at++
	}
	h, m, sec, end, ok := clock(s, at)
	if !ok {
		return 0, time.Time{}, false
	}
	secEnd := end
	_, end = fraction(s, end, ".")
	zl := loc
	if z, zend, ok := zone(s, end, true); ok {
		zl, end = z, zend
	}
	if !boundaryAt(s, end) {
		if end == secEnd || !boundaryAt(s, secEnd) {
			return 0, time.Time{}, false
		}
		zl, end = loc, secEnd
	}
	return end, time.Date(y, mo, d, h, m, sec, 0, zl), true
}

// parseDayFirst reads "DD-MM-YYYY HH:MM:SS", also with '/' and with a
// two-digit year (fail2ban's %d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S).
func parseDayFirst(s string, i int, loc *time.Location) (int, time.Time, bool) {
	if i+6 > len(s) {
		return 0, time.Time{}, false
	}
	d, ok1 := digits(s, i, 2)
	mo, ok2 := digits(s, i+3, 2)
	if !ok1 || !ok2 || (s[i+2] != '-' && s[i+2] != '/') || s[i+5] != s[i+2] || mo < 1 || mo > 12 {
		return 0, time.Time{}, false
	}
	k := i + 6
	y, ok := digits(s, k, 4)
	switch {
	case ok && k+4 < len(s) && s[k+4] == ' ':
		k += 4
	default:
		yy, ok := digits(s, k, 2)
		if !ok || k+2 >= len(s) || s[k+2] != ' ' {
			return 0, time.Time{}, false
		}
		y, k = 2000+yy, k+2
	}
	if !validDay(y, time.Month(mo), d) {
		return 0, time.Time{}, false
	}
	h, m, sec, end, ok := clock(s, k+1)
	if !ok && k+8 <= len(s) {
		h, m, sec, end, ok = clock1(s, k+1)
	}
	if !ok {
		return 0, time.Time{}, false
	}
	// fail2ban's template for this format has neither a fraction nor a
	// zone: what follows stays in the line for the failregex (3proxy's
	// lines go on with " +0300").
	if !boundaryAt(s, end) {
		return 0, time.Time{}, false
	}
	return end, time.Date(y, time.Month(mo), d, h, m, sec, 0, loc), true
}

// parseMonthFirst reads cPanel's "MM/DD/YYYY:HH:MM:SS" and
// "MM-DD-YYYY HH:MM:SS[.frac]", as fail2ban's templates do.
func parseMonthFirst(s string, i int, loc *time.Location) (int, time.Time, bool) {
	mo, ok1 := digits(s, i, 2)
	d, ok2 := digits(s, i+3, 2)
	y, ok3 := digits(s, i+6, 4)
	if !ok1 || !ok2 || !ok3 || i+10 >= len(s) || s[i+5] != s[i+2] || !validDay(y, time.Month(mo), d) || mo < 1 || mo > 12 {
		return 0, time.Time{}, false
	}
	switch {
	case s[i+2] == '/' && s[i+10] == ':':
		h, m, sec, end, ok := clock(s, i+11)
		if !ok || !boundaryAt(s, end) {
			return 0, time.Time{}, false
		}
		return end, time.Date(y, time.Month(mo), d, h, m, sec, 0, loc), true
	case s[i+2] == '-' && s[i+10] == ' ':
		h, m, sec, end, ok := clock(s, i+11)
		if !ok && i+18 <= len(s) {
			h, m, sec, end, ok = clock1(s, i+11)
		}
		if !ok {
			return 0, time.Time{}, false
		}
		secEnd := end
		if _, end = fraction(s, end, "."); !boundaryAt(s, end) {
			end = secEnd
		}
		if !boundaryAt(s, end) {
			return 0, time.Time{}, false
		}
		return end, time.Date(y, time.Month(mo), d, h, m, sec, 0, loc), true
	}
	return 0, time.Time{}, false
}

// parseCompactISO reads "YYYYMMDDTHHMMSS" (or one or two spaces for the
// 'T') with an optional fraction and zone.
func parseCompactISO(s string, i int, loc *time.Location) (int, time.Time, bool) {
	y, ok1 := digits(s, i, 4)
	mo, ok2 := digits(s, i+4, 2)
	d, ok3 := digits(s, i+6, 2)
	if !ok1 || !ok2 || !ok3 || i+8 >= len(s) || mo < 1 || mo > 12 || !validDay(y, time.Month(mo), d) {
		return 0, time.Time{}, false
	}
	k := i + 8
	switch {
	case s[k] == 'T':
		k++
	case s[k] == ' ':
		k++
		if k < len(s) && s[k] == ' ' {
			k++
		}
	default:
		return 0, time.Time{}, false
	}
	h, ok1 := digits(s, k, 2)
	m, ok2 := digits(s, k+2, 2)
	sec, ok3 := digits(s, k+4, 2)
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 61 {
		return 0, time.Time{}, false
	}
	sec = min(sec, 59)
	end, zl, ok := fractionAndZone(s, k+6, loc)
	if !ok {
		return 0, time.Time{}, false
	}
	return end, time.Date(y, time.Month(mo), d, h, m, sec, 0, zl), true
}

// fractionAndZone reads what may follow the seconds ending at secEnd in
// fail2ban's numeric templates, (?:[.,]%f)?(?:\s*%z)?, and returns where
// the date ends and its zone (loc without one). Where the date does not
// end at a word boundary, fail2ban's template backs off to the seconds,
// which a '.' or ',' ends; ok is false when that fails too.
func fractionAndZone(s string, secEnd int, loc *time.Location) (end int, zl *time.Location, ok bool) {
	_, end = fraction(s, secEnd, ".,")
	zl = loc
	j := end
	for j < len(s) && isPySpace(s[j]) {
		j++
	}
	if z, zend, ok := zone(s, j, false); ok {
		zl, end = z, zend
	}
	if !boundaryAt(s, end) {
		if end == secEnd || !boundaryAt(s, secEnd) {
			return 0, nil, false
		}
		zl, end = loc, secEnd
	}
	return end, zl, true
}

// parseMySQL reads MySQL's "YYMMDD HH:MM:SS" (the hour may be " 9").
func parseMySQL(s string, i int, loc *time.Location) (int, time.Time, bool) {
	yy, ok1 := digits(s, i, 2)
	mo, ok2 := digits(s, i+2, 2)
	d, ok3 := digits(s, i+4, 2)
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || !validDay(2000+yy, time.Month(mo), d) ||
		i+7 >= len(s) || s[i+6] != ' ' {
		return 0, time.Time{}, false
	}
	k := i + 7
	if s[k] == ' ' {
		k++
	}
	h := 0
	if k+1 < len(s) && isDigit(s[k]) && s[k+1] == ':' {
		// one-digit hour
		h, k = int(s[k]-'0'), k+1
	} else if v, ok := digits(s, k, 2); ok && v < 24 {
		h, k = v, k+2
	} else {
		return 0, time.Time{}, false
	}
	m, ok1 := digits(s, k+1, 2)
	sec, ok2 := digits(s, k+4, 2)
	if !ok1 || !ok2 || s[k] != ':' || s[k+3] != ':' || m > 59 || sec > 59 || !boundaryAt(s, k+6) {
		return 0, time.Time{}, false
	}
	return k + 6, time.Date(2000+yy, time.Month(mo), d, h, m, sec, 0, loc), true
}

// parseTAI64N reads "@" and 24 hex digits (djb's TAI64N, as daemontools'
// multilog writes it); like fail2ban, the seconds are taken as Unix time
// and the nanoseconds dropped (the time is in UTC: fail2ban's is an int,
// like a date written with its zone).
func parseTAI64N(s string, i int) (int, time.Time, bool) {
	if i+25 > len(s) || s[i] != '@' || !boundaryAt(s, i+25) {
		return 0, time.Time{}, false
	}
	var sec int64
	for k := i + 1; k < i+25; k++ {
		c := s[k]
		var v int64
		switch {
		case c >= '0' && c <= '9':
			v = int64(c - '0')
		case c >= 'a' && c <= 'f':
			v = int64(c-'a') + 10
		default:
			return 0, time.Time{}, false
		}
		if k >= i+2 && k < i+17 {
			sec = sec<<4 | v
		}
	}
	return i + 25, time.Unix(sec, 0).UTC(), true
}

// parseSyslogDate reads "[Www ]Mon dD HH:MM:SS[ YYYY]" at i.
func parseSyslogDate(s string, i int, ref time.Time, loc *time.Location) (int, time.Time, bool) {
	k := i
	ctime := false
	if weekday(s, k) && k+4 < len(s) && s[k+3] == ' ' {
		k += 4
		ctime = true
	}
	mo, ok := month(s, k)
	if !ok || k+4 >= len(s) || s[k+3] != ' ' {
		return 0, time.Time{}, false
	}
	k += 4
	if s[k] == ' ' {
		k++
	}
	var d int
	if v, ok := digits(s, k, 2); ok {
		d, k = v, k+2
	} else if v, ok := digits(s, k, 1); ok {
		d, k = v, k+1
	} else {
		return 0, time.Time{}, false
	}
	if k+1 >= len(s) || s[k] != ' ' {
		return 0, time.Time{}, false
	}
	year, hasYear := 0, false
	if y, ok := digits(s, k+1, 4); ok && k+5 < len(s) && s[k+5] == ' ' {
		year, hasYear, k = y, true, k+5
	}
	h, m, sec, end, ok := clock(s, k+1)
	if !ok {
		return 0, time.Time{}, false
	}
	secEnd := end
	_, end = fraction(s, end, ".")
	if !hasYear && end+5 <= len(s) && s[end] == ' ' {
		if y, ok := digits(s, end+1, 4); ok && boundaryAt(s, end+5) {
			year, hasYear, end = y, true, end+5
		}
	}
	if ctime && !hasYear {
		return 0, time.Time{}, false
	}
	if !boundaryAt(s, end) {
		if end == secEnd || !boundaryAt(s, secEnd) || ctime {
			return 0, time.Time{}, false
		}
		// fail2ban's template backs off to the seconds.
		end = secEnd
	}
	if hasYear {
		if !validDay(year, mo, d) {
			return 0, time.Time{}, false
		}
		return end, time.Date(year, mo, d, h, m, sec, 0, loc), true
	}
	refY := ref.In(loc).Year()
	if !validDay(refY, mo, d) && !validDay(refY-1, mo, d) {
		return 0, time.Time{}, false
	}
	t := time.Date(refY, mo, d, h, m, sec, 0, loc)
	if t.After(ref.Add(24*time.Hour)) || !validDay(refY, mo, d) {
		t = time.Date(refY-1, mo, d, h, m, sec, 0, loc)
	}
	return end, t, true
}

// epochMode says where a Unix-time template looks for its number, as
// fail2ban's Epoch template does in its three forms.
type epochMode int

const (
	// epochAnchored is EPOCH (and the default detector's epoch): at the
	// line's start, after a leading '[', or after a word "audit("
	// (SELinux). fail2ban's template means to require the ']' or ":N)"
	// after it, but its two conditionals are alternatives, one of which
	// always holds: neither is required.
	epochAnchored epochMode = iota
	// epochLineBegin is {^LN-BEG}EPOCH: after at most two leading
	// non-word characters ('[' alone then needs its ']').
	epochLineBegin
	// epochWord is {EPOCH}: wherever a word begins.
	epochWord
)

// findEpoch finds a Unix time in line the way fail2ban's Epoch template
// does: 10 or 11 digits of seconds ending a word, with a fraction of 3 to 6
// digits when one follows and ends a word too; long (LEPOCH) also takes 13
// digits of milliseconds (with a fraction) or 16 of microseconds. The time
// is the float fail2ban computes, kept to the nanosecond, in time.Local.
func findEpoch(line string, mode epochMode, long bool) (start, end int, t time.Time, ok bool) {
	try := func(i int, tail byte) bool {
		if e, ok := epochAt(line, i, tail, long); ok {
			start, end, t = i, e, epochTime(line[i:e], long)
			return true
		}
		return false
	}
	switch mode {
	case epochAnchored:
		if try(0, 0) {
			return start, end, t, true
		}
		if len(line) > 0 && line[0] == '[' && try(1, 0) {
			return start, end, t, true
		}
		for off := 0; ; {
			k := strings.Index(line[off:], "audit(")
			if k < 0 {
				break
			}
			k += off
			if (k == 0 || !isWordByte(line[k-1])) && try(k+6, 0) {
				return start, end, t, true
			}
			off = k + 1
		}
	case epochLineBegin:
		k := 0
		for k < len(line) && !isWordByte(line[k]) {
			k++
		}
		var tail byte
		if k == 1 && line[0] == '[' {
			tail = ']'
		}
		if k <= 2 && try(k, tail) {
			return start, end, t, true
		}
	case epochWord:
		for i := 0; i < len(line); i++ {
			if isDigit(line[i]) && (i == 0 || !isWordByte(line[i-1])) && try(i, 0) {
				return start, end, t, true
			}
		}
	}
	return 0, 0, time.Time{}, false
}

// epochAt reads the number of an epoch template at i and returns its end:
// the longest form (as fail2ban's backtracking prefers) that ends a word
// and is followed by tail (']'; 0 for nothing).
func epochAt(s string, i int, tail byte, long bool) (int, bool) {
	run := i
	for run < len(s) && isDigit(s[run]) {
		run++
	}
	ok := func(e int) bool {
		switch tail {
		case ']':
			return e < len(s) && s[e] == ']'
		}
		return e >= len(s) || !isWordByte(s[e])
	}
	// frac is the end of a '.' fraction of min to 6 digits at e, or -1.
	frac := func(e, min int) int {
		if e >= len(s) || s[e] != '.' {
			return -1
		}
		j := e + 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if n := j - e - 1; n < min || n > 6 {
			return -1
		}
		return j
	}
	for _, n := range [...]int{11, 10} {
		e := i + n
		if run < e {
			continue
		}
		if !long {
			// The seconds end a word; the fraction is optional.
			if run != e || (e < len(s) && isWordByte(s[e])) {
				continue
			}
			if f := frac(e, 3); f >= 0 && ok(f) {
				return f, true
			}
			if ok(e) {
				return e, true
			}
			continue
		}
		if run >= e+3 {
			if run == e+3 {
				if f := frac(e+3, 1); f >= 0 && ok(f) {
					return f, true
				}
			}
			if run >= e+6 && ok(e+6) {
				return e + 6, true
			}
			if ok(e + 3) {
				return e + 3, true
			}
		}
		if ok(e) {
			return e, true
		}
	}
	return 0, false
}

// epochTime is the time fail2ban makes of an epoch template's text: Python's
// float of it (divided by 1000 for 13 digits and more, or by 10^6 for 16
// digits without a fraction, when long), to the nanosecond.
func epochTime(text string, long bool) time.Time {
	if !long || len(text) < 13 {
		// Seconds and a decimal fraction: the same float, exactly.
		dot := strings.IndexByte(text+".", '.')
		sec, err := strconv.ParseInt(text[:dot], 10, 64)
		if err != nil {
			return time.Time{}
		}
		ns, _ := fraction(text, dot, ".")
		return time.Unix(sec, int64(ns))
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return time.Time{}
	}
	if long && len(text) >= 13 {
		if len(text) >= 16 && !strings.Contains(text, ".") {
			f /= 1e6
		} else {
			f /= 1000
		}
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64(math.Round((f-sec)*1e9)))
}

// isPySpace reports whether c is an ASCII character of Python's \s.
func isPySpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// isWordByte reports whether c is a word character of Python's re (bytes
// of non-ASCII characters count as letters).
func isWordByte(c byte) bool { return isAlnum(c) || c == '_' || c >= 0x80 }

// parseEpoch reads an epoch template's number at i (see epochAt), for
// callers that check what follows it themselves.
func parseEpoch(s string, i int) (int, time.Time, bool) {
	e, ok := epochAt(s, i, 0, false)
	if !ok {
		return 0, time.Time{}, false
	}
	return e, epochTime(s[i:e], false), true
}
