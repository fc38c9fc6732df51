package docker

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// decoded is one Decode result.
type decoded struct {
	text string
	time string // RFC 3339; "" for the zero time
	ok   bool
	err  string // substring; "" for no error
}

func entry(log, stream, t string) string {
	b, _ := json.Marshal(map[string]string{"log": log, "stream": stream, "time": t})
	return string(b)
}

const (
	t1 = "2026-11-27T03:04:05.123456789Z"
	t2 = "2026-11-27T03:04:06Z"
	t3 = "2026-11-27T03:04:07.5+01:00"
)

var long16k = strings.Repeat("a", 16<<10)

var decodeTests = []struct {
	name  string
	lines []string
	want  []decoded
}{
	{"stdout", []string{`{"log":"Failed password for root from 192.0.2.7 port 22\n","stream":"stdout","time":"` + t1 + `"}`},
		[]decoded{{text: "Failed password for root from 192.0.2.7 port 22", time: t1, ok: true}}},
	{"stderr", []string{`{"log":"error: bad token\n","stream":"stderr","time":"` + t2 + `"}`},
		[]decoded{{text: "error: bad token", time: t2, ok: true}}},
	{"offset time", []string{`{"log":"x\n","stream":"stdout","time":"` + t3 + `"}`},
		[]decoded{{text: "x", time: t3, ok: true}}},
	{"empty line", []string{`{"log":"\n","stream":"stdout","time":"` + t1 + `"}`},
		[]decoded{{text: "", time: t1, ok: true}}},
	{"tty carriage return", []string{`{"log":"login failed\r\n","stream":"stdout","time":"` + t1 + `"}`},
		[]decoded{{text: "login failed", time: t1, ok: true}}},
	{"escapes", []string{`{"log":"GET \"/a\\b\" \t\u003cscript\u003e \u0026 \/x\u0000\n","stream":"stdout","time":"` + t1 + `"}`},
		[]decoded{{text: "GET \"/a\\b\" \t<script> & /x\x00", time: t1, ok: true}}},
	{"unicode raw and escaped", []string{`{"log":"utilisateur «root» \u00e9chec ✓ \ud83d\ude00\n","stream":"stdout","time":"` + t1 + `"}`},
		[]decoded{{text: "utilisateur «root» échec ✓ 😀", time: t1, ok: true}}},
	{"lone surrogate and invalid utf-8", []string{"{\"log\":\"a\\ud800b\xffc\\n\",\"stream\":\"stdout\",\"time\":\"" + t1 + "\"}"},
		[]decoded{{text: "a\uFFFDb\uFFFDc", time: t1, ok: true}}},
	{"attrs and key order", []string{`{"time":"` + t1 + `","attrs":{"tag":"web","n":[1,2.5e3,-0.1,true,false,null,{}]},"stream":"stdout","log":"hi\n"}`},
		[]decoded{{text: "hi", time: t1, ok: true}}},
	{"spaces around tokens", []string{` { "log" : "hi\n" , "stream" : "stdout" , "time" : "` + t1 + `" } `},
		[]decoded{{text: "hi", time: t1, ok: true}}},
	{"no time", []string{`{"log":"hi\n","stream":"stdout"}`},
		[]decoded{{text: "hi", ok: true}}},
	{"partial joined", []string{
		entry(long16k, "stdout", t1),
		entry(long16k, "stdout", t2),
		entry("end\n", "stdout", t3),
	}, []decoded{{}, {}, {text: long16k + long16k + "end", time: t1, ok: true}}},
	{"partials interleaved by stream", []string{
		entry("out-a ", "stdout", t1),
		entry("err-a ", "stderr", t2),
		entry("whole\n", "stdout", t2), // ends the stdout line
		entry("err-b\n", "stderr", t3),
		entry("next\n", "stdout", t3),
	}, []decoded{{}, {}, {text: "out-a whole", time: t1, ok: true}, {text: "err-a err-b", time: t2, ok: true}, {text: "next", time: t3, ok: true}}},
	{"garbage between partials keeps them", []string{
		entry("a", "stdout", t1),
		`not json`,
		entry("b\n", "stdout", t2),
	}, []decoded{{}, {err: "want '{'"}, {text: "ab", time: t1, ok: true}}},
	{"too long partial capped", []string{
		entry(strings.Repeat("x", 40<<10), "stdout", t1),
		entry(strings.Repeat("y", 40<<10), "stdout", t1),
		entry(strings.Repeat("z", 40<<10)+"\n", "stdout", t2),
		entry("after\n", "stdout", t3),
	}, []decoded{{}, {}, {text: strings.Repeat("x", 40<<10) + strings.Repeat("y", 24<<10), time: t1, ok: true}, {text: "after", time: t3, ok: true}}},
	{"too long whole line capped", []string{entry(strings.Repeat("w", MaxLine+10)+"\n", "stdout", t1)},
		[]decoded{{text: strings.Repeat("w", MaxLine), time: t1, ok: true}}},

	{"plain text", []string{"Nov 27 03:04:05 host sshd[1]: Failed password"}, []decoded{{err: "want '{'"}}},
	{"empty input", []string{""}, []decoded{{err: "want '{'"}}},
	{"truncated", []string{`{"log":"hi\n","stream":"std`}, []decoded{{err: "unterminated string"}}},
	{"no log field", []string{`{"stream":"stdout","time":"` + t1 + `"}`}, []decoded{{err: `no "log" field`}}},
	{"log not a string", []string{`{"log":42,"time":"` + t1 + `"}`}, []decoded{{err: "want a string"}}},
	{"bad time", []string{`{"log":"hi\n","time":"yesterday"}`}, []decoded{{err: `bad "time"`}}},
	{"trailing data", []string{`{"log":"hi\n"} {}`}, []decoded{{err: "trailing data"}}},
	{"two objects", []string{`{"log":"a\n"}{"log":"b\n"}`}, []decoded{{err: "trailing data"}}},
	{"bad escape", []string{`{"log":"\q\n"}`}, []decoded{{err: "bad escape"}}},
	{"bad unicode escape", []string{`{"log":"\u12G4\n"}`}, []decoded{{err: `bad \u escape`}}},
	{"raw control character", []string{"{\"log\":\"a\tb\\n\"}"}, []decoded{{err: "control character"}}},
	{"missing colon", []string{`{"log" "hi"}`}, []decoded{{err: "want ':'"}}},
	{"array", []string{`["log","hi"]`}, []decoded{{err: "want '{'"}}},
	{"deep attrs", []string{`{"attrs":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"log":"x\n"}`}, []decoded{{err: "nested too deep"}}},
	{"bad number", []string{`{"n":01,"log":"x\n"}`}, []decoded{{err: "want ',' or '}'"}}},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder()
			for i, line := range tt.lines {
				text, tm, ok, err := d.Decode([]byte(line))
				w := tt.want[i]
				if w.err != "" {
					if err == nil || !strings.Contains(err.Error(), w.err) || !errors.Is(err, ErrNotEntry) {
						t.Errorf("line %d: error = %v, want one containing %q wrapping ErrNotEntry", i, err, w.err)
					}
					if ok {
						t.Errorf("line %d: ok with an error", i)
					}
					continue
				}
				if err != nil {
					t.Errorf("line %d: %v", i, err)
					continue
				}
				if ok != w.ok || text != w.text {
					t.Errorf("line %d: Decode = %q (%d bytes), ok %v; want %q (%d bytes), ok %v",
						i, short(text), len(text), ok, short(w.text), len(w.text), w.ok)
				}
				var wantT time.Time
				if w.time != "" {
					wantT, _ = time.Parse(time.RFC3339Nano, w.time)
				}
				if !tm.Equal(wantT) {
					t.Errorf("line %d: time = %v, want %v", i, tm, wantT)
				}
			}
		})
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:30] + "…" + s[len(s)-30:]
	}
	return s
}

func TestDecodeTooManyStreams(t *testing.T) {
	d := NewDecoder()
	for i := range maxStreams {
		if _, _, ok, err := d.Decode([]byte(entry("part", string(rune('a'+i)), t1))); ok || err != nil {
			t.Fatalf("piece %d: ok %v err %v", i, ok, err)
		}
	}
	_, _, _, err := d.Decode([]byte(entry("part", "z", t1)))
	if err == nil || !strings.Contains(err.Error(), "streams") {
		t.Fatalf("piece on a fifth stream: err = %v, want a bound error", err)
	}
	// The earlier streams still join.
	text, _, ok, err := d.Decode([]byte(entry("!\n", "a", t2)))
	if !ok || err != nil || text != "part!" {
		t.Errorf("Decode = %q, %v, %v; want \"part!\"", text, ok, err)
	}
}

// FuzzDecoder checks Decode against encoding/json on single entries: whatever
// encoding/json reads as an object with a string "log" Decode reads the same,
// and Decode never accepts what encoding/json rejects.
// refEntry reads a json-file entry with encoding/json, keys matched
// exactly: the "log", "stream" and "time" values, nil when absent or null.
func refEntry(line []byte, log, stream, tm **string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	for k, dst := range map[string]**string{"log": log, "stream": stream, "time": tm} {
		if raw, ok := m[k]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func FuzzDecoder(f *testing.F) {
	for _, tt := range decodeTests {
		for _, l := range tt.lines {
			if len(l) < 4096 {
				f.Add([]byte(l))
			}
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		d := NewDecoder()
		text, tm, ok, err := d.Decode(line)
		if err != nil && !errors.Is(err, ErrNotEntry) {
			t.Fatalf("error %v does not wrap ErrNotEntry", err)
		}
		if ok && !utf8.ValidString(text) && utf8.Valid(line) {
			t.Fatalf("valid input gave invalid UTF-8 %q", text)
		}
		// The reference reads the keys exactly, as Docker writes them (a
		// struct would match them case-insensitively: "tiMe" as "time").
		var ref struct{ Log, Stream, Time *string }
		refErr := refEntry(line, &ref.Log, &ref.Stream, &ref.Time)
		if refErr != nil {
			if err == nil {
				t.Fatalf("Decode accepted %q, encoding/json: %v", line, refErr)
			}
			return
		}
		if !json.Valid(line) || line[firstNonSpace(line)] != '{' {
			return
		}
		if ref.Log == nil {
			if err == nil {
				t.Fatalf("Decode accepted %q without a log field", line)
			}
			return
		}
		if ref.Time != nil {
			if _, perr := time.Parse(time.RFC3339Nano, *ref.Time); perr != nil {
				if err == nil {
					t.Fatalf("Decode accepted bad time %q", *ref.Time)
				}
				return
			}
		}
		if err != nil && strings.Contains(err.Error(), "nested too deep") {
			return // a bound encoding/json does not have
		}
		if err != nil {
			t.Fatalf("Decode(%q): %v; encoding/json reads log %q", line, err, *ref.Log)
		}
		want := *ref.Log
		complete := strings.HasSuffix(want, "\n")
		if complete != ok {
			t.Fatalf("Decode(%q) ok = %v, want %v", line, ok, complete)
		}
		if !complete {
			return
		}
		want = strings.TrimSuffix(strings.TrimSuffix(want, "\n"), "\r")
		if len(want) > MaxLine {
			want = want[:MaxLine]
		}
		if text != want {
			t.Fatalf("Decode(%q) = %q, encoding/json gives %q", line, text, want)
		}
		if ref.Time != nil {
			wt, _ := time.Parse(time.RFC3339Nano, *ref.Time)
			if !tm.Equal(wt) {
				t.Fatalf("time %v, want %v", tm, wt)
			}
		}
	})
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return i
		}
	}
	return 0
}

func BenchmarkDecode(b *testing.B) {
	lines := [][]byte{
		[]byte(`{"log":"Nov 27 03:04:05 web sshd[812]: Failed password for invalid user admin from 192.0.2.7 port 52144 ssh2\n","stream":"stdout","time":"2026-11-27T03:04:05.123456789Z"}`),
		[]byte(`{"log":"192.0.2.7 - - [27/Nov/2026:03:04:05 +0000] \"GET /wp-login.php HTTP/1.1\" 404 153 \"-\" \"Mozilla/5.0\"\n","stream":"stdout","time":"2026-11-27T03:04:05.123456789Z"}`),
	}
	d := NewDecoder()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, ok, err := d.Decode(lines[i&1]); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
