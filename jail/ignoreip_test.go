package jail

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatproj/moat/sources"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

// TestIgnoreIPChange: an address added to a running jail's ignore list is
// neither counted nor banned afterwards, by hand or by failures; its ban
// active before stays (as fail2ban's addignoreip leaves it); removing it
// bans it again; the list is the configuration's again after a reload.
func TestIgnoreIPChange(t *testing.T) {
	sshd := jailCfg("sshd")
	sshd.IgnoreIP = prefixes("198.51.100.0/24")
	r := newRig(t, sshd, jailCfg("web"))

	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.9/32"), time.Hour); err != nil {
		t.Fatal(err)
	}
	got, err := r.e.AddIgnoreIP("sshd", pfx("203.0.113.9/32"), pfx("203.0.113.5/32"), pfx("2001:db8:7::1/48"), pfx("198.51.100.0/24"), pfx("::ffff:203.0.113.5/128"))
	if err != nil {
		t.Fatal(err)
	}
	want := prefixes("198.51.100.0/24", "203.0.113.9/32", "203.0.113.5/32", "2001:db8:7::/48")
	if !slices.Equal(got, want) {
		t.Errorf("AddIgnoreIP = %v, want %v (masked, duplicates skipped, in order)", got, want)
	}
	if c, err := r.e.JailConfig("sshd"); err != nil || !slices.Equal(c.IgnoreIP, want) || c.MaxRetry != 3 || c.BanTime != time.Hour {
		t.Errorf("JailConfig = %+v, %v; want the changed list", c, err)
	}
	if c, _ := r.e.JailConfig("web"); len(c.IgnoreIP) != 0 {
		t.Errorf("web's ignoreip = %v, want it untouched", c.IgnoreIP)
	}
	// The ban active before stays.
	if bs := r.e.Bans("sshd"); len(bs) != 1 || bs[0].Prefix != pfx("203.0.113.9/32") {
		t.Errorf("bans = %v, want 203.0.113.9 still banned", bs)
	}
	// Never banned afterwards: not by hand, not by failures, not in a /64.
	var ref *RefusedError
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), 0); !errors.As(err, &ref) || ref.Reason != "listed in ignoreip of jail sshd" {
		t.Errorf("Ban of an added address = %v, want refused by ignoreip", err)
	}
	if _, err := r.e.Ban(ctx, "sshd", pfx("2001:db8:7:0:1::2/128"), 0); !errors.As(err, &ref) {
		t.Errorf("Ban inside an added /48 = %v, want refused", err)
	}
	for i := range 5 {
		if b := r.fail("sshd", "203.0.113.5", t0, sources.Position{}); b != nil {
			t.Fatalf("failure %d banned an ignored address: %+v", i, b)
		}
	}
	if st, _ := r.e.Status("sshd"); st[0].TotalFailed != 0 {
		t.Errorf("TotalFailed = %d, want ignored failures uncounted", st[0].TotalFailed)
	}
	// web still bans it.
	if _, err := r.e.Ban(ctx, "web", pfx("203.0.113.5/32"), time.Hour); err != nil {
		t.Errorf("web's ban of 203.0.113.5 = %v", err)
	}

	// Removal: exact entries only.
	for _, tc := range []struct {
		name string
		p    netip.Prefix
	}{
		{"address inside a listed prefix", pfx("198.51.100.7/32")},
		{"never listed", pfx("192.0.2.99/32")},
		{"invalid", netip.Prefix{}},
	} {
		if _, err := r.e.DelIgnoreIP("sshd", tc.p); !errors.Is(err, ErrNotIgnored) {
			t.Errorf("DelIgnoreIP %s = %v, want ErrNotIgnored", tc.name, err)
		}
	}
	got, err = r.e.DelIgnoreIP("sshd", pfx("203.0.113.5/32"))
	want = prefixes("198.51.100.0/24", "203.0.113.9/32", "2001:db8:7::/48")
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("DelIgnoreIP = %v, %v; want %v", got, err, want)
	}
	if _, err := r.e.Ban(ctx, "sshd", pfx("203.0.113.5/32"), time.Hour); err != nil {
		t.Errorf("Ban after removal = %v", err)
	}

	// Refusals change nothing.
	if _, err := r.e.AddIgnoreIP("nosuch", pfx("192.0.2.1/32")); !errors.Is(err, ErrUnknownJail) {
		t.Errorf("AddIgnoreIP on an unknown jail = %v", err)
	}
	if _, err := r.e.DelIgnoreIP("nosuch", pfx("192.0.2.1/32")); !errors.Is(err, ErrUnknownJail) {
		t.Errorf("DelIgnoreIP on an unknown jail = %v", err)
	}
	if _, err := r.e.JailConfig("nosuch"); !errors.Is(err, ErrUnknownJail) {
		t.Errorf("JailConfig of an unknown jail = %v", err)
	}
	if _, err := r.e.AddIgnoreIP("sshd", pfx("192.0.2.1/32"), netip.Prefix{}); err == nil {
		t.Error("AddIgnoreIP took an invalid prefix")
	}
	if c, _ := r.e.JailConfig("sshd"); !slices.Equal(c.IgnoreIP, want) {
		t.Errorf("ignoreip after refused changes = %v, want %v", c.IgnoreIP, want)
	}
	// A copy handed out is not changed by later edits.
	before, _ := r.e.JailConfig("sshd")
	if _, err := r.e.AddIgnoreIP("sshd", pfx("192.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before.IgnoreIP, want) {
		t.Errorf("an earlier JailConfig's list changed to %v", before.IgnoreIP)
	}

	// A reload sets the list from the configuration again, and keeps the
	// ban of 203.0.113.9 the configuration does not refuse.
	if err := r.e.Configure(ctx, []Config{sshd, jailCfg("web")}); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.e.JailConfig("sshd"); !slices.Equal(c.IgnoreIP, prefixes("198.51.100.0/24")) {
		t.Errorf("ignoreip after reload = %v, want the configuration's", c.IgnoreIP)
	}
	if !slices.ContainsFunc(r.e.Bans("sshd"), func(b Ban) bool { return b.Prefix == pfx("203.0.113.9/32") }) {
		t.Error("reload lifted 203.0.113.9's ban")
	}
}
