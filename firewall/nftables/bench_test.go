package nftables_test

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
)

func largeBans(n int, now time.Time) []firewall.Ban {
	var bans []firewall.Ban
	for i := range n {
		v4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		bans = append(bans, firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(v4, 32), Expires: now.Add(time.Hour)})
	}
	return bans
}

func BenchmarkList50k(b *testing.B) {
	be, _, _ := setup(b)
	now := time.Now()
	if err := be.Sync(context.Background(), jails, largeBans(50000, now), now); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := be.List(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIntact(b *testing.B) {
	be, _, _ := setup(b)
	now := time.Now()
	if err := be.Sync(context.Background(), jails, largeBans(1000, now), now); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := be.Intact(context.Background()); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkAddDelete(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchAddDelete(b, n) })
	}
}

func benchAddDelete(b *testing.B, n int) {
	be, _, _ := setup(b)
	now := time.Now()
	ctx := context.Background()
	if err := be.Sync(ctx, jails, largeBans(n, now), now); err != nil {
		b.Fatal(err)
	}
	ban := []firewall.Ban{{Jail: "sshd", Prefix: netip.MustParsePrefix("192.0.2.1/32"), Expires: now.Add(time.Hour)}}
	for b.Loop() {
		if err := be.Add(ctx, ban, now); err != nil {
			b.Fatal(err)
		}
		if err := be.Delete(ctx, ban); err != nil {
			b.Fatal(err)
		}
	}
}

func bans100k(now time.Time) []firewall.Ban {
	bans := largeBans(50000, now)
	for i := range 50000 {
		var a [16]byte
		copy(a[:], netip.MustParseAddr("2001:db8::").AsSlice())
		a[4], a[5], a[6] = byte(i>>16), byte(i>>8), byte(i)
		bans = append(bans, firewall.Ban{Jail: "web-app", Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 64), Expires: now.Add(time.Hour)})
	}
	return bans
}

// BenchmarkSyncRebuild100k measures a Sync of 100k bans into an empty
// namespace (after `nft flush ruleset`).
func BenchmarkSyncRebuild100k(b *testing.B) {
	be, _, raw := setup(b)
	now := time.Now()
	bans := bans100k(now)
	for b.Loop() {
		raw.FlushRuleset()
		if err := raw.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := be.Sync(context.Background(), jails, bans, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSyncUnchanged100k measures a Sync of 100k bans the kernel holds
// already (reading them back dominates).
func BenchmarkSyncUnchanged100k(b *testing.B) {
	be, _, _ := setup(b)
	now := time.Now()
	bans := bans100k(now)
	if err := be.Sync(context.Background(), jails, bans, now); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := be.Sync(context.Background(), jails, bans, now); err != nil {
			b.Fatal(err)
		}
	}
}
