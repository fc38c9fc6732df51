package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/jail"
)

// engineService is what the daemon serves: the real engine, with the
// daemon's version and a reload that configures the engine again with the
// same jails (the daemon reads its configuration file again).
type engineService struct {
	*jail.Engine
	jails []jail.Config
}

func (engineService) Version() string { return "1.2.3-test" }

func (s engineService) Reload(ctx context.Context, name string) error {
	if name != "" && !slices.ContainsFunc(s.jails, func(c jail.Config) bool { return c.Name == name }) {
		return fmt.Errorf("reload: jail %q: %w", name, jail.ErrUnknownJail)
	}
	return s.Configure(ctx, s.jails)
}

var _ Service = engineService{}

// noFirewall stands in for the "none" backend: it enforces nothing.
type noFirewall struct{}

func (noFirewall) Sync(context.Context, []firewall.Jail, []firewall.Ban, time.Time) error {
	return nil
}
func (noFirewall) Add(context.Context, []firewall.Ban, time.Time) error { return nil }
func (noFirewall) Delete(context.Context, []firewall.Ban) error         { return nil }
func (noFirewall) Check(context.Context, time.Time) (firewall.CheckReport, error) {
	return firewall.CheckReport{}, nil
}

// openEngine opens the real engine (state in a temp dir, the clock at t0)
// with jails, closed when the test ends.
func openEngine(t *testing.T, jails ...jail.Config) *jail.Engine {
	t.Helper()
	e, err := jail.Open(jail.Options{
		StateDir:  t.TempDir(),
		Firewall:  noFirewall{},
		Now:       func() time.Time { return t0 },
		SelfAddrs: func() []netip.Addr { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Configure(context.Background(), jails); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestWithEngine runs the client against the real jail engine (state in a
// temp dir), checking that its errors map to the answers the CLI expects.
func TestWithEngine(t *testing.T) {
	e := openEngine(t, jail.Config{Name: "sshd", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour})
	ctx := context.Background()
	_, c := serve(t, NewHandler(engineService{Engine: e}, nil))

	b, err := c.Ban(ctx, "sshd", "192.0.2.7", 0)
	if err != nil {
		t.Fatalf("Ban: %v", err)
	}
	if b.Prefix != v4Host || !b.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("Ban = %+v, want %s until %v", b, v4Host, t0.Add(time.Hour))
	}
	if _, err := c.Ban(ctx, "sshd", "198.51.100.0/24", -1); err != nil {
		t.Fatalf("Ban no end: %v", err)
	}
	bs, err := c.Bans(ctx, "sshd")
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Prefix != v4Host || bs[1].Prefix != v4Net || !bs[1].Expires.IsZero() {
		t.Errorf("Bans = %+v, want %s then %s without end", bs, v4Host, v4Net)
	}

	for _, tc := range []struct {
		name       string
		call       func() error
		wantStatus int
		wantErr    string
	}{
		{"loopback", func() error { _, err := c.Ban(ctx, "sshd", "127.0.0.1", 0); return err }, http.StatusUnprocessableEntity, "refusing to ban 127.0.0.1: loopback address"},
		{"unknown jail ban", func() error { _, err := c.Ban(ctx, "nope", "192.0.2.8", 0); return err }, http.StatusNotFound, `unknown jail "nope"`},
		{"unknown jail status", func() error { _, err := c.Status(ctx, "nope"); return err }, http.StatusNotFound, `unknown jail "nope"`},
		{"unknown jail unban", func() error { _, err := c.Unban(ctx, "192.0.2.7", "nope"); return err }, http.StatusNotFound, `unknown jail "nope"`},
		{"not banned", func() error { _, err := c.Unban(ctx, "203.0.113.1", ""); return err }, http.StatusNotFound, "203.0.113.1 is not banned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus || ae.Error() != tc.wantErr {
				t.Errorf("err = %v, want %d %q", err, tc.wantStatus, tc.wantErr)
			}
		})
	}

	lifted, err := c.Unban(ctx, "198.51.100.9", "")
	if err != nil || len(lifted) != 1 || lifted[0].Prefix != v4Net {
		t.Errorf("Unban inside the /24 = %+v, %v; want the /24 lifted", lifted, err)
	}
	ss, err := c.Status(ctx, "")
	if err != nil || len(ss) != 1 || ss[0].CurrentlyBanned != 1 || ss[0].Banned[0] != v4Host {
		t.Errorf("Status = %+v, %v; want sshd with %s banned", ss, err, v4Host)
	}
	if n, err := c.UnbanAll(ctx); err != nil || n != 1 {
		t.Errorf("UnbanAll = %d, %v; want 1", n, err)
	}
	if bs := e.Bans(""); len(bs) != 0 {
		t.Errorf("engine still holds %v after UnbanAll", bs)
	}
}

// TestJailCommandsWithEngine: version, a jail's config, ignoreip changes
// and reloads, from the client through the handler to the real engine.
func TestJailCommandsWithEngine(t *testing.T) {
	jails := []jail.Config{
		{Name: "sshd", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour, IgnoreIP: []netip.Prefix{v4Net}, IgnoreSelf: true},
		{Name: "web", MaxRetry: 7, FindTime: 10 * time.Minute, BanTime: -1},
	}
	e := openEngine(t, jails...)
	ctx := context.Background()
	_, c := serve(t, NewHandler(engineService{Engine: e, jails: jails}, nil))

	if v, err := c.Version(ctx); err != nil || v != "1.2.3-test" {
		t.Errorf("Version = %q, %v", v, err)
	}
	cfg, err := c.JailConfig(ctx, "web")
	if err != nil || cfg.Name != "web" || cfg.MaxRetry != 7 || cfg.FindTime != 10*time.Minute || cfg.BanTime >= 0 || len(cfg.IgnoreIP) != 0 || cfg.IgnoreSelf {
		t.Errorf("JailConfig(web) = %+v, %v", cfg, err)
	}
	ignored := func(want ...string) {
		t.Helper()
		cfg, err := c.JailConfig(ctx, "sshd")
		if err != nil || cfg.MaxRetry != 3 || cfg.BanTime != time.Hour || !cfg.IgnoreSelf {
			t.Fatalf("JailConfig(sshd) = %+v, %v", cfg, err)
		}
		got := make([]string, len(cfg.IgnoreIP))
		for i, p := range cfg.IgnoreIP {
			got[i] = FormatPrefix(p)
		}
		if !slices.Equal(got, want) {
			t.Errorf("sshd's ignoreip = %v, want %v", got, want)
		}
	}
	ignored("198.51.100.0/24")

	if _, err := c.Ban(ctx, "sshd", "192.0.2.7", 0); err != nil {
		t.Fatal(err)
	}
	list, err := c.AddIgnoreIP(ctx, "sshd", "192.0.2.7", "2001:db8:5::9/48", "198.51.100.0/24")
	if err != nil || len(list) != 3 || list[1] != v4Host || list[2] != netip.MustParsePrefix("2001:db8:5::/48") {
		t.Errorf("AddIgnoreIP = %v, %v", list, err)
	}
	ignored("198.51.100.0/24", "192.0.2.7", "2001:db8:5::/48")
	// The ban active before stays; a new one is refused.
	if bs, _ := c.Bans(ctx, "sshd"); len(bs) != 1 || bs[0].Prefix != v4Host {
		t.Errorf("Bans = %v, want %s kept", bs, v4Host)
	}
	var ae *APIError
	if _, err := c.Ban(ctx, "sshd", "192.0.2.7", 0); !errors.As(err, &ae) || ae.Status != 422 || ae.Message != "refusing to ban 192.0.2.7: listed in ignoreip of jail sshd" {
		t.Errorf("Ban of an ignored address = %v, want 422", err)
	}
	for _, tc := range []struct {
		name       string
		call       func() error
		wantStatus int
		wantErr    string
	}{
		{"del not listed", func() error { _, err := c.DelIgnoreIP(ctx, "sshd", "198.51.100.7"); return err }, 404, `198.51.100.7 is not in ignoreip of jail "sshd"`},
		{"del unknown jail", func() error { _, err := c.DelIgnoreIP(ctx, "nope", "192.0.2.7"); return err }, 404, `unknown jail "nope"`},
		{"add unknown jail", func() error { _, err := c.AddIgnoreIP(ctx, "nope", "192.0.2.7"); return err }, 404, `unknown jail "nope"`},
		{"add nothing", func() error { _, err := c.AddIgnoreIP(ctx, "sshd"); return err }, 400, `"add" holds 0 entries: want 1 to 256`},
		{"add a hostname", func() error { _, err := c.AddIgnoreIP(ctx, "sshd", "192.0.2.9", "localhost"); return err }, 400, `bad "ip" "localhost": want an address (192.0.2.7, 2001:db8::1) or a CIDR prefix (198.51.100.0/24)`},
		{"config unknown jail", func() error { _, err := c.JailConfig(ctx, "nope"); return err }, 404, `unknown jail "nope"`},
		{"reload unknown jail", func() error { _, _, err := c.Reload(ctx, "nope", true); return err }, 404, `unknown jail "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus || ae.Error() != tc.wantErr {
				t.Errorf("err = %v, want %d %q", err, tc.wantStatus, tc.wantErr)
			}
		})
	}
	// Refused requests changed nothing.
	ignored("198.51.100.0/24", "192.0.2.7", "2001:db8:5::/48")
	list, err = c.DelIgnoreIP(ctx, "sshd", "::ffff:192.0.2.7")
	if err != nil || len(list) != 2 || list[0] != v4Net {
		t.Errorf("DelIgnoreIP = %v, %v", list, err)
	}
	if _, err := c.AddIgnoreIP(ctx, "sshd", "203.0.113.1"); err != nil {
		t.Fatal(err)
	}

	// A reload sets the list from the configuration again and keeps the
	// bans; with unban it lifts those of the jail named.
	if _, err := c.Ban(ctx, "web", "203.0.113.50", 0); err != nil {
		t.Fatal(err)
	}
	names, n, err := c.Reload(ctx, "sshd", false)
	if err != nil || !slices.Equal(names, []string{"sshd", "web"}) || n != 0 {
		t.Errorf("Reload = %v, %d, %v", names, n, err)
	}
	ignored("198.51.100.0/24")
	if bs, _ := c.Bans(ctx, ""); len(bs) != 2 {
		t.Errorf("bans after reload = %v, want both kept", bs)
	}
	if _, n, err := c.Reload(ctx, "sshd", true); err != nil || n != 1 {
		t.Errorf("Reload sshd --unban = %d, %v; want 1 lifted", n, err)
	}
	if bs, _ := c.Bans(ctx, ""); len(bs) != 1 || bs[0].Jail != "web" {
		t.Errorf("bans after reload --unban sshd = %v, want web's kept", bs)
	}
	if _, n, err := c.Reload(ctx, "", true); err != nil || n != 1 {
		t.Errorf("Reload --unban = %d, %v; want 1 lifted", n, err)
	}
}
