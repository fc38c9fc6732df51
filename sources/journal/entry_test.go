package journal

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatproj/moat/internal/testkit"
)

// fail2banPython is a python3 that has fail2ban and python-systemd (the
// reference for formatting), or the test ends (Missing).
func fail2banPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-c", "import systemd.journal, fail2ban.server.filtersystemd").CombinedOutput()
		if err == nil {
			return path
		}
		tried = append(tried, path+": "+strings.TrimSpace(string(out)))
	}
	testkit.Missing(t, "no python3 with fail2ban and python-systemd (Debian's fail2ban and python3-systemd; .ci/run installs them): %q", tried)
	return ""
}

// refLine is one entry as fail2ban formats it.
type refLine struct {
	Cursor string  `json:"cursor"`
	Line   string  `json:"line"`
	Time   float64 `json:"time"`
}

// fail2banFormat runs testdata/fail2ban_format.py with args and stdin.
func fail2banFormat(t *testing.T, stdin []byte, args ...string) []refLine {
	t.Helper()
	py := fail2banPython(t)
	cmd := exec.Command(py, append([]string{"testdata/fail2ban_format.py"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fail2ban_format.py: %v\n%s", err, stderr.String())
	}
	var refs []refLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r refLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("fail2ban_format.py printed %q: %v", sc.Text(), err)
		}
		refs = append(refs, r)
	}
	return refs
}

// rawEntry is an entry as journald stores it: each field's values.
type rawEntry map[string][]string

// journalJSON is e as `journalctl --output=json` prints it: a value that
// is not printable UTF-8 as an array of its bytes, a field given more than
// once as an array of its values.
func (e rawEntry) journalJSON() []byte {
	enc := func(v string) any {
		printable := utf8.ValidString(v) && !strings.ContainsFunc(v, func(r rune) bool {
			return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f
		})
		if printable {
			return v
		}
		ns := make([]int, len(v))
		for i := range len(v) {
			ns[i] = int(v[i])
		}
		return ns
	}
	obj := map[string]any{}
	for k, vs := range e {
		if len(vs) == 1 {
			obj[k] = enc(vs[0])
			continue
		}
		var list []any
		for _, v := range vs {
			list = append(list, enc(v))
		}
		obj[k] = list
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return b
}

// rawJSON is e for fail2ban_format.py raw: values in base64.
func (e rawEntry) rawJSON() []byte {
	obj := map[string][]string{}
	for k, vs := range e {
		for _, v := range vs {
			obj[k] = append(obj[k], base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	b, _ := json.Marshal(obj)
	return b
}

// formatCases are entries whose lines exercise every branch of
// formatJournalEntry, and Python's decoding and int() around it.
func formatCases() []rawEntry {
	base := func(kv ...string) rawEntry {
		e := rawEntry{
			"__CURSOR":              {"s=0123456789abcdef0123456789abcdef;i=1"},
			"__REALTIME_TIMESTAMP":  {"1796694042152040"},
			"__MONOTONIC_TIMESTAMP": {"23675105772"},
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "\x00absent" {
				delete(e, kv[i])
				continue
			}
			e[kv[i]] = append(e[kv[i]], kv[i+1])
		}
		return e
	}
	cases := []rawEntry{
		base("_HOSTNAME", "vm", "SYSLOG_IDENTIFIER", "sshd", "_PID", "812", "MESSAGE", "Failed password for root from 203.0.113.5 port 22 ssh2"),
		base("SYSLOG_IDENTIFIER", "sshd", "_COMM", "sshd", "MESSAGE", "no host, no pid"),
		base("_HOSTNAME", "", "SYSLOG_IDENTIFIER", "", "_COMM", "nginx", "_PID", "9", "MESSAGE", "empty host and identifier"),
		base("MESSAGE", "neither identifier nor command"),
		base("_HOSTNAME", "vm", "_COMM", "x"),
		base("_HOSTNAME", "vm", "SYSLOG_IDENTIFIER", "x", "_PID", "5", "MESSAGE", "line one\nline two\r\tend"),
		base("SYSLOG_IDENTIFIER", "kernel", "_SOURCE_MONOTONIC_TIMESTAMP", "123456789", "MESSAGE", "kernel line"),
		base("SYSLOG_IDENTIFIER", "kernel", "MESSAGE", "kernel line, journal monotonic"),
		base("SYSLOG_IDENTIFIER", "kernel", "_PID", "1", "MESSAGE", "not the kernel's format"),
		base("SYSLOG_IDENTIFIER", "x", "MESSAGE", "several", "MESSAGE", "messages\xff", "MESSAGE", ""),
		base("SYSLOG_IDENTIFIER", "x", "_SOURCE_REALTIME_TIMESTAMP", "1796694000000001", "MESSAGE", "source time"),
		base("_HOSTNAME", "h\xffst", "SYSLOG_IDENTIFIER", "id\xc3", "MESSAGE", "\x1b[31mcolour\x1b[0m"),
	}
	for _, pid := range []string{
		"0x1f", "abc", "", "0", "-0", " 12 ", "\t7\n", "1_000", "1__0", "_1", "1_", "-5", "+6",
		"007", "0o17", "0b_101", "0X1F", "00", "0_0", "0x", "1e3", "12a", "١٢", "'q", `a"b'c`,
		"\x01\xff\\", strings.Repeat("9", 4300), strings.Repeat("9", 4301),
	} {
		cases = append(cases, base("_HOSTNAME", "vm", "SYSLOG_IDENTIFIER", "app", "SYSLOG_PID", pid, "_PID", "42", "MESSAGE", "pid "+pid))
	}
	for _, m := range []string{
		"a\xe2\x82Ab\xffc", "\xed\xa0\x80", "\xf0\x9f\x98", "\xf0\x9f\x98!", "\xf4\x90\x80\x80",
		"\xc0\xaf", "\xe0\x80\x80", "\xe0\xa0", "\xf1\x80\x80", "\x80\x80", "ok \xc3\xa9 \xe2\x82\xac",
	} {
		cases = append(cases, base("SYSLOG_IDENTIFIER", "bin", "_PID", "3", "MESSAGE", m))
	}
	return cases
}

// TestFormatAsFail2ban: each entry, as journalctl prints it in JSON, is
// decoded into the line and time fail2ban's own formatJournalEntry gives
// for the same entry read through python-systemd.
func TestFormatAsFail2ban(t *testing.T) {
	cases := formatCases()
	var in bytes.Buffer
	for _, c := range cases {
		in.Write(c.rawJSON())
		in.WriteByte('\n')
	}
	refs := fail2banFormat(t, in.Bytes(), "raw")
	if len(refs) != len(cases) {
		t.Fatalf("fail2ban formatted %d entries, want %d", len(refs), len(cases))
	}
	for i, c := range cases {
		e, err := DecodeEntry(c.journalJSON(), "journal:")
		if err != nil {
			t.Errorf("case %d: DecodeEntry(%s): %v", i, c.journalJSON(), err)
			continue
		}
		if e.Line != refs[i].Line {
			t.Errorf("case %d (%q):\n got  %q\n want %q", i, c["MESSAGE"], e.Line, refs[i].Line)
		}
		if got := float64(e.Time.UnixMicro()) / 1e6; math.Abs(got-refs[i].Time) > 2e-6 {
			t.Errorf("case %d: time %f, fail2ban's %f", i, got, refs[i].Time)
		}
	}
}

// TestDecodeEntry: the fields, cursor, times and position of a decoded
// entry; a null (too long) field and a binary field.
func TestDecodeEntry(t *testing.T) {
	line := `{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1796694042152040","__MONOTONIC_TIMESTAMP":"5",` +
		`"_HOSTNAME":"vm","SYSLOG_IDENTIFIER":"web","_PID":"77","CONTAINER_NAME":"web-1","CONTAINER_ID":"0123456789ab",` +
		`"CONTAINER_TAG":"web","MESSAGE":[104,105,255],"LONG":null,"TWICE":["a",[98,255]]}`
	e, err := DecodeEntry([]byte(line), "journal:CONTAINER_NAME=web-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Cursor != "s=1;i=2" || e.Pos.Cursor != e.Cursor || e.Pos.Path != "journal:CONTAINER_NAME=web-1" {
		t.Errorf("cursor %q, position %+v", e.Cursor, e.Pos)
	}
	want := time.UnixMicro(1796694042152040)
	if !e.Realtime.Equal(want) || !e.Time.Equal(want) {
		t.Errorf("Realtime %v, Time %v, want %v", e.Realtime, e.Time, want)
	}
	if e.Line != "vm web[77]: hi\ufffd" {
		t.Errorf("Line = %q", e.Line)
	}
	for k, v := range map[string]string{
		"CONTAINER_NAME": "web-1", "CONTAINER_ID": "0123456789ab", "CONTAINER_TAG": "web",
		"MESSAGE": "hi\xff", "TWICE": "a",
	} {
		if e.Fields[k] != v {
			t.Errorf("Fields[%s] = %q, want %q", k, e.Fields[k], v)
		}
	}
	for _, k := range []string{"LONG", "__CURSOR", "__REALTIME_TIMESTAMP"} {
		if _, ok := e.Fields[k]; ok {
			t.Errorf("Fields has %s", k)
		}
	}
	// A MESSAGE journalctl left out (null) formats as a missing one.
	e, err = DecodeEntry([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"x","MESSAGE":null}`), "k")
	if err != nil || e.Line != "x: " {
		t.Errorf("null MESSAGE: %q, %v", e.Line, err)
	}
	for _, bad := range []string{
		`{"__REALTIME_TIMESTAMP":"1"}`,
		`{"__CURSOR":"c"}`,
		`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"x"}`,
		`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","M":[256]}`,
		`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","M":[1,"a"]}`,
		`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","M":5}`,
		`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","M":[]}`,
		`["__CURSOR"]`,
		`{"__CURSOR":"c",`,
	} {
		if _, err := DecodeEntry([]byte(bad), "k"); err == nil {
			t.Errorf("DecodeEntry(%s) succeeded", bad)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, c := range formatCases() {
		f.Add(c.journalJSON())
	}
	f.Add([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":null,"X":[[1,2],null,"a"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b, "journal:k")
		if err != nil {
			return
		}
		if e.Cursor == "" || e.Pos.Cursor != e.Cursor || e.Pos.Path != "journal:k" {
			t.Fatalf("cursor %q, position %+v", e.Cursor, e.Pos)
		}
		if strings.Contains(e.Line, "\n") {
			t.Fatalf("line holds a newline: %q", e.Line)
		}
		if !utf8.ValidString(e.Line) {
			t.Fatalf("line is not UTF-8: %q", e.Line)
		}
		for k := range e.Fields {
			if strings.HasPrefix(k, "__") {
				t.Fatalf("Fields holds %s", k)
			}
		}
	})
}
