package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// entryKeys is the fixed key order of an access log line.
var entryKeys = []string{"time", "client", "host", "method", "path", "status", "bytes", "duration", "upstream", "rate_limited"}

// decodedEntry is an access log line read back with encoding/json.
type decodedEntry struct {
	Time        string  `json:"time"`
	Client      string  `json:"client"`
	Host        string  `json:"host"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Status      int     `json:"status"`
	Bytes       int64   `json:"bytes"`
	Duration    float64 `json:"duration"`
	Upstream    string  `json:"upstream"`
	RateLimited bool    `json:"rate_limited"`
}

// decodeAccessLine checks that line is one JSON object with exactly the keys of
// entryKeys in order, and decodes it.
func decodeAccessLine(t testing.TB, line []byte) decodedEntry {
	t.Helper()
	if n := bytes.Count(line, []byte("\n")); n != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("line %q has %d newlines, want exactly one at its end", line, n)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("line %q: first token %v, %v", line, tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("line %q: key: %v", line, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %q: value of %s: %v", line, tok, err)
		}
	}
	if strings.Join(keys, ",") != strings.Join(entryKeys, ",") {
		t.Fatalf("line %q: keys %v, want %v", line, keys, entryKeys)
	}
	var d decodedEntry
	dc := json.NewDecoder(bytes.NewReader(line))
	dc.DisallowUnknownFields()
	if err := dc.Decode(&d); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	if _, err := dc.Token(); err != io.EOF {
		t.Fatalf("line %q: data after the object", line)
	}
	return d
}

// jsonCanonical is what encoding/json makes of s after a round trip (invalid
// UTF-8 becomes U+FFFD).
func jsonCanonical(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}

var alTime = time.Date(2026, 11, 27, 3, 4, 5, 123456789, time.UTC)

var entryCases = []struct {
	name string
	e    Entry
}{
	{"plain", Entry{Time: alTime, Client: netip.MustParseAddr("192.0.2.1"), Host: "app.example.com", Method: "GET",
		Path: "/index.html?q=1", Status: 200, Bytes: 1234, Duration: 1500 * time.Microsecond, Upstream: "127.0.0.1:8080"}},
	{"rate limited v6", Entry{Time: alTime, Client: netip.MustParseAddr("2001:db8::7"), Host: "x", Method: "POST",
		Path: "/login", Status: 429, Duration: 3 * time.Second, RateLimited: true}},
	{"empty", Entry{}},
	{"mapped client", Entry{Time: alTime, Client: netip.MustParseAddr("::ffff:198.51.100.4"), Status: 404}},
	{"forged key in path", Entry{Time: alTime, Client: netip.MustParseAddr("192.0.2.2"), Method: "GET",
		Path: `/x","client":"203.0.113.9","status":404,"`, Status: 200}},
	{"forged key in host", Entry{Time: alTime, Client: netip.MustParseAddr("192.0.2.3"),
		Host: `h"}` + "\n" + `{"time":"2026-01-01T00:00:00.000000Z","client":"203.0.113.9"`, Status: 200}},
	{"newlines and controls", Entry{Time: alTime, Host: "a\r\nb\tc\x00d\x1b\x7f", Path: "/\n/\u2028\u2029", Method: "G\\ET"}},
	{"invalid utf8", Entry{Time: alTime, Host: "\xff\xfe", Path: "/caf\xc3\xa9/\xc3(/\xed\xa0\x80", Upstream: "\x80"}},
	{"backslash before quote", Entry{Time: alTime, Path: `\\"\\`, Host: `\`}},
	{"negative duration", Entry{Time: alTime, Duration: -time.Second, Status: 500}},
	{"local time zone", Entry{Time: time.Date(2026, 11, 27, 5, 4, 5, 0, time.FixedZone("EET", 2*3600)), Status: 301}},
}

func TestAppendEntry(t *testing.T) {
	for _, c := range entryCases {
		t.Run(c.name, func(t *testing.T) {
			line := appendEntry(nil, c.e)
			checkEntryLine(t, c.e, line)
		})
	}
}

// checkEntryLine asserts that line decodes to the values of e.
func checkEntryLine(t testing.TB, e Entry, line []byte) {
	t.Helper()
	d := decodeAccessLine(t, line)
	tm, err := time.Parse(time.RFC3339Nano, d.Time)
	if err != nil {
		t.Fatalf("time %q: %v", d.Time, err)
	}
	if want := e.Time.Truncate(time.Microsecond); !tm.Equal(want) || tm.Location() != time.UTC {
		t.Errorf("time = %s, want %s in UTC", d.Time, want.UTC())
	}
	wantClient := ""
	if e.Client.IsValid() {
		wantClient = e.Client.Unmap().WithZone("").String()
	}
	if d.Client != wantClient {
		t.Errorf("client = %q, want %q", d.Client, wantClient)
	}
	for _, f := range []struct{ name, got, want string }{
		{"host", d.Host, e.Host}, {"method", d.Method, e.Method}, {"path", d.Path, e.Path}, {"upstream", d.Upstream, e.Upstream},
	} {
		if f.got != jsonCanonical(f.want) {
			t.Errorf("%s = %q, want %q", f.name, f.got, jsonCanonical(f.want))
		}
	}
	if d.Status != e.Status || d.Bytes != e.Bytes || d.RateLimited != e.RateLimited {
		t.Errorf("status, bytes, rate_limited = %d, %d, %v; want %d, %d, %v", d.Status, d.Bytes, d.RateLimited, e.Status, e.Bytes, e.RateLimited)
	}
	wantDur := max(e.Duration, 0).Truncate(time.Microsecond)
	if got := time.Duration(d.Duration * 1e6 * float64(time.Microsecond)).Round(time.Microsecond); got != wantDur {
		t.Errorf("duration = %v (%s), want %v", d.Duration, got, wantDur)
	}
}

func TestAppendEntryText(t *testing.T) {
	// The exact text, so that the filter's regexes and the format agree.
	e := entryCases[0].e
	want := `{"time":"2026-11-27T03:04:05.123456Z","client":"192.0.2.1","host":"app.example.com","method":"GET",` +
		`"path":"/index.html?q=1","status":200,"bytes":1234,"duration":0.001500,"upstream":"127.0.0.1:8080","rate_limited":false}` + "\n"
	if got := string(appendEntry(nil, e)); got != want {
		t.Errorf("appendEntry =\n%s want\n%s", got, want)
	}
	// A forged key inside a value stays escaped: the literal text
	// "client":"203.0.113.9" never appears unescaped.
	got := appendEntry(nil, entryCases[4].e)
	if bytes.Contains(got, []byte(`"client":"203.0.113.9"`)) {
		t.Errorf("forged key appears unescaped: %s", got)
	}
}

func TestAppendEntryAllocs(t *testing.T) {
	b := make([]byte, 0, 1024)
	e := entryCases[0].e
	if n := testing.AllocsPerRun(100, func() { b = appendEntry(b[:0], e) }); n != 0 {
		t.Errorf("appendEntry allocates %v times, want 0", n)
	}
}

func FuzzAppendEntry(f *testing.F) {
	for _, c := range entryCases {
		f.Add(c.e.Host, c.e.Method, c.e.Path, c.e.Upstream, c.e.Status, c.e.Time.UnixNano())
	}
	f.Fuzz(func(t *testing.T, host, method, path, upstream string, status int, ns int64) {
		e := Entry{Time: time.Unix(0, ns), Client: netip.MustParseAddr("192.0.2.5"), Host: host, Method: method,
			Path: path, Upstream: upstream, Status: status}
		checkEntryLine(t, e, appendEntry(nil, e))
	})
}

// readEntries returns the lines of the files, each checked to decode.
func readEntries(t *testing.T, paths ...string) []decodedEntry {
	t.Helper()
	var out []decodedEntry
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.SplitAfter(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			out = append(out, decodeAccessLine(t, line))
		}
	}
	return out
}

func accessTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(accessTestWriter{t}, nil))
}

type accessTestWriter struct{ t *testing.T }

func (w accessTestWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func alEntry(i int) Entry {
	return Entry{Time: alTime.Add(time.Duration(i) * time.Second), Client: netip.MustParseAddr("192.0.2.1"),
		Method: "GET", Path: fmt.Sprintf("/%d", i), Status: 200}
}

func TestAccessLogCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	for i := range 10 {
		a.Write(alEntry(i))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(99)) // dropped, no panic
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	got := readEntries(t, path)
	if len(got) != 10 {
		t.Fatalf("%d entries after Close, want 10", len(got))
	}
	for i, d := range got {
		if d.Path != fmt.Sprintf("/%d", i) {
			t.Errorf("entry %d path %q", i, d.Path)
		}
	}
}

func TestAccessLogAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, appendEntry(nil, alEntry(0)), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readEntries(t, path); len(got) != 2 || got[0].Path != "/0" || got[1].Path != "/1" {
		t.Errorf("entries = %+v, want /0 then /1", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of an existing file changed to %v", fi.Mode().Perm())
	}
}

func TestOpenAccessLogError(t *testing.T) {
	_, err := OpenAccessLog(filepath.Join(t.TempDir(), "no", "such", "dir", "access.log"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "open access log: ") {
		t.Errorf("OpenAccessLog in a missing dir = %v, want an open access log error", err)
	}
}

func TestAccessLogFlushesWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Write(alEntry(1))
	// The background flush runs every 100 ms; wait for it with a generous
	// bound (this is no timing assertion).
	for deadline := time.Now().Add(10 * time.Second); ; {
		data, _ := os.ReadFile(path)
		if len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry never flushed without Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(0))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(1)) // still the old file: rotation is not yet known
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(2))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := readEntries(t, path+".1"), readEntries(t, path)
	if len(old) != 2 || old[0].Path != "/0" || old[1].Path != "/1" {
		t.Errorf("rotated file = %+v, want /0, /1", old)
	}
	if len(cur) != 1 || cur[0].Path != "/2" {
		t.Errorf("new file = %+v, want /2", cur)
	}
}

func TestAccessLogReopenError(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// The directory goes away: Reopen fails and the open file stays in use.
	if err := os.Rename(sub, filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(0))
	if err := a.Reopen(); err == nil {
		t.Error("Reopen with the directory gone = nil, want an error")
	}
	a.Write(alEntry(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readEntries(t, filepath.Join(dir, "gone", "access.log")); len(got) != 2 {
		t.Errorf("%d entries kept in the open file, want 2", len(got))
	}
}

// TestAccessLogCheckLogsOnce checks that a rotation that cannot be
// followed (the directory went away) is logged once, not every second, and
// that the entries stay in the open file.
func TestAccessLogCheckLogsOnce(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var logged countingHandler
	a, err := OpenAccessLog(filepath.Join(sub, "access.log"), slog.New(&logged))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sub, filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.Write(alEntry(i))
		a.checkRotated()
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := logged.errors.Load(); n != 1 {
		t.Errorf("%d errors logged for 3 failed checks, want 1", n)
	}
	if got := readEntries(t, filepath.Join(dir, "gone", "access.log")); len(got) != 3 {
		t.Errorf("%d entries in the open file, want 3", len(got))
	}
}

// countingHandler counts the error records logged through it.
type countingHandler struct{ errors atomic.Int64 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestAccessLogDetectsRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(0))
	a.flush()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	a.checkRotated()
	a.Write(alEntry(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readEntries(t, path); len(got) != 1 || got[0].Path != "/1" {
		t.Errorf("after removal the file holds %+v, want /1", got)
	}
}

// TestAccessLogRotateWhileWriting renames the log under writers that run
// concurrently, several times, and checks that every entry is in exactly one
// of the files, whole.
func TestAccessLogRotateWhileWriting(t *testing.T) {
	for _, c := range []struct {
		name   string
		notice func(a *AccessLog) // how the log learns of the rename
	}{
		{"Reopen", func(a *AccessLog) {
			if err := a.Reopen(); err != nil {
				t.Error(err)
			}
		}},
		{"inode check", (*AccessLog).checkRotated},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			a, err := OpenAccessLog(path, accessTestLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			const writers, each, rotations = 4, 5000, 5
			var wg sync.WaitGroup
			var written atomic.Int64
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						e := alEntry(i)
						e.Path = fmt.Sprintf("/%d/%d", w, i)
						a.Write(e)
						written.Add(1)
					}
				})
			}
			files := []string{path}
			for r := range rotations {
				// Rotate while the writers write: each rotation once they
				// got a further share of their entries written.
				share := int64((r + 1) * writers * each / (rotations + 1))
				testkit.WaitFor(t, 10*time.Second, "the writers to get ahead", func() bool { return written.Load() >= share })
				old := fmt.Sprintf("%s.%d", path, r)
				if err := os.Rename(path, old); err != nil {
					t.Fatal(err)
				}
				files = append(files, old)
				c.notice(a)
			}
			wg.Wait()
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, d := range readEntries(t, files...) {
				seen[d.Path]++
			}
			for w := range writers {
				for i := range each {
					if n := seen[fmt.Sprintf("/%d/%d", w, i)]; n != 1 {
						t.Fatalf("entry /%d/%d found %d times, want once", w, i, n)
					}
				}
			}
			if len(seen) != writers*each {
				t.Errorf("%d distinct entries, want %d", len(seen), writers*each)
			}
		})
	}
}

// TestAccessLogFollowsRenameByItself waits for the background check to
// notice a rename (it runs about every second).
func TestAccessLogFollowsRenameByItself(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Write(alEntry(0))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Reopened: the file open is the one at the path (which exists a
	// moment before the log switches to it).
	testkit.WaitFor(t, 20*time.Second, "the log reopened after a rename", func() bool {
		fi, err := os.Stat(path)
		if err != nil {
			return false
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return os.SameFile(a.fi, fi)
	})
	a.Write(alEntry(1))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if old := readEntries(t, path+".1"); len(old) != 1 || old[0].Path != "/0" {
		t.Errorf("rotated file = %+v, want /0", old)
	}
	if cur := readEntries(t, path); len(cur) != 1 || cur[0].Path != "/1" {
		t.Errorf("new file = %+v, want /1", cur)
	}
}

func BenchmarkAppendEntry(b *testing.B) {
	e := entryCases[0].e
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkJSONMarshalEntry is the reflection-based encoder, for comparison.
func BenchmarkJSONMarshalEntry(b *testing.B) {
	e := entryCases[0].e
	d := decodedEntry{Time: e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), Client: e.Client.String(), Host: e.Host,
		Method: e.Method, Path: e.Path, Status: e.Status, Bytes: e.Bytes, Duration: e.Duration.Seconds(), Upstream: e.Upstream}
	b.ReportAllocs()
	for b.Loop() {
		json.Marshal(&d)
	}
}

func BenchmarkAccessLogWrite(b *testing.B) {
	a, err := OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	e := entryCases[0].e
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Write(e)
		}
	})
}
