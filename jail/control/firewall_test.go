package control

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/jail"
)

// TestFirewallStatusRoundTrip: GET /v1/firewall carries what the checks
// found, with null times before any, and the client reads it back as it was.
func TestFirewallStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		st   jail.FirewallStatus
		raw  []string // parts of the raw JSON
	}{
		{"before any check", jail.FirewallStatus{Backend: "nftables", Repairs: map[string]int{}},
			[]string{`"backend":"nftables"`, `"last_check":null`, `"last_repair":null`, `"matched":false`}},
		{"matched, repaired before", jail.FirewallStatus{Backend: "nftables", LastCheck: t0.Add(time.Minute), Matched: true,
			LastRepair: t0, LastRepairKinds: map[string]int{"missing": 2}, Repairs: map[string]int{"missing": 2, "stray": 1}},
			[]string{`"matched":true`, `"last_check":"2026-11-26T12:01:00Z"`, `"last_repair":"2026-11-26T12:00:00Z"`, `"repairs":{"missing":2,"stray":1}`}},
		{"failed", jail.FirewallStatus{Backend: "nftables", LastCheck: t0, Err: "nftables check: boom", Repairs: map[string]int{}},
			[]string{`"error":"nftables check: boom"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &fakeService{firewall: tt.st}
			sock, c := serve(t, NewHandler(svc, nil))
			got, err := c.Firewall(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.st) {
				t.Errorf("Firewall = %+v, want %+v", got, tt.st)
			}
			resp, err := newHTTPClient(sock).Get("http://moat/v1/firewall")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for _, part := range tt.raw {
				if !strings.Contains(string(body), part) {
					t.Errorf("answer %s lacks %s", body, part)
				}
			}
		})
	}
}
