package control

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/jail"
)

// The real engine is what the daemon serves.
var _ Service = (*jail.Engine)(nil)

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

// TestWithEngine runs the client against the real jail engine (state in a
// temp dir), checking that its errors map to the answers the CLI expects.
func TestWithEngine(t *testing.T) {
	now := t0
	e, err := jail.Open(jail.Options{
		StateDir:  t.TempDir(),
		Firewall:  noFirewall{},
		Now:       func() time.Time { return now },
		SelfAddrs: func() []netip.Addr { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.Configure(ctx, []jail.Config{{Name: "sshd", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	_, c := serve(t, NewHandler(e, nil))

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
