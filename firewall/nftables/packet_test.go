package nftables_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"
)

// TestPacketDrop joins two namespaces with a veth pair; a TCP server runs
// in A (which holds the table), a client dials from B.
func TestPacketDrop(t *testing.T) {
	a, bns := nftest.New(t), nftest.New(t)
	nftest.Veth(t, a, bns, []string{"192.0.2.1/24", "2001:db8::1/64"}, []string{"192.0.2.2/24", "2001:db8::2/64"})

	addr4 := a.ServeTCP(t, "192.0.2.1:0")
	addr6 := a.ServeTCP(t, "[2001:db8::1]:0")
	port4 := portOf(t, addr4)
	port6 := portOf(t, addr6)
	// dial reports whether a connection from B to addr succeeds; one
	// expected to succeed gets seconds (a loaded machine may be slow to
	// answer), one expected to be dropped 300 ms.
	dialWant := func(addr string, want bool) bool {
		if want {
			return bns.CanDial(t, addr, 3*time.Second)
		}
		return bns.CanDial(t, addr, 300*time.Millisecond)
	}
	dial := func(addr string) bool { return dialWant(addr, true) }

	b, err := nftables.New(nftables.Options{NetNS: a.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	now := time.Now()
	otherPort := port4 + 1
	if otherPort == 0 {
		otherPort = 1
	}
	js := []firewall.Jail{
		{Name: "sshd"},
		{Name: "web", Ports: []firewall.PortRange{{First: otherPort, Last: otherPort}}},
		{Name: "ranged", Ports: []firewall.PortRange{{First: min(port4, port6) - 1, Last: max(port4, port6)}}},
	}
	if err := b.Sync(ctx, js, nil, now); err != nil {
		t.Fatal(err)
	}
	if !dial(addr4) || !dial(addr6) {
		t.Fatal("connect without bans failed")
	}

	steps := []struct {
		name  string
		ban   firewall.Ban
		want4 bool
		want6 bool
	}{
		{"v4 ban blocks", firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.2/32"), Expires: now.Add(time.Hour)}, false, true},
		{"v6 /64 ban blocks", firewall.Ban{Jail: "sshd", Prefix: pfx("2001:db8::/64")}, true, false},
		{"other address does not block", firewall.Ban{Jail: "sshd", Prefix: pfx("192.0.2.3/32")}, true, true},
		{"ban on another port does not block", firewall.Ban{Jail: "web", Prefix: pfx("192.0.2.0/24")}, true, true},
		{"ban on a port range blocks", firewall.Ban{Jail: "ranged", Prefix: pfx("192.0.2.2/32")}, false, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := b.Add(ctx, []firewall.Ban{st.ban}, now); err != nil {
				t.Fatalf("Add: %v", err)
			}
			if got := dialWant(addr4, st.want4); got != st.want4 {
				t.Errorf("after Add: IPv4 connect = %v, want %v", got, st.want4)
			}
			if got := dialWant(addr6, st.want6); got != st.want6 {
				t.Errorf("after Add: IPv6 connect = %v, want %v", got, st.want6)
			}
			if err := b.Delete(ctx, []firewall.Ban{st.ban}); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if !dial(addr4) || !dial(addr6) {
				t.Error("after Delete: connect failed, want success")
			}
		})
	}
}

func portOf(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}
