package main

import (
	"net/netip"
	"testing"
	"time"
)

func rngs(ss ...string) []rng {
	var out []rng
	for i := 0; i < len(ss); i += 2 {
		out = append(out, rng{netip.MustParseAddr(ss[i]), netip.MustParseAddr(ss[i+1])})
	}
	return out
}

func TestRanges(t *testing.T) {
	got := mergeRanges(append(rngs("203.0.113.16", "203.0.113.31", "203.0.113.0", "203.0.113.15", "203.0.113.40", "203.0.113.40"),
		prefixRange(netip.MustParsePrefix("203.0.113.20/30"))))
	want := rngs("203.0.113.0", "203.0.113.31", "203.0.113.40", "203.0.113.40")
	if rngList(got) != rngList(want) {
		t.Fatalf("merge: got %s, want %s", rngList(got), rngList(want))
	}
	if d := subtract(want, rngs("203.0.113.8", "203.0.113.9", "203.0.113.31", "203.0.113.40")); rngList(d) != "203.0.113.0-203.0.113.7, 203.0.113.10-203.0.113.30" {
		t.Fatalf("subtract: got %s", rngList(d))
	}
	if !covers(want, netip.MustParseAddr("203.0.113.31")) || covers(want, netip.MustParseAddr("203.0.113.32")) {
		t.Fatal("covers")
	}
	if r := prefixRange(netip.MustParsePrefix("2001:db8:f000::/36")); r.last != netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff") {
		t.Fatalf("prefixRange: %s", r)
	}
}

func TestParseNftSet(t *testing.T) {
	const out = `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "sshd_v4", "table": "moat", "type": "ipv4_addr",
	"flags": ["interval", "timeout"], "elem": [{"elem": {"val": {"prefix": {"addr": "203.0.113.0", "len": 28}}, "timeout": 599, "expires": 598}},
	{"elem": {"val": "203.0.113.20", "timeout": 3599, "expires": 3599}}, {"elem": {"val": {"range": ["203.0.113.21", "203.0.113.31"]}, "timeout": 1799, "expires": 1799}},
	"203.0.113.40", {"range": ["203.0.113.50", "203.0.113.60"]}]}}]}`
	els, err := parseNftSet(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		r     string
		never bool
		left  time.Duration
	}{
		{"203.0.113.0-203.0.113.15", false, 598 * time.Second},
		{"203.0.113.20", false, 3599 * time.Second},
		{"203.0.113.21-203.0.113.31", false, 1799 * time.Second},
		{"203.0.113.40", true, 0},
		{"203.0.113.50-203.0.113.60", true, 0},
	}
	if len(els) != len(want) {
		t.Fatalf("got %d elements, want %d", len(els), len(want))
	}
	for i, w := range want {
		if e := els[i]; e.r.String() != w.r || e.never != w.never || e.left != w.left {
			t.Errorf("element %d: got %s never=%v left=%s, want %s never=%v left=%s", i, e.r, e.never, e.left, w.r, w.never, w.left)
		}
	}
}

// A ban of an active ban keeps the later expiry; no end beats any.
func TestMerge(t *testing.T) {
	t0 := time.Now()
	long := &mban{lo: t0.Add(time.Hour), hi: t0.Add(time.Hour + time.Second)}
	short := &mban{lo: t0.Add(5 * time.Second), hi: t0.Add(6 * time.Second), short: true}
	if m := merge(long, short); m.lo != long.lo || m.hi != long.hi || m.short {
		t.Errorf("long then short: %+v", m)
	}
	if m := merge(short, long); m.lo != long.lo || m.hi != long.hi || m.short {
		t.Errorf("short then long: %+v", m)
	}
	if m := merge(&mban{never: true}, short); !m.never {
		t.Errorf("no end then short: %+v", m)
	}
}

func TestJailKey(t *testing.T) {
	j := &jailSpec{v6prefix: 56}
	if k := j.key(netip.MustParseAddr("2001:db8:d12:34ff::1")); k.String() != "2001:db8:d12:3400::/56" {
		t.Errorf("v6 key: %s", k)
	}
	if k := j.key(netip.MustParseAddr("192.0.2.7")); k.String() != "192.0.2.7/32" {
		t.Errorf("v4 key: %s", k)
	}
}
