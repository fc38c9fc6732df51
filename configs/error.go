package configs

import (
	"errors"
	"strconv"
	"strings"
)

// ErrNotFound is returned (wrapped) by Load when the configuration file it
// was asked to read does not exist: "no config", as opposed to a bad one,
// which comes back as one or more *Error.
var ErrNotFound = errors.New("no config file")

// Error is one problem in a configuration file, placed at its line. Parse
// and Load return all the problems they find at once, always joined with
// errors.Join (even a single one) and sorted by line; use errors.As to reach
// the first one, or unwrap the join (interface{ Unwrap() []error }) to
// print each.
//
// Error() reads like
//
//	moat.yaml:12: jails.sshd.findtime: "10x" is not a duration (want a Go duration such as 10m or 1h, or 1d)
type Error struct {
	// File is the file name given to Parse or Load.
	File string
	// Line is the 1-based line of the offending key or value; 0 when the
	// problem has no single place (such as a default that cannot be worked out).
	Line int
	// Field is the dotted path of the setting, such as "jails.sshd.findtime";
	// for an unknown or repeated key it is the path of the mapping holding it.
	Field string
	// Value is the offending text as written (empty when the problem is a
	// missing or empty value, or a value of the wrong shape).
	Value string
	// Problem says what is wrong with Value, such as "is not a duration".
	Problem string
	// Want says what would be accepted. A Want ending in "?" is a
	// suggestion ("did you mean maxretry?") and is printed as is.
	Want string
	// Err is the underlying error when there is one (the CheckFilter
	// error of a filter that cannot be loaded); Unwrap returns it.
	Err error
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// maxShownValue bounds how much of a long value (a regex, say) a message
// repeats.
const maxShownValue = 80

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	} else {
		b.WriteString("config")
	}
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Value != "" {
		v := e.Value
		if r := []rune(v); len(r) > maxShownValue {
			v = string(r[:maxShownValue]) + "…"
		}
		b.WriteString(strconv.Quote(v))
		b.WriteByte(' ')
	}
	b.WriteString(e.Problem)
	if e.Want != "" {
		if strings.HasSuffix(e.Want, "?") {
			b.WriteString(" (")
		} else {
			b.WriteString(" (want ")
		}
		b.WriteString(e.Want)
		b.WriteByte(')')
	}
	return b.String()
}
