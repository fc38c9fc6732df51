package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/moatproj/moat/sources"

	"github.com/moatproj/moat/internal/pytext"
)

// Entry is one journal entry as the source hands it over.
type Entry struct {
	// Line is the entry as fail2ban's systemd backend formats it for its
	// filters (formatJournalEntry): "HOST IDENT[PID]: MESSAGE", each part
	// left out when its field is (see FormatLine), newlines written as the
	// two characters \n.
	Line string
	// Time is when the entry was logged, as fail2ban takes it:
	// _SOURCE_REALTIME_TIMESTAMP (the sender's time, which journald
	// records) when present, otherwise Realtime.
	Time time.Time
	// Realtime is __REALTIME_TIMESTAMP: when journald received the entry.
	Realtime time.Time
	// Cursor is __CURSOR, the entry's address in the journal.
	Cursor string
	// Fields holds the entry's fields (the address fields starting with
	// "__" are in Cursor and Realtime instead), each value as its bytes, not
	// decoded: CONTAINER_NAME, CONTAINER_ID, CONTAINER_TAG and the others
	// Docker's journald log driver adds, _SYSTEMD_UNIT, MESSAGE. A field
	// given more than once in an entry holds its first value; a field that
	// journalctl left out as too long (null) is missing.
	Fields map[string]string
	// Pos is the position just past this entry: Path is the stream's key
	// (Match.Key), Cursor this entry's cursor.
	Pos sources.Position
}

// value is one field as journalctl's JSON gives it: the bytes of each of
// its values (a field may be given more than once in an entry). A value
// journalctl left out as too long is nil; JSON gives no value as empty
// bytes, so "" and nil stay apart.
type value [][]byte

// DecodeEntry decodes one line of `journalctl --output=json`: an object
// whose values are strings, arrays of byte values (a value that is not
// printable UTF-8), null (a value longer than journalctl shows without
// --all), or arrays of those (a field given more than once). The entry
// must have __CURSOR and __REALTIME_TIMESTAMP. key is the stream's key,
// put in Pos.Path.
func DecodeEntry(line []byte, key string) (Entry, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, fmt.Errorf("journal entry: %w", err)
	}
	fields := make(entryFields, len(raw))
	for k, r := range raw {
		v, err := decodeValue(r)
		if err != nil {
			return Entry{}, fmt.Errorf("journal entry: field %s: %w", k, err)
		}
		fields[k] = v
	}
	cur := fields.first("__CURSOR")
	if len(cur) == 0 {
		return Entry{}, errors.New("journal entry: no __CURSOR")
	}
	rt, ok := fields.micros("__REALTIME_TIMESTAMP")
	if !ok {
		return Entry{}, errors.New("journal entry: no valid __REALTIME_TIMESTAMP")
	}
	e := Entry{
		Cursor:   string(cur),
		Realtime: time.UnixMicro(rt),
		Fields:   make(map[string]string, len(fields)),
		Pos:      sources.Position{Path: key, Cursor: string(cur)},
	}
	e.Time = e.Realtime
	if st, ok := fields.micros("_SOURCE_REALTIME_TIMESTAMP"); ok {
		e.Time = time.UnixMicro(st)
	}
	for k, v := range fields {
		if strings.HasPrefix(k, "__") {
			continue
		}
		if b := v.firstOK(); b != nil {
			e.Fields[k] = string(b)
		}
	}
	e.Line = fields.format()
	return e, nil
}

// decodeValue reads one field's JSON.
func decodeValue(r json.RawMessage) (value, error) {
	var list []json.RawMessage
	if len(r) > 0 && r[0] == '[' {
		if err := json.Unmarshal(r, &list); err != nil {
			return nil, err
		}
		if len(list) > 0 && list[0][0] != '"' && list[0][0] != '[' && list[0][0] != 'n' {
			b, err := decodeBytes(r)
			return value{b}, err
		}
	} else {
		list = []json.RawMessage{r}
	}
	if len(list) == 0 {
		return nil, errors.New("empty array")
	}
	v := make(value, len(list))
	for i, e := range list {
		switch e[0] {
		case '"':
			var s string
			if err := json.Unmarshal(e, &s); err != nil {
				return nil, err
			}
			v[i] = []byte(s)
		case '[':
			b, err := decodeBytes(e)
			if err != nil {
				return nil, err
			}
			v[i] = b
		case 'n':
			if string(e) != "null" {
				return nil, fmt.Errorf("bad value %s", e)
			}
		default:
			return nil, fmt.Errorf("bad value %.20s", e)
		}
	}
	return v, nil
}

// decodeBytes reads an array of byte values.
func decodeBytes(r json.RawMessage) ([]byte, error) {
	var ns []uint8
	if err := json.Unmarshal(r, &ns); err != nil {
		return nil, fmt.Errorf("bad byte array: %w", err)
	}
	if ns == nil {
		ns = []byte{}
	}
	return ns, nil
}

type entryFields map[string]value

// first is the field's first value, nil if it is missing or null.
func (f entryFields) first(k string) []byte { return f[k].firstOK() }

func (v value) firstOK() []byte {
	if len(v) == 0 {
		return nil
	}
	return v[0]
}

// micros reads a timestamp field: decimal microseconds.
func (f entryFields) micros(k string) (int64, bool) {
	b := f.first(k)
	if len(b) == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil && n >= 0
}

// format is formatJournalEntry of fail2ban's filtersystemd.py, for
// entries from journalctl. Values fail2ban's reader (python-systemd) would
// hold as bytes, not being UTF-8, are decoded with U+FFFD for each invalid
// sequence as Python's "replace" does. Where fail2ban fails on an entry (a
// host or identifier given more than once, a source timestamp that is not
// a number) moat takes the first value, or the next field, instead.
//
//   - _HOSTNAME, if not empty;
//   - SYSLOG_IDENTIFIER, or _COMM if that is missing or empty, followed by
//     "[PID]" (SYSLOG_PID, or _PID if that is missing, empty or 0; read as
//     Python's int() reads it, else as written, else as Python prints
//     bytes) and ":"; for the identifier "kernel" without a PID, also the
//     monotonic time in seconds ("[%12.6f]");
//   - MESSAGE ("" if missing; values of a MESSAGE given more than once
//     joined by spaces);
//
// joined by single spaces.
func (f entryFields) format() string {
	var parts []string
	if h := f.first("_HOSTNAME"); len(h) > 0 {
		parts = append(parts, pyDecode(h))
	}
	ident := f.first("SYSLOG_IDENTIFIER")
	if len(ident) == 0 {
		ident = f.first("_COMM")
	}
	if len(ident) > 0 {
		p := pyDecode(ident)
		pid, ok := pidText(f.first("SYSLOG_PID"))
		if !ok {
			pid, ok = pidText(f.first("_PID"))
		}
		if ok {
			p += "[" + pid + "]"
		}
		p += ":"
		parts = append(parts, p)
		if p == "kernel:" {
			mono, ok := f.micros("_SOURCE_MONOTONIC_TIMESTAMP")
			if !ok {
				mono, ok = f.micros("__MONOTONIC_TIMESTAMP")
			}
			if ok {
				parts = append(parts, fmt.Sprintf("[%12.6f]", float64(mono)/1e6))
			}
		}
	}
	var msg []string
	for _, m := range f["MESSAGE"] {
		if m != nil {
			msg = append(msg, pyDecode(m))
		}
	}
	parts = append(parts, strings.Join(msg, " "))
	return strings.ReplaceAll(strings.Join(parts, " "), "\n", `\n`)
}

// pidText is a PID field as fail2ban prints it, and whether it counts
// (python-systemd reads it with int(), and fail2ban skips a value that is
// missing, empty or 0): "%i" of int(b), else of int(b, 0), else the bytes
// as Python's repr prints them.
func pidText(b []byte) (string, bool) {
	if b == nil {
		return "", false
	}
	if n, ok := pyInt(b, false); ok {
		return n.String(), n.Sign() != 0
	}
	if len(b) == 0 {
		return "", false
	}
	if n, ok := pyInt(b, true); ok {
		return n.String(), true
	}
	return pyBytesRepr(b), true
}

// pyMaxDigits is Python's limit on the digits of a decimal int() (since
// 3.11; sys.get_int_max_str_digits).
const pyMaxDigits = 4300

// pyInt reads b as Python's int(b) (base 10) or int(b, 0) (base0: a
// 0x/0o/0b prefix picks the base, and a decimal may not start with 0
// unless it is all zeros) does: ASCII whitespace around, a sign, and
// digits with single underscores between them.
func pyInt(b []byte, base0 bool) (*big.Int, bool) {
	s := strings.Trim(string(b), " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	if base0 && len(s) >= 2 && s[0] == '0' {
		switch s[1] {
		case 'x', 'X':
			base = 16
		case 'o', 'O':
			base = 8
		case 'b', 'B':
			base = 2
		}
		if base != 10 {
			s = s[2:]
			if s != "" && s[0] == '_' {
				s = s[1:]
			}
		}
	}
	var digits strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			if i == 0 || i == len(s)-1 || s[i+1] == '_' {
				return nil, false
			}
			continue
		}
		digits.WriteByte(s[i])
	}
	d := digits.String()
	if d == "" || base == 10 && len(d) > pyMaxDigits {
		return nil, false
	}
	if base0 && base == 10 && d[0] == '0' && strings.Trim(d, "0") != "" {
		return nil, false
	}
	n, ok := new(big.Int).SetString(d, base)
	if !ok {
		return nil, false
	}
	if neg {
		n.Neg(n)
	}
	return n, true
}

// pyBytesRepr is Python's repr of a bytes object: b'...', or b"..." when
// it holds a ' and no ".
func pyBytesRepr(b []byte) string {
	q := byte('\'')
	if strings.IndexByte(string(b), '\'') >= 0 && strings.IndexByte(string(b), '"') < 0 {
		q = '"'
	}
	var s strings.Builder
	s.WriteByte('b')
	s.WriteByte(q)
	for _, c := range b {
		switch {
		case c == q || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c == '\t':
			s.WriteString(`\t`)
		case c == '\n':
			s.WriteString(`\n`)
		case c == '\r':
			s.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&s, `\x%02x`, c)
		default:
			s.WriteByte(c)
		}
	}
	s.WriteByte(q)
	return s.String()
}

// pyDecode decodes b as Python's bytes.decode("utf-8", "replace") does.
func pyDecode(b []byte) string { return pytext.Decode(string(b)) }
