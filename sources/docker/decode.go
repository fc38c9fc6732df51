package docker

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxLine is the longest line Decode returns, in bytes. Docker splits an
// output line longer than 16 KiB into several entries; Decode joins them up to
// MaxLine bytes and drops the rest of the line (the line is still returned,
// truncated, when its last piece arrives), so memory per stream stays bounded.
const MaxLine = 64 << 10

// maxStreams bounds how many streams may have an incomplete line at once.
// Docker writes two (stdout and stderr).
const maxStreams = 4

// maxDepth bounds nesting in values Decode skips (such as "attrs").
const maxDepth = 32

// ErrNotEntry is wrapped by the errors Decode returns for input that is not a
// json-file log entry.
var ErrNotEntry = errors.New("not a json-file log entry")

// Decoder turns the lines of a json-file log, such as
//
//	{"log":"Failed password for root\n","stream":"stderr","time":"2026-11-27T03:04:05.123456789Z"}
//
// back into the program's own lines. Use one Decoder per log file (its
// rotations included, in order): it holds the pieces of a line that Docker
// split into several entries. A Decoder is not safe for concurrent use.
type Decoder struct {
	pending []pendingLine
	buf     []byte // decoded "log" value when it had escapes
	stream  []byte // decoded "stream" value when it had escapes
}

// pendingLine is the start of a line Docker split, for one stream.
type pendingLine struct {
	stream string
	text   []byte
	t      time.Time
	capped bool
}

// NewDecoder returns a Decoder with no pending line.
func NewDecoder() *Decoder {
	return &Decoder{}
}

// Decode decodes one line of a json-file log (without its trailing newline).
//
// For a whole line it returns the program's text without the trailing newline
// (and without the '\r' a TTY adds before it), the entry's time, and ok=true.
// For a piece of a split line it returns ok=false and a nil error, and keeps
// the piece; the joined line (capped at MaxLine bytes) comes back with the
// last piece, with the time of the first. Pieces of stdout and stderr may
// interleave; they are joined per stream. For input that is not a json-file
// entry it returns ok=false and an error wrapping ErrNotEntry; pending pieces
// are kept. An entry without "time" has the zero time.
func (d *Decoder) Decode(line []byte) (text string, t time.Time, ok bool, err error) {
	logv, streamv, timev, hasLog, err := d.parse(line)
	if err != nil {
		return "", time.Time{}, false, err
	}
	if !hasLog {
		return "", time.Time{}, false, fmt.Errorf("%w: no \"log\" field", ErrNotEntry)
	}
	if timev != nil {
		t, err = parseTime(timev)
		if err != nil {
			return "", time.Time{}, false, fmt.Errorf("%w: bad \"time\" %q: %v", ErrNotEntry, timev, err)
		}
	}
	complete := len(logv) > 0 && logv[len(logv)-1] == '\n'
	if complete {
		logv = logv[:len(logv)-1]
		if len(logv) > 0 && logv[len(logv)-1] == '\r' {
			logv = logv[:len(logv)-1]
		}
	}
	i := d.find(streamv)
	if complete && i < 0 {
		if len(logv) > MaxLine {
			logv = logv[:MaxLine]
		}
		return string(logv), t, true, nil
	}
	if i < 0 {
		if len(d.pending) >= maxStreams {
			return "", time.Time{}, false, fmt.Errorf("%w: pieces of split lines on more than %d streams", ErrNotEntry, maxStreams)
		}
		d.pending = append(d.pending, pendingLine{stream: string(streamv), t: t})
		i = len(d.pending) - 1
	}
	p := &d.pending[i]
	if room := MaxLine - len(p.text); len(logv) > room {
		logv = logv[:room]
		p.capped = true
	}
	p.text = append(p.text, logv...)
	if !complete {
		return "", time.Time{}, false, nil
	}
	text, t = string(p.text), p.t
	d.pending = append(d.pending[:i], d.pending[i+1:]...)
	return text, t, true, nil
}

func (d *Decoder) find(stream []byte) int {
	for i := range d.pending {
		if d.pending[i].stream == string(stream) {
			return i
		}
	}
	return -1
}

// parseTime parses Docker's RFC 3339 time with nanoseconds.
func parseTime(b []byte) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, string(b))
}

// parse reads one JSON object and returns its "log", "stream" and "time"
// string values (a later duplicate key wins, as with encoding/json). The
// returned slices alias line or d's buffers, valid until the next call.
func (d *Decoder) parse(line []byte) (logv, streamv, timev []byte, hasLog bool, err error) {
	p := parser{b: line}
	p.ws()
	if !p.eat('{') {
		return nil, nil, nil, false, p.fail("want '{'")
	}
	p.ws()
	if p.eat('}') {
		return p.end(nil, nil, nil, false)
	}
	for {
		p.ws()
		key, special, err := p.str()
		if err != nil {
			return nil, nil, nil, false, err
		}
		if special >= 0 {
			// Keys are never escaped in Docker's output; decode anyway.
			key, err = unescape(nil, key, special)
			if err != nil {
				return nil, nil, nil, false, p.fail(err.Error())
			}
		}
		p.ws()
		if !p.eat(':') {
			return nil, nil, nil, false, p.fail("want ':'")
		}
		p.ws()
		switch string(key) {
		case "log":
			v, special, err := p.str()
			if err != nil {
				return nil, nil, nil, false, err
			}
			if special >= 0 {
				d.buf, err = unescape(d.buf[:0], v, special)
				if err != nil {
					return nil, nil, nil, false, p.fail(err.Error())
				}
				v = d.buf
			}
			logv, hasLog = v, true
		case "stream":
			v, special, err := p.str()
			if err != nil {
				return nil, nil, nil, false, err
			}
			if special >= 0 {
				d.stream, err = unescape(d.stream[:0], v, special)
				if err != nil {
					return nil, nil, nil, false, p.fail(err.Error())
				}
				v = d.stream
			}
			streamv = v
		case "time":
			v, special, err := p.str()
			if err != nil {
				return nil, nil, nil, false, err
			}
			if special >= 0 {
				if v, err = unescape(nil, v, special); err != nil {
					return nil, nil, nil, false, p.fail(err.Error())
				}
			}
			timev = v
		default:
			if err := p.skip(0); err != nil {
				return nil, nil, nil, false, err
			}
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return p.end(logv, streamv, timev, hasLog)
		}
		return nil, nil, nil, false, p.fail("want ',' or '}'")
	}
}

// parser is a cursor over one line of JSON.
type parser struct {
	b []byte
	i int
}

func (p *parser) fail(why string) error {
	if p.i >= len(p.b) {
		return fmt.Errorf("%w: %s at end of line", ErrNotEntry, why)
	}
	return fmt.Errorf("%w: %s at byte %d", ErrNotEntry, why, p.i)
}

func (p *parser) end(logv, streamv, timev []byte, hasLog bool) ([]byte, []byte, []byte, bool, error) {
	p.ws()
	if p.i != len(p.b) {
		return nil, nil, nil, false, p.fail("trailing data after the object")
	}
	return logv, streamv, timev, hasLog, nil
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its raw contents between the quotes.
// special is the index in raw of the first byte that unescape must handle (a
// backslash or non-ASCII), or -1 if raw is the string as it is.
func (p *parser) str() (raw []byte, special int, err error) {
	if !p.eat('"') {
		return nil, -1, p.fail("want a string")
	}
	start := p.i
	special = -1
	for {
		rest := p.b[p.i:]
		q := bytes.IndexByte(rest, '"')
		if q < 0 {
			p.i = len(p.b)
			return nil, -1, p.fail("unterminated string")
		}
		seg := rest[:q]
		bs := bytes.IndexByte(seg, '\\')
		if bs >= 0 {
			seg = seg[:bs]
		}
		for j, c := range seg {
			if c < 0x20 {
				p.i += j
				return nil, -1, p.fail("control character in string")
			}
			if c >= utf8.RuneSelf && special < 0 {
				special = p.i + j - start
			}
		}
		if bs < 0 {
			raw = p.b[start : p.i+q]
			p.i += q + 1
			return raw, special, nil
		}
		// A backslash: the byte after it is escaped (it may be the quote
		// found above), so go on after it.
		if special < 0 {
			special = p.i + bs - start
		}
		p.i += bs + 2
		if p.i > len(p.b) {
			p.i = len(p.b)
			return nil, -1, p.fail("unterminated string")
		}
	}
}

// skip skips one JSON value of any kind.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return p.fail("nested too deep")
	}
	if p.i >= len(p.b) {
		return p.fail("want a value")
	}
	switch c := p.b[p.i]; {
	case c == '"':
		raw, special, err := p.str()
		if err == nil && special >= 0 {
			if _, err := unescape(nil, raw, special); err != nil {
				return p.fail(err.Error())
			}
		}
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.ws()
		if p.eat(closer) {
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if _, _, err := p.str(); err != nil {
					return err
				}
				p.ws()
				if !p.eat(':') {
					return p.fail("want ':'")
				}
				p.ws()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat(closer) {
				return nil
			}
			return p.fail("want ',' or '" + string(closer) + "'")
		}
	case c == 't':
		return p.word("true")
	case c == 'f':
		return p.word("false")
	case c == 'n':
		return p.word("null")
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return p.fail("want a value")
}

func (p *parser) word(w string) error {
	if len(p.b)-p.i >= len(w) && string(p.b[p.i:p.i+len(w)]) == w {
		p.i += len(w)
		return nil
	}
	return p.fail("want " + w)
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() error {
	p.eat('-')
	switch {
	case p.eat('0'):
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return p.fail("bad number")
	}
	if p.eat('.') {
		if p.digits() == 0 {
			return p.fail("bad number")
		}
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if p.digits() == 0 {
			return p.fail("bad number")
		}
	}
	return nil
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// unescape appends the decoded contents of a JSON string (between its
// quotes) to dst, as encoding/json would decode them: invalid UTF-8 and lone
// surrogates become U+FFFD. s[:from] is plain bytes, copied as they are.
func unescape(dst, s []byte, from int) ([]byte, error) {
	dst = append(dst, s[:from]...)
	for i := from; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return dst, errors.New("backslash at end of string")
			}
			e := s[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(s[i:])
				if !ok {
					return dst, errors.New(`bad \u escape`)
				}
				i += 4
				if utf16.IsSurrogate(r) {
					if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
						if r2, ok := hex4(s[i+2:]); ok {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								dst = utf8.AppendRune(dst, dec)
								i += 6
								break
							}
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, fmt.Errorf("bad escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
		}
	}
	return dst, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
