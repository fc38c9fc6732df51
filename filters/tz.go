package filters

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"time"
)

// Go reads $TZ as a zone name or file only; a POSIX rule string such as
// "CET-01CEST-02,M3.5.0,M10.5.0" (tzset(3)), which the C library and so
// fail2ban's Python take, makes Go fall back to UTC, and every date
// written without a zone would be off by the zone's offset. init puts
// such a zone in time.Local, for the dates of logs and the times moat
// prints alike.
func init() {
	tz, ok := os.LookupEnv("TZ")
	if !ok || time.Local.String() != "UTC" || tz == "" || tz == "UTC" {
		return
	}
	if loc, ok := posixZone(strings.TrimPrefix(tz, ":")); ok {
		time.Local = loc
	}
}

// posixZone is the zone of a POSIX TZ rule string: Go's own reading of
// the rule that ends a TZif file, given a file that holds only that rule.
// The standard time's name and offset are read here, so that a string Go
// cannot read is refused rather than taken for UTC.
func posixZone(rule string) (*time.Location, bool) {
	name, rest := zoneName(rule)
	if name == "" {
		return nil, false
	}
	off, ok := zoneOffset(rest)
	if !ok {
		return nil, false
	}
	// A TZif version 2 file: an empty version 1 block, a version 2 block
	// with one local time type (the standard time, so dates before any
	// rule applies have it) and no transitions, then the rule.
	var b bytes.Buffer
	block := func(first bool) {
		b.WriteString("TZif2")
		b.Write(make([]byte, 15))
		counts := []uint32{0, 0, 0, 0, 1, uint32(len(name) + 1)}
		if first {
			counts = []uint32{0, 0, 0, 0, 1, 1}
		}
		for _, c := range counts {
			_ = binary.Write(&b, binary.BigEndian, c)
		}
		_ = binary.Write(&b, binary.BigEndian, int32(-off))
		b.Write([]byte{0, 0})
		if first {
			b.WriteByte(0)
		} else {
			b.WriteString(name + "\x00")
		}
	}
	block(true)
	block(false)
	b.WriteString("\n" + rule + "\n")
	loc, err := time.LoadLocationFromTZData(rule, b.Bytes())
	if err != nil {
		return nil, false
	}
	return loc, true
}

// zoneName splits the standard time's name off a rule: three or more
// letters, or anything in <...>.
func zoneName(s string) (string, string) {
	if strings.HasPrefix(s, "<") {
		if i := strings.IndexByte(s, '>'); i > 1 {
			return s[1:i], s[i+1:]
		}
		return "", s
	}
	i := 0
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z') {
		i++
	}
	if i < 3 {
		return "", s
	}
	return s[:i], s[i:]
}

// zoneOffset reads the offset after the name, [+-]hh[:mm[:ss]], in
// seconds west of Greenwich (POSIX's sign).
func zoneOffset(s string) (int, bool) {
	sign := 1
	if s != "" && (s[0] == '+' || s[0] == '-') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	secs, mult := 0, 3600
	for part := 0; part < 3; part++ {
		n, digits := 0, 0
		for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' && digits < 3 {
			n = n*10 + int(s[digits]-'0')
			digits++
		}
		if digits == 0 {
			return 0, part > 0
		}
		secs += n * mult
		s, mult = s[digits:], mult/60
		if s == "" || s[0] != ':' {
			break
		}
		s = s[1:]
	}
	return sign * secs, secs <= 24*3600+59*60+59
}
