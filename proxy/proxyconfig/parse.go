package proxyconfig

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRateLen bounds the text ParseRate reads, so a hostile configuration
// cannot make it parse a number thousands of digits long.
const maxRateLen = 32

// ParseRate parses a rate written as a count per unit: "10/s", "600/m",
// "36000/h" or "1/d". The count is a plain decimal ("0.5/s"), positive and
// finite; signs, exponents, spaces (around the '/' or elsewhere) and other
// units are refused. It returns the rate in requests per second and the
// unit it was written in (time.Second, time.Minute, time.Hour or 24h).
func ParseRate(s string) (perSecond float64, window time.Duration, err error) {
	bad := func(why string) (float64, time.Duration, error) {
		return 0, 0, fmt.Errorf("parse rate %q: %s", s, why)
	}
	if len(s) > maxRateLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxRateLen))
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return bad("want <count>/<unit> like 10/s, 600/m, 36000/h or 1/d")
	}
	switch unit {
	case "s":
		window = time.Second
	case "m":
		window = time.Minute
	case "h":
		window = time.Hour
	case "d":
		window = 24 * time.Hour
	default:
		return bad(fmt.Sprintf("unit %q: want s, m, h or d", unit))
	}
	if !plainDecimal(num) {
		return bad(fmt.Sprintf("count %q: want a plain decimal number like 10 or 0.5", num))
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(n, 0) {
		return bad(fmt.Sprintf("count %q: out of range", num))
	}
	if n <= 0 {
		return bad("count must be more than zero")
	}
	perSecond = n / window.Seconds()
	if perSecond <= 0 {
		return bad(fmt.Sprintf("count %q: too small", num))
	}
	return perSecond, window, nil
}

// plainDecimal reports whether s is digits, optionally followed by a '.'
// and more digits.
func plainDecimal(s string) bool {
	digits := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	intPart, frac, hasDot := strings.Cut(s, ".")
	return digits(intPart) && (!hasDot || digits(frac))
}

// ParseUpstream reads an upstream as written in a route: "host:port" (plain
// HTTP) or an http:// or https:// URL, optionally with a base path.
func ParseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("empty upstream")
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream %q: scheme %q is not http or https", s, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("upstream %q: no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("upstream %q: credentials in the URL are not supported", s)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("upstream %q: a query or fragment is not allowed", s)
	}
	if p := u.Port(); p == "" {
		if !strings.Contains(s, "://") {
			return nil, fmt.Errorf("upstream %q: no port", s)
		}
	} else if n, err := parsePort(p); err != nil || n == 0 {
		return nil, fmt.Errorf("upstream %q: port %q is not 1-65535", s, p)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func parsePort(p string) (int, error) {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number")
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, fmt.Errorf("out of range")
		}
	}
	return n, nil
}
