package proxy

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzFastMatchesNetHTTP: any bytes a client sends get the same answers
// (status codes, and whether the connection stays open) and reach the
// upstream as the same requests, through the fast path and through
// net/http alone.
func FuzzFastMatchesNetHTTP(f *testing.F) {
	for _, s := range fastCases {
		f.Add([]byte(s))
	}
	for _, c := range hostileCases {
		f.Add([]byte(c.raw))
	}
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	var ups [2]*seenUpstream
	var addrs [2]string
	for i, fast := range []bool{true, false} {
		ups[i] = newSeenUpstream(f)
		cfg := Config{ReadHeaderTimeout: time.Second, Routes: []Route{
			{Hosts: []string{"app.example"}, Upstreams: []string{hostPort(ups[i].Server)}},
			{Hosts: []string{"app.example"}, Path: "/api", Upstreams: []string{ups[i].URL + "/base"}},
		}}
		_, addrs[i] = startProxyPath(f, cfg, nil, fast)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got [2]string
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				var err error
				if got[i], err = answersOf(addrs[i], raw, 150*time.Millisecond, 150*time.Millisecond); err != nil {
					got[i] = "error: " + err.Error()
				}
			})
		}
		wg.Wait()
		seen := [2]string{strings.Join(ups[0].take(), "\n--\n"), strings.Join(ups[1].take(), "\n--\n")}
		if got[0] != got[1] {
			t.Errorf("%q: fast path answered %s, net/http %s", raw, got[0], got[1])
		}
		if seen[0] != seen[1] {
			t.Errorf("%q: upstream got from the fast path\n%s\nfrom net/http\n%s", raw, seen[0], seen[1])
		}
	})
}
