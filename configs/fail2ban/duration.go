package fail2ban

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// unitSeconds maps each unit word fail2ban accepts (case-insensitive) to
// its length in seconds. A month is a twelfth of a year, a year 365.25 days.
var unitSeconds = func() map[string]float64 {
	m := map[string]float64{}
	add := func(secs float64, words ...string) {
		for _, w := range words {
			m[w] = secs
		}
	}
	add(1, "second", "seconds", "sec", "se", "s", "ss")
	add(60, "minute", "minutes", "min", "mi", "m", "mm")
	add(3600, "hour", "hours", "hou", "ho", "h", "hh")
	add(86400, "day", "days", "da", "d", "dd")
	add(7*86400, "week", "weeks", "wee", "we", "w", "ww")
	add((365*3+366)*86400/4.0/12, "month", "months", "mon", "mo")
	add((365*3+366)*86400/4.0, "year", "years", "yea", "ye", "y", "yy")
	return m
}()

// ParseDuration reads a fail2ban time value: plain seconds ("600", "-1"),
// a number with a unit ("10m", "1h", "1d", "1w", "2mo", "1y", also spelled
// "10 minutes"), or a sum of such terms ("1d12h", "1h 30m", "1h-5m").
// Fractions are allowed ("1.5h"). A negative result (fail2ban writes -1)
// means a ban without end. It is a pure function, safe for concurrent use.
func ParseDuration(s string) (time.Duration, error) {
	secs, err := parseSeconds(s)
	if err != nil {
		return 0, fmt.Errorf("parse time %q: %w", s, err)
	}
	d := secs * float64(time.Second)
	if d >= math.MaxInt64 || d <= math.MinInt64 {
		return 0, fmt.Errorf("parse time %q: too long", s)
	}
	return time.Duration(math.Round(d)), nil
}

// parseSeconds evaluates s as a signed sum of terms, each a number with an
// optional unit; terms without an operator between them are added.
func parseSeconds(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	total, terms := 0.0, 0
	for i := 0; i < len(s); {
		i = skipSpace(s, i)
		if i == len(s) {
			break
		}
		sign := 1.0
		if s[i] == '+' || s[i] == '-' {
			if s[i] == '-' {
				sign = -1
			}
			i = skipSpace(s, i+1)
		}
		j := i
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("want a number at %q", s[i:])
		}
		n, err := strconv.ParseFloat(s[i:j], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", s[i:j])
		}
		i = j
		k := skipSpace(s, i)
		u := k
		for u < len(s) && (s[u] >= 'a' && s[u] <= 'z' || s[u] >= 'A' && s[u] <= 'Z') {
			u++
		}
		if u > k {
			mult, ok := unitSeconds[strings.ToLower(s[k:u])]
			if !ok {
				return 0, fmt.Errorf("unknown unit %q", s[k:u])
			}
			n *= mult
			i = u
		}
		total += sign * n
		terms++
	}
	if terms == 0 {
		return 0, errors.New("no number")
	}
	return total, nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}
