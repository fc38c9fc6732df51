package proxy

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moatproj/moat/filters"
)

// TestMoatProxyFilter writes requests with AccessLog and runs the built-in
// moat-proxy filter over the file, as a jail following the log would.
func TestMoatProxyFilter(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 3, 0, 0, 987654321, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	addr := netip.MustParseAddr
	entries := []Entry{
		{Time: at(0), Client: addr("192.0.2.1"), Host: "app.example.com", Method: "GET", Path: "/", Status: 200},
		{Time: at(1), Client: addr("192.0.2.2"), Host: "app.example.com", Method: "GET", Path: "/wp-login.php", Status: 404},
		{Time: at(2), Client: addr("192.0.2.3"), Host: "app.example.com", Method: "GET", Path: "/admin", Status: 401},
		{Time: at(3), Client: addr("192.0.2.4"), Host: "app.example.com", Method: "POST", Path: "/admin", Status: 403},
		{Time: at(4), Client: addr("2001:db8::7"), Host: "app.example.com", Method: "GET", Path: "/api", Status: 429, RateLimited: true},
		{Time: at(5), Client: addr("192.0.2.6"), Host: "app.example.com", Method: "GET", Path: "/boom", Status: 502},
		// Forgeries: a "client" key inside the path or the host, with a
		// status that counts, on a request that succeeded.
		{Time: at(6), Client: addr("192.0.2.7"), Host: "app.example.com", Method: "GET",
			Path: `/x","client":"203.0.113.9","host":"h","method":"GET","path":"/","status":404,"`, Status: 200},
		{Time: at(7), Client: addr("192.0.2.8"), Method: "GET", Path: "/",
			Host: "h\"}\n{\"time\":\"2026-11-27T03:00:07.000000Z\",\"client\":\"203.0.113.9\",\"host\":\"h\",\"method\":\"GET\",\"path\":\"/\",\"status\":404,", Status: 200},
		// The same forgery on a request that did fail: the real client is
		// the one found.
		{Time: at(8), Client: addr("192.0.2.9"), Host: "app.example.com", Method: "GET",
			Path: `/x","client":"203.0.113.9","status":404,"`, Status: 404},
		{Time: at(9), Client: addr("::ffff:198.51.100.10"), Host: "\xff\"\\", Method: "GET", Path: "/\\\"", Status: 404},
		{Time: at(10), Client: addr("192.0.2.11"), Host: "app.example.com", Method: "GET", Path: "/", Status: 4040},
	}
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := OpenAccessLog(path, accessTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		a.Write(e)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLogLines(t, path)
	if len(lines) != len(entries) {
		t.Fatalf("%d lines, want %d", len(lines), len(entries))
	}

	type found struct {
		addr string
		sec  int // seconds after t0
	}
	cases := []struct {
		name string
		spec string
		want []found
	}{
		{"default statuses", "moat-proxy", []found{
			{"192.0.2.2", 1}, {"192.0.2.3", 2}, {"192.0.2.4", 3}, {"2001:db8::7", 4}, {"192.0.2.9", 8}, {"198.51.100.10", 9}}},
		{"only 404", "moat-proxy[status=404]", []found{{"192.0.2.2", 1}, {"192.0.2.9", 8}, {"198.51.100.10", 9}}},
		{"server errors", `moat-proxy[status="5\d\d"]`, []found{{"192.0.2.6", 5}}},
		{"successes never as the forged client", "moat-proxy[status=200]", []found{
			{"192.0.2.1", 0}, {"192.0.2.7", 6}, {"192.0.2.8", 7}}},
		{"alternation", `moat-proxy[status="401|429"]`, []found{{"192.0.2.3", 2}, {"2001:db8::7", 4}}},
	}
	// Dates are written in UTC with a Z: the loader's zone must not apply.
	l := &filters.Loader{Location: time.FixedZone("UTC+5", 5*3600)}
	ref := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := l.Load(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			var got []found
			for _, line := range lines {
				m, ok := f.Match(line, ref)
				if !ok {
					continue
				}
				if m.Addr == addr("203.0.113.9") {
					t.Errorf("forged client matched in %q", line)
				}
				sec := int(m.Time.Sub(t0.Truncate(time.Second)) / time.Second)
				if !m.Time.Equal(t0.Truncate(time.Second).Add(time.Duration(sec) * time.Second)) {
					t.Errorf("time %v of %q is not a whole second after %v", m.Time, line, t0)
				}
				got = append(got, found{m.Addr.String(), sec})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("%s found %v, want %v", c.spec, got, c.want)
			}
		})
	}
}

// TestMoatProxyFilterForeignLines checks lines the proxy did not write.
func TestMoatProxyFilterForeignLines(t *testing.T) {
	f, err := (&filters.Loader{Location: time.UTC}).Load("moat-proxy")
	if err != nil {
		t.Fatal(err)
	}
	ref := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct{ name, line string }{
		{"no time key", `{"client":"192.0.2.1","host":"h","method":"GET","path":"/","status":404,"bytes":0}`},
		{"keys reordered", `{"time":"2026-11-27T03:00:00.000000Z","host":"h","client":"192.0.2.1","method":"GET","path":"/","status":404,}`},
		{"client in the path only", `{"time":"2026-11-27T03:00:00.000000Z","path":"x","client":"192.0.2.1","host":"h","method":"GET","path":"/","status":404,}`},
		{"unescaped quote in path", `{"time":"2026-11-27T03:00:00.000000Z","client":"192.0.2.1","host":"h","method":"GET","path":"/"x","status":404,}`},
		{"host name client", `{"time":"2026-11-27T03:00:00.000000Z","client":"example.com","host":"h","method":"GET","path":"/","status":404,}`},
		{"nginx line", `192.0.2.1 - - [27/Nov/2026:03:00:00 +0000] "GET / HTTP/1.1" 404 0 "-" "-"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if m, ok := f.Match(c.line, ref); ok {
				t.Errorf("Match(%q) = %v, want no failure", c.line, m.Addr)
			}
		})
	}
}

// FuzzMoatProxyFilter writes one entry with hostile request fields and
// checks that the filter finds exactly the entry's client and time when its
// status counts, and nothing when it does not.
func FuzzMoatProxyFilter(f *testing.F) {
	for _, c := range entryCases {
		f.Add(c.e.Host, c.e.Method, c.e.Path, c.e.Upstream, int64(c.e.Duration), true)
	}
	f.Add(`h","client":"203.0.113.9`, "GET", `/","status":404,"client":"203.0.113.9`, "", int64(0), false)
	f.Add("h\n{\"time\":\"2026-11-27T03:00:07.000000Z\",\"client\":\"203.0.113.9\"", "GET", "/", "", int64(0), false)
	flt, err := (&filters.Loader{Location: time.UTC}).Load("moat-proxy")
	if err != nil {
		f.Fatal(err)
	}
	client := netip.MustParseAddr("192.0.2.7")
	t0 := time.Date(2026, 11, 27, 3, 4, 5, 678000000, time.UTC)
	ref := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, host, method, path, upstream string, dur int64, counts bool) {
		e := Entry{Time: t0, Client: client, Host: host, Method: method, Path: path, Upstream: upstream,
			Duration: time.Duration(dur), Status: 200, RateLimited: counts}
		if counts {
			e.Status = 404
		}
		line := appendEntry(nil, e)
		m, ok := flt.Match(string(line[:len(line)-1]), ref)
		if ok != counts {
			t.Fatalf("Match(%q) = %v, want %v", line, ok, counts)
		}
		if ok && (m.Addr != client || !m.Time.Equal(t0.Truncate(time.Second))) {
			t.Fatalf("Match(%q) = %v at %v, want %v at %v", line, m.Addr, m.Time, client, t0.Truncate(time.Second))
		}
	})
}

// BenchmarkMoatProxyFilter runs the filter over access log lines, half of
// them failures.
func BenchmarkMoatProxyFilter(b *testing.B) {
	flt, err := (&filters.Loader{Location: time.UTC}).Load("moat-proxy")
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for i := range 64 {
		e := entryCases[0].e
		e.Path = fmt.Sprintf("/assets/%d/app.js?v=%d", i, i*7)
		if i%2 == 1 {
			e.Status = 404
		}
		l := appendEntry(nil, e)
		lines = append(lines, string(l[:len(l)-1]))
	}
	ref := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		flt.Match(lines[i%len(lines)], ref)
		i++
	}
}

// readLogLines returns the lines of path without their newlines.
func readLogLines(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	s := bufio.NewScanner(fh)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		out = append(out, s.Text())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
