package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/jail"
)

// TestBanAnswer: the answer of POST /v1/bans is the ban as it now stands,
// against the real engine: the prefix banned (an IPv6 address by the
// jail's /64), the kept expiry of a re-ban with "previous" and "kept", and
// the reason of each refusal.
func TestBanAnswer(t *testing.T) {
	var mu sync.Mutex
	now := t0
	e, err := jail.Open(jail.Options{
		StateDir:  t.TempDir(),
		Firewall:  noFirewall{},
		Now:       func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		SelfAddrs: func() []netip.Addr { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	if err := e.Configure(ctx, []jail.Config{{Name: "sshd", MaxRetry: 3, FindTime: time.Minute, BanTime: time.Hour, IPv6Prefix: 64}}); err != nil {
		t.Fatal(err)
	}
	_, c := serve(t, NewHandler(engineService{Engine: e}, nil))

	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	tests := []struct {
		name    string
		ip, dur string
		later   time.Duration // the clock moves on this much first
		want    map[string]any
		// wantPrev is the "previous" answered, nil for none.
		wantPrev map[string]any
	}{
		{"plain ban", "192.0.2.7", "30m", 0,
			map[string]any{"ip": "192.0.2.7", "expires_at": at(30 * time.Minute), "count": 1.0}, nil},
		{"re-ban keeps the later expiry", "192.0.2.7", "5m", time.Minute,
			map[string]any{"ip": "192.0.2.7", "expires_at": at(30 * time.Minute), "count": 1.0, "banned_at": at(0), "kept": true},
			map[string]any{"expires_at": at(30 * time.Minute)}},
		{"re-ban extends", "192.0.2.7", "2h", 0,
			map[string]any{"ip": "192.0.2.7", "expires_at": at(time.Minute + 2*time.Hour), "count": 1.0, "banned_at": at(0)},
			map[string]any{"expires_at": at(30 * time.Minute)}},
		{"re-ban without end", "192.0.2.7", "-1", 0,
			map[string]any{"ip": "192.0.2.7", "expires_at": nil, "count": 1.0},
			map[string]any{"expires_at": at(time.Minute + 2*time.Hour)}},
		{"ipv6 address widened to the jail's /64", "2001:db8:1::5", "1h", 0,
			map[string]any{"ip": "2001:db8:1::/64", "expires_at": at(time.Minute + time.Hour), "count": 1.0}, nil},
		{"another address of that /64", "2001:db8:1::9", "1m", 0,
			map[string]any{"ip": "2001:db8:1::/64", "expires_at": at(time.Minute + time.Hour), "kept": true},
			map[string]any{"ip": "2001:db8:1::/64"}},
		{"explicit /48", "2001:db8:2::/48", "1h", 0,
			map[string]any{"ip": "2001:db8:2::/48"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			now = now.Add(tc.later)
			mu.Unlock()
			body, _ := json.Marshal(banRequest{Jail: "sshd", IP: tc.ip, For: tc.dur})
			status, _, b := raw(t, c, "POST", "/v1/bans", string(body))
			if status != http.StatusOK {
				t.Fatalf("POST /v1/bans %s = %d %s", body, status, b)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("answer %s: %s = %#v, want %#v", b, k, got[k], v)
				}
			}
			if _, ok := tc.want["kept"]; !ok {
				if _, has := got["kept"]; has {
					t.Errorf("answer %s has \"kept\", want none", b)
				}
			}
			prev, has := got["previous"].(map[string]any)
			switch {
			case tc.wantPrev == nil && got["previous"] != nil:
				t.Errorf("answer %s has a previous ban, want none", b)
			case tc.wantPrev != nil && !has:
				t.Errorf("answer %s has no previous ban", b)
			}
			for k, v := range tc.wantPrev {
				if prev[k] != v {
					t.Errorf("answer %s: previous %s = %#v, want %#v", b, k, prev[k], v)
				}
			}
		})
	}

	// The client decodes the same answer into the ban and its Previous.
	mu.Lock()
	now = t0.Add(time.Hour)
	mu.Unlock()
	b, err := c.Ban(ctx, "sshd", "203.0.113.9", 2*time.Hour)
	if err != nil || b.Previous != nil || !b.Expires.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("Ban = %+v, %v; want a 2h ban without previous", b, err)
	}
	b, err = c.Ban(ctx, "sshd", "203.0.113.9", time.Minute)
	if err != nil || b.Previous == nil || !b.Previous.Expires.Equal(t0.Add(3*time.Hour)) || !b.Expires.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("re-Ban = %+v (previous %+v), %v; want the 2h ban kept", b, b.Previous, err)
	}
	// moat bans --json keeps its fields: no previous, no kept.
	status, _, list := raw(t, c, "GET", "/v1/bans?jail=sshd", "")
	var bans []map[string]any
	if err := json.Unmarshal(list, &bans); status != 200 || err != nil || len(bans) != 4 {
		t.Fatalf("GET /v1/bans = %d %s", status, list)
	}
	for _, b := range bans {
		for _, k := range []string{"previous", "kept"} {
			if _, ok := b[k]; ok {
				t.Errorf("listed ban %v has %q", b, k)
			}
		}
	}

	for _, tc := range []struct{ ip, want string }{
		{"169.254.1.1", "refusing to ban 169.254.1.1: link-local address"},
		{"::ffff:169.254.1.1", "refusing to ban 169.254.1.1: link-local address"},
		{"169.254.9.0/24", "refusing to ban 169.254.9.0/24: link-local address"},
		{"fe80::1", "refusing to ban fe80::1: link-local address"},
		{"224.0.0.251", "refusing to ban 224.0.0.251: multicast address"},
		{"ff02::1", "refusing to ban ff02::1: multicast address"},
		{"255.255.255.255", "refusing to ban 255.255.255.255: limited broadcast address (255.255.255.255)"},
		{"255.255.255.0/24", "refusing to ban 255.255.255.0/24: limited broadcast address (255.255.255.255)"},
		{"0.0.0.0", "refusing to ban 0.0.0.0: unspecified address"},
		{"::", "refusing to ban ::: unspecified address"},
		{"::2", "refusing to ban ::/64: unspecified address"},
	} {
		t.Run("refused "+tc.ip, func(t *testing.T) {
			_, err := c.Ban(ctx, "sshd", tc.ip, 0)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Error() != tc.want {
				t.Errorf("Ban(%s) = %v, want 422 %q", tc.ip, err, tc.want)
			}
		})
	}
}
