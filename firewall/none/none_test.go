package none

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
)

func TestNone(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := now
	b := NewWithClock(slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return clock })
	ctx := context.Background()
	p := netip.MustParsePrefix
	jails := []firewall.Jail{{Name: "sshd"}}

	if b.Name() != "none" {
		t.Errorf("Name = %q", b.Name())
	}
	long := firewall.Ban{Jail: "sshd", Prefix: p("192.0.2.1/32"), Expires: now.Add(time.Hour)}
	short := firewall.Ban{Jail: "sshd", Prefix: p("192.0.2.2/32"), Expires: now.Add(time.Minute)}
	forever := firewall.Ban{Jail: "sshd", Prefix: p("2001:db8::/64")}
	old := firewall.Ban{Jail: "sshd", Prefix: p("192.0.2.3/32"), Expires: now.Add(-time.Second)}
	if err := b.Sync(ctx, jails, []firewall.Ban{long, old}, now); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []firewall.Ban{short, forever}, now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		at   time.Time
		del  []firewall.Ban
		want []firewall.Ban
	}{
		{"all live", now, nil, []firewall.Ban{long, short, forever}},
		{"short expired", now.Add(2 * time.Minute), nil, []firewall.Ban{long, forever}},
		{"deleted", now.Add(2 * time.Minute), []firewall.Ban{long}, []firewall.Ban{forever}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock = tt.at
			if err := b.Delete(ctx, tt.del); err != nil {
				t.Fatal(err)
			}
			got, _ := b.List(ctx)
			if len(got) != len(tt.want) {
				t.Fatalf("List = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("List[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
	if rep, err := b.Check(ctx, time.Now()); !rep.Matched() || err != nil {
		t.Errorf("Check = %+v, %v, want matched", rep, err)
	}
	out := logs.String()
	for _, want := range []string{
		"would sync", "jails=1 bans=1",
		"would ban", "jail=sshd prefix=192.0.2.2/32 expires=2026-01-02T03:05:05",
		"prefix=2001:db8::/64 expires=never",
		"would unban", "prefix=192.0.2.1/32",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "would ban"); n != 2 {
		t.Errorf("%d ban lines, want 2 (one per ban)", n)
	}
}
