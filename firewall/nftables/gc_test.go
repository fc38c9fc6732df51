package nftables_test

import (
	"context"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
)

// TestAddAcrossTimedOutElement: the kernel keeps a timed-out element until
// it collects the set's garbage at a commit, at most once a second, and
// until then refuses a new interval across its end as an overlap. The
// backend makes it collect and sends the transaction again: the new ban
// goes in (at most about a second later), and no ban in force lapses.
func TestAddAcrossTimedOutElement(t *testing.T) {
	b, ns, _ := setup(t)
	ctx := context.Background()
	mustSync(t, b, jails, nil, time.Now())
	now := time.Now()
	if err := b.Add(ctx, []firewall.Ban{{Jail: "sshd", Prefix: pfx("2001:db8:0:2::1/128"), Expires: now.Add(300 * time.Millisecond)}}, now); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []firewall.Ban{{Jail: "sshd", Prefix: pfx("2001:db8:0:1::/124"), Expires: now.Add(time.Hour)}}, now); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the kernel times the first ban out
	now = time.Now()
	err := b.Add(ctx, []firewall.Ban{{Jail: "sshd", Prefix: pfx("2001:db8::/48"), Expires: now.Add(2 * time.Hour)}}, now)
	if err != nil {
		t.Fatalf("Add of a /48 across a timed-out element: %v", err)
	}
	t.Logf("written after %v", time.Since(now))
	wantKernel(t, ns, "sshd_v6", map[string]bool{"2001:db8::": true, "2001:db8:0:2::1": true, "2001:db8:0:ffff::1": true, "2001:db8:1::": false})
	mustMatch(t, b)
}

// TestReaddAfterExpiry: a ban of an address whose earlier ban timed out a
// moment ago. The kernel would take the new element for the timed-out one
// (same key) and drop both when it collects: the backend makes it collect
// first, so the new ban is still there after the next collection.
func TestReaddAfterExpiry(t *testing.T) {
	b, ns, _ := setup(t)
	ctx := context.Background()
	mustSync(t, b, jails, nil, time.Now())
	now := time.Now()
	short := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.7/32"), Expires: now.Add(300 * time.Millisecond)},
		{Jail: "sshd", Prefix: pfx("203.0.113.64/26"), Expires: now.Add(300 * time.Millisecond)},
	}
	if err := b.Add(ctx, short, now); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // the kernel times the short bans out
	now = time.Now()
	again := []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.7/32"), Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("203.0.113.96/27"), Expires: now.Add(time.Hour)}, // same end as the /26
	}
	if err := b.Add(ctx, again, now); err != nil {
		t.Fatal(err)
	}
	// Another commit more than a second later: the kernel collects then.
	time.Sleep(1200 * time.Millisecond)
	if err := b.Add(ctx, []firewall.Ban{{Jail: "sshd", Prefix: pfx("192.0.2.9/32"), Expires: time.Now().Add(time.Hour)}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	wantKernel(t, ns, "sshd_v4", map[string]bool{"203.0.113.7": true, "203.0.113.96": true, "203.0.113.127": true, "203.0.113.64": false})
	mustMatch(t, b)
}
