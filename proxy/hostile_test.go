package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// hostileCase is raw bytes a client sends on one connection, what moat
// must answer (the status codes in order, then whether the connection was
// closed or left open), and the request lines its upstream must receive.
type hostileCase struct {
	name string
	raw  string
	want string
	up   []string
	// notUp are strings the upstream must not receive anywhere.
	notUp []string
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n"

var hostileCases = []hostileCase{
	// Ambiguous framing (item 4) and the classic smuggling variants.
	{name: "CL.TE", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "400 closed"},
	{name: "TE.CL", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2d\r\n" + smuggled + "\r\n0\r\n\r\n",
		want: "400 closed"},
	{name: "CL.TE upper case", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\ncontent-length: 6\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n0\r\n\r\n" + smuggled,
		want: "400 closed"},
	{name: "CL.TE folded", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 6\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "400 closed"},
	{name: "TE on HTTP/1.0", raw: "POST /a HTTP/1.0\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		want: "400 closed"},
	{name: "TE and CL on HTTP/1.0", raw: "POST /a HTTP/1.0\r\nHost: app.example\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2d\r\n" + smuggled + "\r\n0\r\n\r\n",
		want: "400 closed"},
	{name: "TE.TE unknown coding", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "501 closed"},
	{name: "TE.TE two fields", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
		want: "501 closed"},
	{name: "TE.TE list", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "501 closed"},
	{name: "TE.TE space before colon", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "400 closed"},
	{name: "TE with tab", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled,
		want: "400 closed"},
	{name: "TE chunked", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled,
		want: "200 200 open", up: []string{"POST /a", "GET /smuggled"}},
	{name: "TE chunked with trailer", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n" + smuggled,
		want: "200 200 open", up: []string{"POST /a", "GET /smuggled"}},
	{name: "duplicate CL, same value", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
		want: "400 closed"},
	{name: "duplicate CL, two values", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\nContent-Length: 48\r\n\r\nabc" + smuggled,
		want: "400 closed"},
	{name: "CL with sign", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: +3\r\n\r\nabc", want: "400 closed"},
	{name: "CL list", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3, 3\r\n\r\nabc", want: "400 closed"},
	{name: "CL hex", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0x3\r\n\r\nabc", want: "400 closed"},
	{name: "obs-fold", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nX-A: one\r\n two\r\n\r\n", want: "400 closed"},
	{name: "bare LF", raw: "GET /a HTTP/1.1\nHost: app.example\n\n", want: "200 open", up: []string{"GET /a"}},
	{name: "NUL in a value", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nX-A: a\x00b\r\n\r\n", want: "400 closed"},
	{name: "CR in a value", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nX-A: a\rb\r\n\r\n", want: "400 closed"},
	{name: "absolute-form", raw: "GET http://app.example/abs HTTP/1.1\r\nHost: other.example\r\n\r\n", want: "200 open", up: []string{"GET /abs"}},
	{name: "pipelined after malformed", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx" + smuggled,
		want: "400 closed"},
	{name: "pipelined after a good request", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /b HTTP/1.1\r\nHost: app.example\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		want: "200 400 closed", up: []string{"POST /a"}},
	// Chunk syntax errors: 400 before anything goes upstream (item 6).
	{name: "bad chunk size", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", want: "400 closed"},
	{name: "chunk with bare LF", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", want: "400 closed"},
	{name: "chunk data too long", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", want: "400 closed"},
	// Underscores (item 5).
	{name: "underscore names", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nX_Forwarded_For: 6.6.6.6\r\nX-Real_IP: 6.6.6.6\r\n\r\n",
		want: "200 open", up: []string{"GET /a"}, notUp: []string{"6.6.6.6", "_"}},
	{name: "underscore names, POST", raw: "POST /a HTTP/1.1\r\nHost: app.example\r\nX_Forwarded_For: 6.6.6.6\r\nContent-Length: 1\r\n\r\nx",
		want: "200 open", up: []string{"POST /a"}, notUp: []string{"6.6.6.6", "_"}},
	// The small ones (item 6).
	{name: "empty Host", raw: "GET /a HTTP/1.1\r\nHost:\r\n\r\n", want: "400 closed"},
	{name: "no Host", raw: "GET /a HTTP/1.1\r\n\r\n", want: "400 closed"},
	{name: "HTTP/1.0 without Host", raw: "GET /a HTTP/1.0\r\n\r\n", want: "400 closed"},
	{name: "lower-case method", raw: "get /a HTTP/1.1\r\nHost: app.example\r\n\r\n", want: "400 closed"},
	{name: "fragment", raw: "GET /a#frag HTTP/1.1\r\nHost: app.example\r\n\r\n", want: "200 open", up: []string{"GET /a"}, notUp: []string{"frag"}},
	{name: "fragment after a query", raw: "GET /a?q=1#frag HTTP/1.1\r\nHost: app.example\r\n\r\n", want: "200 open", up: []string{"GET /a?q=1"}, notUp: []string{"frag"}},
	{name: "Connection with a long s", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nConnection: clo\xc5\xbfe\r\n\r\n", want: "200 open", up: []string{"GET /a"}},
	{name: "the guard's field, forged", raw: "GET /a HTTP/1.1\r\nHost: app.example\r\nX-Moat-Refused: 0123 forged\r\n\r\n",
		want: "200 open", up: []string{"GET /a"}, notUp: []string{"forged"}},
	{name: "dot segments above the root", raw: "GET /../a HTTP/1.1\r\nHost: app.example\r\n\r\n", want: "400 closed"},
}

// hostileAnswer sends raw to addr and returns the status codes of the
// answers, then "closed" or "open".
func hostileAnswer(t *testing.T, addr, raw string) string {
	t.Helper()
	got, err := answersOf(addr, []byte(raw), 2*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// answersOf sends raw on a new connection to addr and returns the status
// codes of the answers (read as answers to GET), then how the connection
// ended: "closed", or "open" when nothing came for idle (first, before
// the first answer).
func answersOf(addr string, raw []byte, first, idle time.Duration) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write(raw); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	var codes []string
	for {
		wait := idle
		if len(codes) == 0 {
			wait = first
		}
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			end := endOf(err)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				// ReadResponse's word for a close before a status line,
				// and a close with the client's bytes unread.
				end = "closed"
			}
			return strings.TrimSpace(strings.Join(codes, " ") + " " + end), nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, fmt.Sprint(resp.StatusCode))
	}
}

// startNginx runs a real nginx as a reverse proxy to up on loopback and
// returns its address, or "" when nginx is not installed.
func startNginx(t *testing.T, up string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		// Debian puts it in /usr/sbin, off an ordinary user's PATH.
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			return ""
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	port := freePort(t)
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up { server %[2]s; keepalive 16; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`, dir, up, port)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	out, _ := os.Create(filepath.Join(dir, "out.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 100 {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upLines is the first line of each request an upstream received.
func upLines(seen []string) []string {
	var out []string
	for _, s := range seen {
		line, _, _ := strings.Cut(s, " host=")
		out = append(out, line)
	}
	return out
}

// TestHostileClients sends every hostileCase to moat (fast path on and
// off) and to a real nginx in front of the same kind of upstream, and
// checks moat's answers and what its upstream received. nginx's answers
// are logged beside moat's, so that a difference is visible.
func TestHostileClients(t *testing.T) {
	upMoat, upNginx := newSeenUpstream(t), newSeenUpstream(t)
	ngx := startNginx(t, hostPort(upNginx.Server))
	if ngx == "" {
		if testkit.CI() {
			t.Fatal("MOAT_CI=1, and nginx is not installed: the suite must record nginx's answers beside moat's")
		}
		t.Log("nginx is not installed (apt-get install nginx-light): its answers are not recorded")
	}
	cfg := Config{Routes: []Route{{Upstreams: []string{hostPort(upMoat.Server)}}}}
	var table strings.Builder
	fmt.Fprintf(&table, "%-32s %-16s %-16s %s\n", "case", "moat", "nginx", "upstream (moat | nginx)")
	for _, fast := range []bool{true, false} {
		_, addr := startProxyPath(t, cfg, nil, fast)
		for _, c := range hostileCases {
			got := hostileAnswer(t, addr, c.raw)
			// A quiet window, not an ordering: what the upstream answered
			// was recorded before the answer came back, but a request sent
			// upstream whose answer is not relayed (smuggled) gives no
			// event to wait for.
			time.Sleep(20 * time.Millisecond)
			seen := upMoat.take()
			lines := upLines(seen)
			if got != c.want {
				t.Errorf("fast=%v %s: moat answered %q, want %q", fast, c.name, got, c.want)
			}
			if strings.Join(lines, ", ") != strings.Join(c.up, ", ") {
				t.Errorf("fast=%v %s: upstream received %q, want %q", fast, c.name, lines, c.up)
			}
			for _, s := range c.notUp {
				for _, r := range seen {
					// The upstream's own record names fields canonically.
					if _, rest, _ := strings.Cut(r, "\n"); strings.Contains(rest, s) {
						t.Errorf("fast=%v %s: upstream received %q in\n%s", fast, c.name, s, r)
					}
				}
			}
			if !fast {
				continue
			}
			ng := "-"
			var ngLines []string
			if ngx != "" {
				ng = hostileAnswer(t, ngx, c.raw)
				time.Sleep(20 * time.Millisecond) // the same quiet window as for moat
				ngLines = upLines(upNginx.take())
			}
			mark := " "
			if ng != got && ngx != "" {
				mark = "*"
			}
			fmt.Fprintf(&table, "%s%-31s %-16s %-16s %q | %q\n", mark, c.name, got, ng, lines, ngLines)
		}
	}
	t.Logf("answers, moat beside nginx (* where they differ):\n%s", table.String())
}

// TestRouteOnNormalPath: with a strict route on /login, every spelling of
// /login that an upstream reads as /login takes that route (its limit
// applies), on both serving paths, and the upstream receives the path in
// normal form.
func TestRouteOnNormalPath(t *testing.T) {
	up := newSeenUpstream(t)
	for _, fast := range []bool{true, false} {
		cfg := Config{Routes: []Route{
			{Upstreams: []string{hostPort(up.Server)}},
			{Path: "/login", Upstreams: []string{up.URL + "/strict"}, Limit: &Limit{Rate: 0.001, Burst: 100, Window: time.Hour}},
		}}
		_, addr := startProxyPath(t, cfg, nil, fast)
		for _, c := range []struct{ target, sent string }{
			{"/login", "/strict/login"},
			{"/x/../login", "/strict/login"},
			{"/./login", "/strict/login"},
			{"//login", "/strict/login"},
			{"/%2e/login", "/strict/login"},
			{"/x/%2e%2e/login", "/strict/login"},
			{"/x/..;/login", "/strict/login"},
			{"/login;a=b", "/strict/login;a=b"},
			{"/%6cogin", "/strict/login"},
			{"/login/./x", "/strict/login/x"},
			{"/login%2Fx", "/strict/login%2Fx"},
			{"/x%2F..%2Flogin", "/strict/x%2F..%2Flogin"},
			{"/loginx", "/loginx"},
			{"/log/in", "/log/in"},
		} {
			for _, method := range []string{"GET", "POST"} {
				body := ""
				if method == "POST" {
					body = "Content-Length: 2\r\n\r\nhi"
				} else {
					body = "\r\n"
				}
				got := hostileAnswer(t, addr, method+" "+c.target+" HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n"+body)
				seen := upLines(up.take())
				if want := method + " " + c.sent; got != "200 closed" || len(seen) != 1 || seen[0] != want {
					t.Errorf("fast=%v %s %s: answered %q, upstream received %q, want 200 and %q", fast, method, c.target, got, seen, want)
				}
			}
		}
	}
}
