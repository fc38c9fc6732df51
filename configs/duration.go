package configs

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// errNoUnit marks a bare number such as "600": fail2ban reads it as
// seconds, moat asks for the unit so that nobody bans for 600 hours by mistake.
var errNoUnit = errors.New("has no unit")

// ParseDuration reads a duration as Go's time.ParseDuration does ("90s",
// "1h30m", "1.5h") plus the units d (24h) and w (7d), which may be mixed:
// "1w2d", "1d12h". A sign is not accepted and "0" is zero; any other number
// without a unit is an error. It is a pure function, safe for concurrent use;
// `moat ban --for` reads its argument with it too.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if s == "0" {
		return 0, nil
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, errors.New("not a duration")
		}
		num := rest[:i]
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[i:j]
		rest = rest[j:]
		var part time.Duration
		switch unit {
		case "":
			return 0, errNoUnit
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, errors.New("not a duration")
			}
			f *= float64(24 * time.Hour)
			if unit == "w" {
				f *= 7
			}
			if f >= math.MaxInt64 {
				return 0, errors.New("duration too long")
			}
			part = time.Duration(f)
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, errors.New("not a duration")
			}
			part = d
		}
		if total > math.MaxInt64-part {
			return 0, errors.New("duration too long")
		}
		total += part
	}
	return total, nil
}
