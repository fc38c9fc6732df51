package nftables_test

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	gnft "github.com/google/nftables"

	"github.com/moatproj/moat/firewall"
)

// largeBans is n addresses banned in sshd, each with its own expiry, so
// that each is an element of its own (adjacent addresses banned until the
// same instant are joined into one).
func largeBans(n int, now time.Time) []firewall.Ban {
	var bans []firewall.Ban
	for i := range n {
		v4 := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		bans = append(bans, firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(v4, 32), Expires: now.Add(time.Hour + time.Duration(i)*time.Millisecond)})
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

// BenchmarkCheck measures one firewall check at 1k, 10k and 100k bans:
// "gen" when the ruleset's generation shows nothing changed (the common
// case, every second), "full" when every element is read back and
// compared (after someone else wrote to nftables, and once a minute).
func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, full := range []bool{false, true} {
			name := strconv.Itoa(n) + "/gen"
			if full {
				name = strconv.Itoa(n) + "/full"
			}
			b.Run(name, func(b *testing.B) {
				be, _, raw := setup(b)
				now := time.Now()
				if err := be.Sync(context.Background(), jails, largeBans(n, now), now); err != nil {
					b.Fatal(err)
				}
				if _, err := be.Check(context.Background(), time.Now()); err != nil {
					b.Fatal(err) // the first check after Sync
				}
				other := &gnft.Table{Name: "bench_other", Family: gnft.TableFamilyINet}
				made := false
				for b.Loop() {
					if full {
						// Anyone else's transaction moves the generation:
						// a table of another name made or deleted is one.
						if made {
							raw.DelTable(other)
						} else {
							raw.AddTable(other)
						}
						made = !made
						if err := raw.Flush(); err != nil {
							b.Fatal(err)
						}
					}
					if full {
						be.SpaceFullChecks(0, time.Time{}) // measure each, unspaced
					}
					rep, err := be.Check(context.Background(), time.Now())
					if err != nil || !rep.Matched() || rep.Full != full {
						b.Fatalf("Check = %+v, %v, want matched, full %v", rep, err, full)
					}
				}
			})
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

// BenchmarkOverlapChurn measures a ban and its unban (two transactions)
// under heavy overlap: a /16 banned for an hour, with 10,000 addresses
// inside it banned for two hours (so the /16 is cut into about 20,000
// spans). "addr" bans and lifts one more address inside; "prefix" a /24
// inside, over a few dozen of the addresses.
func BenchmarkOverlapChurn(b *testing.B) {
	for _, kind := range []string{"addr", "prefix"} {
		b.Run(kind, func(b *testing.B) {
			be, _, _ := setup(b)
			now := time.Now()
			bans := []firewall.Ban{{Jail: "sshd", Prefix: netip.MustParsePrefix("198.51.0.0/16"), Expires: now.Add(time.Hour)}}
			for i := range 10000 {
				a := netip.AddrFrom4([4]byte{198, 51, byte(i / 40), byte(i%40*6 + 1)})
				bans = append(bans, firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Expires: now.Add(2 * time.Hour)})
			}
			ctx := context.Background()
			if err := be.Sync(ctx, jails, bans, now); err != nil {
				b.Fatal(err)
			}
			p := netip.MustParsePrefix("198.51.100.2/32")
			if kind == "prefix" {
				p = netip.MustParsePrefix("198.51.100.0/24")
			}
			ban := []firewall.Ban{{Jail: "sshd", Prefix: p, Expires: now.Add(3 * time.Hour)}}
			for b.Loop() {
				if err := be.Add(ctx, ban, now); err != nil {
					b.Fatal(err)
				}
				if err := be.Delete(ctx, ban); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
