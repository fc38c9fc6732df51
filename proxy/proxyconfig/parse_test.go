package proxyconfig

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rateCases = []struct {
	name   string
	in     string
	perSec float64
	window time.Duration
	err    string // a part of the error; "" for none
}{
	{"per second", "10/s", 10, time.Second, ""},
	{"per minute", "600/m", 10, time.Minute, ""},
	{"per hour", "36000/h", 10, time.Hour, ""},
	{"per day", "1/d", 1.0 / 86400, 24 * time.Hour, ""},
	{"decimal", "0.5/s", 0.5, time.Second, ""},
	{"decimal per minute", "1.5/m", 0.025, time.Minute, ""},
	{"leading zeros", "007/s", 7, time.Second, ""},
	{"empty", "", 0, 0, "want <count>/<unit>"},
	{"no unit", "10", 0, 0, "want <count>/<unit>"},
	{"empty unit", "10/", 0, 0, `unit "": want s, m, h or d`},
	{"empty count", "/s", 0, 0, `count "": want a plain decimal`},
	{"space before slash", "10 /s", 0, 0, `count "10 ": want a plain decimal`},
	{"space after slash", "10/ s", 0, 0, `unit " s"`},
	{"leading space", " 10/s", 0, 0, "plain decimal"},
	{"trailing space", "10/s ", 0, 0, `unit "s "`},
	{"unknown unit", "10/x", 0, 0, `unit "x"`},
	{"unit spelled out", "10/sec", 0, 0, `unit "sec"`},
	{"upper-case unit", "10/S", 0, 0, `unit "S"`},
	{"two slashes", "1/s/s", 0, 0, `unit "s/s"`},
	{"negative", "-1/s", 0, 0, "plain decimal"},
	{"plus sign", "+1/s", 0, 0, "plain decimal"},
	{"zero", "0/s", 0, 0, "more than zero"},
	{"zero decimal", "0.000/m", 0, 0, "more than zero"},
	{"exponent", "1e3/s", 0, 0, "plain decimal"},
	{"infinity", "inf/s", 0, 0, "plain decimal"},
	{"not a number", "NaN/s", 0, 0, "plain decimal"},
	{"hex", "0x10/s", 0, 0, "plain decimal"},
	{"underscore", "1_0/s", 0, 0, "plain decimal"},
	{"bare point", ".5/s", 0, 0, "plain decimal"},
	{"trailing point", "5./s", 0, 0, "plain decimal"},
	{"two points", "1.2.3/s", 0, 0, "plain decimal"},
	{"too long", strings.Repeat("1", 40) + "/s", 0, 0, "longer than"},
}

func TestParseRate(t *testing.T) {
	for _, c := range rateCases {
		t.Run(c.name, func(t *testing.T) {
			got, w, err := ParseRate(c.in)
			if c.err != "" {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %v, %v; want an error with %q", c.in, got, w, c.err)
				}
				if !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "parse rate ") {
					t.Fatalf("ParseRate(%q) error %q; want one starting \"parse rate\" with %q", c.in, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRate(%q): %v", c.in, err)
			}
			if math.Abs(got-c.perSec) > 1e-12*c.perSec || w != c.window {
				t.Fatalf("ParseRate(%q) = %v, %v; want %v, %v", c.in, got, w, c.perSec, c.window)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, c := range rateCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, w, err := ParseRate(s)
		if err != nil {
			return
		}
		if !(r > 0) || math.IsInf(r, 0) {
			t.Fatalf("ParseRate(%q) = %v: want a positive finite rate", s, r)
		}
		switch w {
		case time.Second, time.Minute, time.Hour, 24 * time.Hour:
		default:
			t.Fatalf("ParseRate(%q) window %v", s, w)
		}
		if strings.ContainsAny(s, " \t+-eE_xX") {
			t.Fatalf("ParseRate(%q) accepted a sign, space, exponent or prefix", s)
		}
		num, _, _ := strings.Cut(s, "/")
		n, _ := strconv.ParseFloat(num, 64)
		if got := r * w.Seconds(); math.Abs(got-n) > 1e-9*n {
			t.Fatalf("ParseRate(%q) = %v per second: %v per window, want %v", s, r, got, n)
		}
	})
}
