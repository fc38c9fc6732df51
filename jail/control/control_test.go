package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/jail"

	"github.com/moatproj/moat/internal/testkit"
)

// fakeService is the daemon as the handler sees it: the jail engine is
// written in parallel, so this is the one place a fake stands in. A nil func
// field gets the behaviour of fakeDefault.
type fakeService struct {
	status   func(string) ([]jail.Status, error)
	bans     func(string) []jail.Ban
	ban      func(context.Context, string, netip.Prefix, time.Duration) (jail.Ban, error)
	unban    func(context.Context, netip.Prefix, string) ([]jail.Ban, error)
	unbanAll func(context.Context) (int, error)
	firewall jail.FirewallStatus
	reload   func(context.Context, string) error
	config   func(string) (jail.Config, error)
	addIgn   func(string, []netip.Prefix) ([]netip.Prefix, error)
	delIgn   func(string, netip.Prefix) ([]netip.Prefix, error)
}

var (
	t0      = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	loop    = netip.MustParsePrefix("127.0.0.1/32")
	v4Host  = netip.MustParsePrefix("192.0.2.7/32")
	v6Host  = netip.MustParsePrefix("2001:db8::1/128")
	v4Net   = netip.MustParsePrefix("198.51.100.0/24")
	v6Net   = netip.MustParsePrefix("2001:db8:1::/64")
	notBan  = netip.MustParsePrefix("203.0.113.0/24")
	fakeErr = errors.New("bolt: disk I/O error at /var/lib/moat/secret-path")
)

// fakeDefault knows the jails sshd and nginx, refuses loopback, and has
// nothing banned in 203.0.113.0/24.
func fakeDefault() *fakeService {
	known := func(name string) error {
		if name == "" || name == "sshd" || name == "nginx" {
			return nil
		}
		return fmt.Errorf("jail %q: %w", name, jail.ErrUnknownJail)
	}
	return &fakeService{
		status: func(name string) ([]jail.Status, error) {
			if err := known(name); err != nil {
				return nil, err
			}
			return []jail.Status{{Jail: "sshd", Banned: []netip.Prefix{v4Host, v6Net}}}, nil
		},
		bans: func(string) []jail.Ban {
			return []jail.Ban{{Jail: "sshd", Prefix: v4Host, BannedAt: t0, Expires: t0.Add(time.Hour), Count: 1, Failures: 5}}
		},
		ban: func(_ context.Context, name string, p netip.Prefix, d time.Duration) (jail.Ban, error) {
			if err := known(name); err != nil {
				return jail.Ban{}, err
			}
			if p.Addr().IsLoopback() {
				return jail.Ban{}, fmt.Errorf("ban: %w", &jail.RefusedError{Prefix: p, Reason: "loopback"})
			}
			b := jail.Ban{Jail: name, Prefix: p, BannedAt: t0, Count: 1}
			if d >= 0 {
				b.Expires = t0.Add(d + time.Hour)
			}
			return b, nil
		},
		unban: func(_ context.Context, p netip.Prefix, name string) ([]jail.Ban, error) {
			if err := known(name); err != nil {
				return nil, err
			}
			if notBan.Overlaps(p) {
				return nil, fmt.Errorf("unban %s: %w", p, jail.ErrNotBanned)
			}
			return []jail.Ban{{Jail: "sshd", Prefix: p, BannedAt: t0}}, nil
		},
		unbanAll: func(context.Context) (int, error) { return 3, nil },
		// A reload of jail "broken" finds a configuration that does not load.
		reload: func(_ context.Context, name string) error {
			if name == "broken" {
				return &ReloadError{Err: errors.New("moat.yaml: line 3: bad indentation")}
			}
			return known(name)
		},
		// Every jail ignores 198.51.100.0/24.
		config: func(name string) (jail.Config, error) {
			if err := known(name); err != nil {
				return jail.Config{}, err
			}
			return jail.Config{Name: name, MaxRetry: 5, FindTime: 10 * time.Minute, BanTime: -1, IgnoreIP: []netip.Prefix{v4Net}, IgnoreSelf: true}, nil
		},
		addIgn: func(name string, ps []netip.Prefix) ([]netip.Prefix, error) {
			if err := known(name); err != nil {
				return nil, err
			}
			return append([]netip.Prefix{v4Net}, ps...), nil
		},
		delIgn: func(name string, p netip.Prefix) ([]netip.Prefix, error) {
			if err := known(name); err != nil {
				return nil, err
			}
			if p != v4Net {
				return nil, fmt.Errorf("del %s: %w", p, jail.ErrNotIgnored)
			}
			return nil, nil
		},
	}
}

func (f *fakeService) Status(name string) ([]jail.Status, error) { return f.status(name) }
func (f *fakeService) Bans(name string) []jail.Ban               { return f.bans(name) }
func (f *fakeService) Ban(ctx context.Context, name string, p netip.Prefix, d time.Duration) (jail.Ban, error) {
	return f.ban(ctx, name, p, d)
}
func (f *fakeService) Unban(ctx context.Context, p netip.Prefix, name string) ([]jail.Ban, error) {
	return f.unban(ctx, p, name)
}
func (f *fakeService) UnbanAll(ctx context.Context) (int, error) { return f.unbanAll(ctx) }
func (f *fakeService) FirewallStatus() jail.FirewallStatus       { return f.firewall }
func (f *fakeService) Version() string                           { return "1.2.3-test" }
func (f *fakeService) Reload(ctx context.Context, name string) error {
	return f.reload(ctx, name)
}
func (f *fakeService) JailConfig(name string) (jail.Config, error) { return f.config(name) }
func (f *fakeService) AddIgnoreIP(name string, ps ...netip.Prefix) ([]netip.Prefix, error) {
	return f.addIgn(name, ps)
}
func (f *fakeService) DelIgnoreIP(name string, p netip.Prefix) ([]netip.Prefix, error) {
	return f.delIgn(name, p)
}

// socketDir is a short temporary directory: t.TempDir's names grow with the
// test's name, and a socket path must fit in 107 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moatctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serve serves h on a real socket until the test ends, and checks that
// Serve then returns nil and removes the socket.
func serve(t *testing.T, h http.Handler) (string, *Client) {
	t.Helper()
	return serveMode(t, h, socketDir(t), 0)
}

// serveMode is serve with the socket in dir with the given mode.
func serveMode(t *testing.T, h http.Handler, dir string, mode os.FileMode) (string, *Client) {
	t.Helper()
	path := filepath.Join(dir, "moat.sock")
	ln, err := Listen(path, mode)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s still there after Serve returned (err %v)", path, err)
		}
	})
	return path, NewClient(path)
}

func newLogger() (*slog.Logger, *testkit.Buffer) {
	var buf testkit.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// raw sends one request as is over the socket and returns the status, the
// headers and the body.
func raw(t *testing.T, c *Client, method, target, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://moat"+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestClientRoutes(t *testing.T) {
	svc := fakeDefault()
	var (
		mu  sync.Mutex
		got []string
	)
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, s)
	}
	inner := *svc
	svc.ban = func(ctx context.Context, name string, p netip.Prefix, d time.Duration) (jail.Ban, error) {
		record(fmt.Sprintf("ban %s %s %v", name, p, d))
		return inner.ban(ctx, name, p, d)
	}
	svc.unban = func(ctx context.Context, p netip.Prefix, name string) ([]jail.Ban, error) {
		record(fmt.Sprintf("unban %s %q", p, name))
		return inner.unban(ctx, p, name)
	}
	svc.bans = func(name string) []jail.Ban {
		record(fmt.Sprintf("bans %q", name))
		return inner.bans(name)
	}
	_, c := serve(t, NewHandler(svc, nil))
	ctx := context.Background()

	t.Run("status", func(t *testing.T) {
		ss, err := c.Status(ctx, "sshd")
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) != 1 || ss[0].Jail != "sshd" || len(ss[0].Banned) != 2 || ss[0].Banned[0] != v4Host || ss[0].Banned[1] != v6Net {
			t.Errorf("Status = %+v, want sshd with %s and %s", ss, v4Host, v6Net)
		}
	})
	t.Run("bans", func(t *testing.T) {
		bs, err := c.Bans(ctx, "nginx")
		if err != nil {
			t.Fatal(err)
		}
		want := jail.Ban{Jail: "sshd", Prefix: v4Host, BannedAt: t0, Expires: t0.Add(time.Hour), Count: 1, Failures: 5}
		if len(bs) != 1 || !sameBan(bs[0], want) {
			t.Errorf("Bans = %+v, want [%+v]", bs, want)
		}
	})
	t.Run("ban", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			addr string
			d    time.Duration
			want netip.Prefix
			// wantExpires is zero for a ban without end.
			wantExpires time.Time
		}{
			{"default duration", "192.0.2.7", 0, v4Host, t0.Add(time.Hour)},
			{"one hour", " 2001:db8::1 ", time.Hour, v6Host, t0.Add(2 * time.Hour)},
			{"no end", "198.51.100.9/24", -1, v4Net, time.Time{}},
			{"mapped", "::ffff:192.0.2.7", 90 * time.Minute, v4Host, t0.Add(150 * time.Minute)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, err := c.Ban(ctx, "sshd", tc.addr, tc.d)
				if err != nil {
					t.Fatal(err)
				}
				if b.Prefix != tc.want || b.Jail != "sshd" || !b.Expires.Equal(tc.wantExpires) || b.Expires.IsZero() != tc.wantExpires.IsZero() {
					t.Errorf("Ban(%q, %v) = %+v, want %s expiring %v", tc.addr, tc.d, b, tc.want, tc.wantExpires)
				}
			})
		}
	})
	t.Run("unban", func(t *testing.T) {
		bs, err := c.Unban(ctx, "2001:db8:1::/64", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Prefix != v6Net {
			t.Errorf("Unban = %+v, want one ban of %s", bs, v6Net)
		}
	})
	t.Run("unban all", func(t *testing.T) {
		n, err := c.UnbanAll(ctx)
		if err != nil || n != 3 {
			t.Errorf("UnbanAll = %d, %v; want 3, nil", n, err)
		}
	})

	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`bans "nginx"`,
		"ban sshd 192.0.2.7/32 0s",
		"ban sshd 2001:db8::1/128 1h0m0s",
		"ban sshd 198.51.100.0/24 -1ns",
		"ban sshd 192.0.2.7/32 1h30m0s",
		`unban 2001:db8:1::/64 ""`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("service calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func sameBan(a, b jail.Ban) bool {
	return a.Jail == b.Jail && a.Prefix == b.Prefix && a.BannedAt.Equal(b.BannedAt) &&
		a.Expires.Equal(b.Expires) && a.Count == b.Count && a.Failures == b.Failures
}

// requestCases are the handler's answers to requests, good and bad; FuzzRequest
// starts from them.
var requestCases = []struct {
	name           string
	method, target string
	body           string
	wantStatus     int
	wantMsg        string // a substring of the error message
}{
	{"status all", "GET", "/v1/status", "", 200, ""},
	{"status one", "GET", "/v1/status?jail=sshd", "", 200, ""},
	{"status unknown jail", "GET", "/v1/status?jail=nope", "", 404, `unknown jail "nope"`},
	{"status unknown parameter", "GET", "/v1/status?jial=sshd", "", 400, `unknown query parameter "jial"`},
	{"status jail twice", "GET", "/v1/status?jail=sshd&jail=nginx", "", 400, "jail given 2 times"},
	{"status bad escape", "GET", "/v1/status?jail=%zz", "", 400, "bad query"},
	{"bans all", "GET", "/v1/bans", "", 200, ""},
	{"bans unknown jail", "GET", "/v1/bans?jail=nope", "", 404, `unknown jail "nope"`},
	{"ban", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","for":"1h"}`, 200, ""},
	{"ban no end", "POST", "/v1/bans", `{"jail":"sshd","ip":"2001:db8::/64","for":"-1"}`, 200, ""},
	{"ban bad json", "POST", "/v1/bans", `{"jail":"sshd",`, 400, "bad JSON body"},
	{"ban syntax error", "POST", "/v1/bans", `{"jail" "sshd"}`, 400, "bad JSON body at byte"},
	{"ban unknown field", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","bantime":"1h"}`, 400, `unknown field "bantime"`},
	{"ban trailing data", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7"} {}`, 400, "bad JSON body"},
	{"ban trailing garbage", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7"}x`, 400, "bad JSON body"},
	{"ban empty body", "POST", "/v1/bans", "", 400, "empty request body"},
	{"ban array", "POST", "/v1/bans", `[{"jail":"sshd","ip":"192.0.2.7"}]`, 400, "want an object"},
	{"ban wrong type", "POST", "/v1/bans", `{"jail":"sshd","ip":7}`, 400, `field "ip"`},
	{"ban null", "POST", "/v1/bans", `null`, 400, `"jail" is required`},
	{"ban no ip", "POST", "/v1/bans", `{"jail":"sshd"}`, 400, `"ip" is required`},
	{"ban no jail", "POST", "/v1/bans", `{"ip":"192.0.2.7"}`, 400, `"jail" is required`},
	{"ban bad ip", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.300"}`, 400, `bad "ip" "192.0.2.300"`},
	{"ban hostname", "POST", "/v1/bans", `{"jail":"sshd","ip":"example.com"}`, 400, `bad "ip"`},
	{"ban bad prefix", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.0/33"}`, 400, `bad "ip"`},
	{"ban bad duration", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","for":"1x"}`, 400, `bad "for" "1x"`},
	{"ban zero duration", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","for":"0s"}`, 400, `bad "for"`},
	{"ban negative duration", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","for":"-2h"}`, 400, `bad "for"`},
	{"ban days", "POST", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7","for":"1d"}`, 400, `bad "for"`},
	{"ban unknown jail", "POST", "/v1/bans", `{"jail":"nope","ip":"192.0.2.7"}`, 404, `unknown jail "nope"`},
	{"ban refused", "POST", "/v1/bans", `{"jail":"sshd","ip":"127.0.0.1"}`, 422, "refusing to ban 127.0.0.1: loopback"},
	{"unban", "POST", "/v1/unban", `{"ip":"192.0.2.7"}`, 200, ""},
	{"unban in jail", "POST", "/v1/unban", `{"ip":"192.0.2.7","jail":"sshd"}`, 200, ""},
	{"unban not banned", "POST", "/v1/unban", `{"ip":"203.0.113.5"}`, 404, "203.0.113.5 is not banned"},
	{"unban not banned in jail", "POST", "/v1/unban", `{"ip":"203.0.113.0/24","jail":"sshd"}`, 404, `203.0.113.0/24 is not banned in jail "sshd"`},
	{"unban unknown jail", "POST", "/v1/unban", `{"ip":"192.0.2.7","jail":"nope"}`, 404, `unknown jail "nope"`},
	{"unban unknown field", "POST", "/v1/unban", `{"ip":"192.0.2.7","all":true}`, 400, `unknown field "all"`},
	{"unban bad ip", "POST", "/v1/unban", `{"ip":"192.0.2"}`, 400, `bad "ip"`},
	{"unban all", "POST", "/v1/unban-all", "", 200, ""},
	{"unban all object", "POST", "/v1/unban-all", "{}", 200, ""},
	{"unban all unknown field", "POST", "/v1/unban-all", `{"jail":"sshd"}`, 400, `unknown field "jail"`},
	{"version", "GET", "/v1/version", "", 200, ""},
	{"version with a query", "GET", "/v1/version?jail=sshd", "", 400, "takes no query"},
	{"post version", "POST", "/v1/version", "{}", 405, "not allowed"},
	{"config", "GET", "/v1/config?jail=sshd", "", 200, ""},
	{"config without jail", "GET", "/v1/config", "", 400, "needs the query parameter jail"},
	{"config empty jail", "GET", "/v1/config?jail=", "", 400, "needs the query parameter jail"},
	{"config unknown jail", "GET", "/v1/config?jail=nope", "", 404, `unknown jail "nope"`},
	{"config unknown parameter", "GET", "/v1/config?jail=sshd&x=1", "", 400, `unknown query parameter "x"`},
	{"config jail twice", "GET", "/v1/config?jail=sshd&jail=sshd", "", 400, "jail given 2 times"},
	{"reload", "POST", "/v1/reload", "", 200, ""},
	{"reload object", "POST", "/v1/reload", "{}", 200, ""},
	{"reload jail unban", "POST", "/v1/reload", `{"jail":"sshd","unban":true}`, 200, ""},
	{"reload unban all", "POST", "/v1/reload", `{"unban":true}`, 200, ""},
	{"reload unknown jail", "POST", "/v1/reload", `{"jail":"nope"}`, 404, `unknown jail "nope"`},
	{"reload bad configuration", "POST", "/v1/reload", `{"jail":"broken"}`, 422, "reload refused; the configuration in force stays: moat.yaml: line 3"},
	{"reload unknown field", "POST", "/v1/reload", `{"jail":"sshd","restart":true}`, 400, `unknown field "restart"`},
	{"reload unban not a bool", "POST", "/v1/reload", `{"unban":"yes"}`, 400, `field "unban"`},
	{"reload jail not a string", "POST", "/v1/reload", `{"jail":["sshd"]}`, 400, `field "jail"`},
	{"reload trailing data", "POST", "/v1/reload", `{}{}`, 400, "bad JSON body"},
	{"get reload", "GET", "/v1/reload", "", 405, "not allowed"},
	{"ignoreip add", "POST", "/v1/ignoreip", `{"jail":"sshd","add":["192.0.2.7","2001:db8::/48"]}`, 200, ""},
	{"ignoreip del", "POST", "/v1/ignoreip", `{"jail":"sshd","del":"198.51.100.0/24"}`, 200, ""},
	{"ignoreip del not listed", "POST", "/v1/ignoreip", `{"jail":"sshd","del":"198.51.100.7"}`, 404, `198.51.100.7 is not in ignoreip of jail "sshd"`},
	{"ignoreip unknown jail", "POST", "/v1/ignoreip", `{"jail":"nope","add":["192.0.2.7"]}`, 404, `unknown jail "nope"`},
	{"ignoreip no jail", "POST", "/v1/ignoreip", `{"add":["192.0.2.7"]}`, 400, `"jail" is required`},
	{"ignoreip neither", "POST", "/v1/ignoreip", `{"jail":"sshd"}`, 400, "want exactly one of"},
	{"ignoreip both", "POST", "/v1/ignoreip", `{"jail":"sshd","add":["192.0.2.7"],"del":"192.0.2.8"}`, 400, "want exactly one of"},
	{"ignoreip add null", "POST", "/v1/ignoreip", `{"jail":"sshd","add":null}`, 400, "want exactly one of"},
	{"ignoreip add empty", "POST", "/v1/ignoreip", `{"jail":"sshd","add":[]}`, 400, `"add" holds 0 entries`},
	{"ignoreip add too many", "POST", "/v1/ignoreip", `{"jail":"sshd","add":[` + strings.Repeat(`"192.0.2.7",`, 256) + `"192.0.2.7"]}`, 400, `"add" holds 257 entries`},
	{"ignoreip add hostname", "POST", "/v1/ignoreip", `{"jail":"sshd","add":["192.0.2.7","example.com"]}`, 400, `bad "ip" "example.com"`},
	{"ignoreip add empty string", "POST", "/v1/ignoreip", `{"jail":"sshd","add":[""]}`, 400, `"ip" is required`},
	{"ignoreip add bad prefix", "POST", "/v1/ignoreip", `{"jail":"sshd","add":["192.0.2.0/40"]}`, 400, `bad "ip"`},
	{"ignoreip add not a list", "POST", "/v1/ignoreip", `{"jail":"sshd","add":"192.0.2.7"}`, 400, `field "add"`},
	{"ignoreip add numbers", "POST", "/v1/ignoreip", `{"jail":"sshd","add":[7]}`, 400, `field "add`},
	{"ignoreip del list", "POST", "/v1/ignoreip", `{"jail":"sshd","del":["192.0.2.7"]}`, 400, `field "del"`},
	{"ignoreip del empty", "POST", "/v1/ignoreip", `{"jail":"sshd","del":""}`, 400, `"ip" is required`},
	{"ignoreip del garbage", "POST", "/v1/ignoreip", `{"jail":"sshd","del":"\u0000\n;rm -rf /"}`, 400, `bad "ip"`},
	{"ignoreip unknown field", "POST", "/v1/ignoreip", `{"jail":"sshd","add":["192.0.2.7"],"for":"1h"}`, 400, `unknown field "for"`},
	{"ignoreip empty body", "POST", "/v1/ignoreip", "", 400, "empty request body"},
	{"ignoreip query", "POST", "/v1/ignoreip?jail=sshd", `{"jail":"sshd","del":"192.0.2.7"}`, 400, "not in the query"},
	{"get ignoreip", "GET", "/v1/ignoreip", "", 405, "not allowed"},
	{"query on a POST", "POST", "/v1/bans?jail=sshd", `{"jail":"sshd","ip":"192.0.2.7"}`, 400, "not in the query"},
	{"unknown route", "GET", "/v1/nope", "", 404, "no such endpoint"},
	{"no version", "GET", "/status", "", 404, "no such endpoint"},
	{"trailing slash", "GET", "/v1/status/", "", 404, "no such endpoint"},
	{"wrong method", "DELETE", "/v1/bans", `{"ip":"192.0.2.7"}`, 405, "not allowed"},
	{"get unban", "GET", "/v1/unban", "", 405, "not allowed"},
	{"post status", "POST", "/v1/status", "{}", 405, "not allowed"},
}

func TestRequests(t *testing.T) {
	_, c := serve(t, NewHandler(fakeDefault(), nil))
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := raw(t, c, tc.method, tc.target, tc.body)
			if status != tc.wantStatus {
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.target, status, body, tc.wantStatus)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if status == 405 && hdr.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
			if tc.wantStatus/100 == 2 {
				if !json.Valid(body) {
					t.Errorf("body %s is not JSON", body)
				}
				return
			}
			var e errorResponse
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body %s: %v", body, err)
			}
			if !strings.Contains(e.Error, tc.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", e.Error, tc.wantMsg)
			}
		})
	}
}

func TestInternalErrorNotLeaked(t *testing.T) {
	svc := fakeDefault()
	svc.ban = func(context.Context, string, netip.Prefix, time.Duration) (jail.Ban, error) {
		return jail.Ban{}, fakeErr
	}
	svc.status = func(string) ([]jail.Status, error) { return nil, fakeErr }
	svc.unbanAll = func(context.Context) (int, error) { return 0, fakeErr }
	logger, logs := newLogger()
	_, c := serve(t, NewHandler(svc, logger))
	ctx := context.Background()

	for name, call := range map[string]func() error{
		"ban":       func() error { _, err := c.Ban(ctx, "sshd", "192.0.2.7", 0); return err },
		"status":    func() error { _, err := c.Status(ctx, ""); return err },
		"unban all": func() error { _, err := c.UnbanAll(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
				t.Fatalf("err = %v, want an APIError 500", err)
			}
			if strings.Contains(ae.Message, "secret-path") || strings.Contains(ae.Message, "bolt") {
				t.Errorf("500 message %q leaks the internal error", ae.Message)
			}
		})
	}
	if !strings.Contains(logs.String(), "secret-path") {
		t.Errorf("internal error not logged; log:\n%s", logs)
	}
}

func TestClientErrors(t *testing.T) {
	_, c := serve(t, NewHandler(fakeDefault(), nil))
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		call       func() error
		wantStatus int
		wantErr    string
	}{
		{"refused", func() error { _, err := c.Ban(ctx, "sshd", "127.0.0.1", time.Hour); return err }, 422, "refusing to ban 127.0.0.1: loopback"},
		{"unknown jail", func() error { _, err := c.Bans(ctx, "nope"); return err }, 404, `unknown jail "nope"`},
		{"not banned", func() error { _, err := c.Unban(ctx, "203.0.113.9", ""); return err }, 404, "203.0.113.9 is not banned"},
		{"bad address", func() error { _, err := c.Ban(ctx, "sshd", "nonsense", 0); return err }, 400, `bad "ip" "nonsense": want an address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.Status != tc.wantStatus {
				t.Errorf("Status = %d, want %d", ae.Status, tc.wantStatus)
			}
			if !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("Error() = %q, want it to start with %q", err, tc.wantErr)
			}
		})
	}
}

func TestAPIErrorOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   APIError
		want string
	}{
		{"message", APIError{422, "refusing to ban 127.0.0.1: loopback"}, "refusing to ban 127.0.0.1: loopback"},
		{"multi-line", APIError{500, "line one\nline two\r\n\tthree\n"}, "line one line two three"},
		{"escape codes", APIError{400, "bad\x1b[31m red\x00"}, "bad[31m red"},
		{"empty", APIError{502, ""}, "Bad Gateway"},
		{"empty unknown status", APIError{599, " "}, "daemon answered status 599"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	_, c := serve(t, NewHandler(fakeDefault(), nil))
	for _, tc := range []struct {
		name, target, body string
	}{
		{"ban padded with spaces", "/v1/bans", `{"jail":"sshd","ip":"192.0.2.7"}` + strings.Repeat(" ", maxBody)},
		{"ban huge string", "/v1/bans", `{"jail":"` + strings.Repeat("a", maxBody) + `","ip":"192.0.2.7"}`},
		{"unban all", "/v1/unban-all", "{" + strings.Repeat(" ", maxBody) + "}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := raw(t, c, "POST", tc.target, tc.body)
			if status != http.StatusRequestEntityTooLarge {
				t.Errorf("status = %d %s, want 413", status, body)
			}
		})
	}
}

func TestBanJSON(t *testing.T) {
	svc := fakeDefault()
	local := time.FixedZone("CET", 3600)
	svc.bans = func(string) []jail.Ban {
		return []jail.Ban{
			{Jail: "sshd", Prefix: v4Host, BannedAt: t0.In(local).Add(500 * time.Millisecond), Expires: t0.Add(time.Hour), Count: 2, Failures: 5},
			{Jail: "sshd", Prefix: v6Host, BannedAt: t0},
			{Jail: "web", Prefix: v4Net, BannedAt: t0, Expires: t0.Add(time.Minute)},
			{Jail: "web", Prefix: v6Net, BannedAt: t0},
		}
	}
	_, c := serve(t, NewHandler(svc, nil))
	status, _, body := raw(t, c, "GET", "/v1/bans", "")
	if status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	var got []map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		ip, banned string
		expires    any
	}{
		{"192.0.2.7", "2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z"},
		{"2001:db8::1", "2026-11-26T12:00:00Z", nil},
		{"198.51.100.0/24", "2026-11-26T12:00:00Z", "2026-11-26T12:01:00Z"},
		{"2001:db8:1::/64", "2026-11-26T12:00:00Z", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d bans, want %d: %s", len(got), len(want), body)
	}
	for i, w := range want {
		g := got[i]
		if g["ip"] != w.ip || g["banned_at"] != w.banned || g["expires_at"] != w.expires {
			t.Errorf("ban %d = ip %v banned_at %v expires_at %#v, want %s %s %#v", i, g["ip"], g["banned_at"], g["expires_at"], w.ip, w.banned, w.expires)
		}
		if _, ok := g["expires_at"]; !ok {
			t.Errorf("ban %d has no expires_at key (want null or a time)", i)
		}
		for _, k := range []string{"jail", "count", "failures"} {
			if _, ok := g[k]; !ok {
				t.Errorf("ban %d has no %q key", i, k)
			}
		}
	}

	// EncodeBans, for `moat bans --json`, writes the same document.
	var enc bytes.Buffer
	if err := EncodeBans(&enc, svc.bans("")); err != nil {
		t.Fatal(err)
	}
	var fromAPI, fromEncode any
	if err := json.Unmarshal(body, &fromAPI); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(enc.Bytes(), &fromEncode); err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(fromAPI), fmt.Sprint(fromEncode); a != b {
		t.Errorf("EncodeBans wrote\n%s\nthe API sent\n%s", enc.Bytes(), body)
	}

	// And through the client: no end comes back as the zero time.
	bs, err := c.Bans(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !bs[1].Expires.IsZero() || bs[0].Expires.IsZero() || bs[3].Prefix != v6Net || bs[0].Count != 2 || bs[0].Failures != 5 {
		t.Errorf("client Bans = %+v", bs)
	}
}

func TestFormatPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   netip.Prefix
		want string
	}{
		{"v4 host", v4Host, "192.0.2.7"},
		{"v6 host", v6Host, "2001:db8::1"},
		{"v4 net", v4Net, "198.51.100.0/24"},
		{"v6 net", v6Net, "2001:db8:1::/64"},
		{"v4 everything", netip.MustParsePrefix("0.0.0.0/0"), "0.0.0.0/0"},
		{"invalid", netip.Prefix{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatPrefix(tc.in); got != tc.want {
				t.Errorf("FormatPrefix(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPeerCredentials(t *testing.T) {
	t.Run("allowed uid is logged on mutations", func(t *testing.T) {
		logger, logs := newLogger()
		_, c := serve(t, NewHandler(fakeDefault(), logger))
		if _, err := c.Ban(context.Background(), "sshd", "192.0.2.7", time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("want one log line (the ban; status is not logged), got:\n%s", logs)
		}
		for _, want := range []string{
			"level=INFO", `msg="control request"`, "path=/v1/bans", "jail=sshd", "ip=192.0.2.7", "for=1h0m0s",
			fmt.Sprintf("uid=%d", os.Getuid()), fmt.Sprintf("pid=%d", os.Getpid()),
		} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("log line %q lacks %q", lines[0], want)
			}
		}
	})
	t.Run("other uid is refused", func(t *testing.T) {
		called := false
		svc := fakeDefault()
		svc.unbanAll = func(context.Context) (int, error) { called = true; return 0, nil }
		h := newHandler(svc, nil, func(uid uint32) bool { return uid != uint32(os.Getuid()) })
		_, c := serve(t, h)
		_, err := c.UnbanAll(context.Background())
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
			t.Fatalf("err = %v, want APIError 403", err)
		}
		if !strings.Contains(ae.Message, fmt.Sprintf("uid %d may not use", os.Getuid())) {
			t.Errorf("message = %q", ae.Message)
		}
		if called {
			t.Error("service called for a refused peer")
		}
	})
	t.Run("no credentials is refused", func(t *testing.T) {
		// Served outside Serve (no ConnContext): fail closed.
		rec := httptest.NewRecorder()
		NewHandler(fakeDefault(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status", nil))
		if rec.Code != http.StatusForbidden {
			t.Errorf("status = %d, want 403", rec.Code)
		}
	})
}

func TestBanRecordedFirewallFailed(t *testing.T) {
	svc := fakeDefault()
	svc.ban = func(_ context.Context, name string, p netip.Prefix, _ time.Duration) (jail.Ban, error) {
		return jail.Ban{Jail: name, Prefix: p, BannedAt: t0}, fakeErr
	}
	_, c := serve(t, NewHandler(svc, nil))
	_, err := c.Ban(context.Background(), "sshd", "192.0.2.7", 0)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Fatalf("err = %v, want APIError 500", err)
	}
	if want := "ban of 192.0.2.7 recorded, but not yet in the firewall"; !strings.HasPrefix(ae.Message, want) || strings.Contains(ae.Message, "bolt") {
		t.Errorf("message = %q, want it to start with %q and hide the detail", ae.Message, want)
	}
}

func TestUnbanRecordedFirewallFailed(t *testing.T) {
	svc := fakeDefault()
	svc.unban = func(_ context.Context, p netip.Prefix, name string) ([]jail.Ban, error) {
		return []jail.Ban{{Jail: "sshd", Prefix: p, BannedAt: t0}}, fakeErr
	}
	svc.unbanAll = func(context.Context) (int, error) { return 3, fakeErr }
	_, c := serve(t, NewHandler(svc, nil))
	_, err := c.Unban(context.Background(), "192.0.2.7", "")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Fatalf("unban: err = %v, want APIError 500", err)
	}
	if want := "unban of 192.0.2.7 recorded, but not yet out of the firewall"; !strings.HasPrefix(ae.Message, want) || strings.Contains(ae.Message, "bolt") {
		t.Errorf("unban: message = %q, want it to start with %q and hide the detail", ae.Message, want)
	}
	_, err = c.UnbanAll(context.Background())
	if !errors.As(err, &ae) || !strings.HasPrefix(ae.Message, "unban of all 3 bans recorded") {
		t.Errorf("unban --all: err = %v, want the same explanation", err)
	}
}

func TestRootOr(t *testing.T) {
	allow := rootOr(1000)
	for _, tc := range []struct {
		name string
		uid  uint32
		want bool
	}{
		{"root", 0, true},
		{"daemon's user", 1000, true},
		{"another user", 1001, false},
		{"nobody", 65534, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allow(tc.uid); got != tc.want {
				t.Errorf("rootOr(1000)(%d) = %v, want %v", tc.uid, got, tc.want)
			}
		})
	}
}
