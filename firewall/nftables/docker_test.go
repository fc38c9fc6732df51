package nftables_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/nftables/nftest"

	"github.com/moatproj/moat/internal/testkit"
)

// dockerFamily is one address family of the Docker host the test builds:
// a bridge "docker0" in a "host" namespace with one container behind it,
// host port 8080 published to the container's port 80, a host service on
// 2222, and a client namespace with two addresses on the host's other side.
type dockerFamily struct {
	name            string // "IPv4", "IPv6"
	host, hostLen   string // the host's address on the client link
	bridge          string // the host's address on docker0, CIDR form
	container, cLen string // the container's address and prefix length
	banned, other   string // the client's addresses
	subnet          string // the container network
	loopback        string
	nft             string // the nftables family of Docker's table
	iptables        string // "iptables" or "ip6tables"
	full            string // "/32" or "/128"
}

var dockerFamilies = []dockerFamily{
	{
		name: "IPv4", host: "192.0.2.1", hostLen: "/24", bridge: "198.51.100.1/24",
		container: "198.51.100.2", cLen: "/24", banned: "192.0.2.2", other: "192.0.2.3",
		subnet: "198.51.100.0/24", loopback: "127.0.0.0/8", nft: "ip", iptables: "iptables", full: "/32",
	},
	{
		name: "IPv6", host: "2001:db8:1::1", hostLen: "/64", bridge: "2001:db8:2::1/64",
		container: "2001:db8:2::2", cLen: "/64", banned: "2001:db8:1::2", other: "2001:db8:1::3",
		subnet: "2001:db8:2::/64", loopback: "::1/128", nft: "ip6", iptables: "ip6tables", full: "/128",
	},
}

const (
	dockerBridge  = "docker0"
	publishedPort = 8080
)

// hostPort is the host's address with port, for dialling.
func (f dockerFamily) hostPort(port string) string { return net.JoinHostPort(f.host, port) }

// expand fills the placeholders of a rule template with f's addresses.
func (f dockerFamily) expand(tmpl string) string {
	return strings.NewReplacer(
		"{{ip}}", f.nft,
		"{{subnet}}", f.subnet,
		"{{ctr}}", f.container,
		"{{ctr/}}", f.container+f.full,
		"{{ctrport}}", net.JoinHostPort(f.container, "80"),
		"{{loopback}}", f.loopback,
	).Replace(tmpl)
}

// dockerIPTables is what Docker's iptables backend (Docker 27 and earlier,
// userland proxy on, the default) writes for `docker run -p 8080:80` on the
// default bridge, loaded with iptables-restore --noflush (ip6tables-restore
// for IPv6, with placeholders filled by expand). With iptables-nft (the
// default on current distributions) these become `table ip nat` and
// `table ip filter` (ip6 for IPv6) beside moat's table; with
// iptables-legacy they live in x_tables, outside nftables.
const dockerIPTables = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d {{loopback}} -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s {{subnet}} ! -o docker0 -j MASQUERADE
-A POSTROUTING -s {{ctr/}} -d {{ctr/}} -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination {{ctrport}}
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d {{ctr/}} ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`

// dockerNftables has the shape of Docker's native nftables backend (Docker
// 28+, --firewall-backend=nftables) for the same published port: its own
// `table ip docker-bridges` (ip6 for IPv6), DNAT in a nat chain at priority
// dstnat, and a raw-priority chain that drops direct access to the
// container address.
const dockerNftables = `table {{ip}} docker-bridges {
	map filter-forward-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-in__docker0 }
	}
	map filter-forward-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-out__docker0 }
	}
	map nat-postrouting-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-in__docker0 }
	}
	map nat-postrouting-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump nat-postrouting-out__docker0 }
	}
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname vmap @filter-forward-in-jumps
		iifname vmap @filter-forward-out-jumps
	}
	chain nat-OUTPUT {
		type nat hook output priority -100; policy accept;
		{{ip}} daddr != {{loopback}} fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		iifname vmap @nat-postrouting-out-jumps
		oifname vmap @nat-postrouting-in-jumps
	}
	chain nat-PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-prerouting-and-output {
		iifname != "docker0" tcp dport 8080 counter dnat to {{ctrport}} comment "DNAT"
	}
	chain raw-PREROUTING {
		type filter hook prerouting priority raw; policy accept;
		{{ip}} daddr {{ctr}} iifname != "docker0" counter drop comment "DROP DIRECT ACCESS"
	}
	chain filter-forward-in__docker0 {
		ct state established,related counter accept
		iifname "docker0" counter accept comment "ICC"
		{{ip}} daddr {{ctr}} tcp dport 80 counter accept
		counter drop comment "UNPUBLISHED PORT DROP"
	}
	chain filter-forward-out__docker0 {
		ct state established,related counter accept
		counter accept comment "OUTGOING"
	}
	chain nat-postrouting-in__docker0 {
		fib saddr type local counter masquerade comment "MASQUERADE FROM HOST"
		{{ip}} saddr {{ctr}} {{ip}} daddr {{ctr}} tcp dport 80 counter masquerade comment "MASQ TO OWN PORT"
	}
	chain nat-postrouting-out__docker0 {
		oifname != "docker0" {{ip}} saddr {{subnet}} counter masquerade comment "MASQUERADE"
	}
}
`

// dockerHost is the three namespaces of one test.
type dockerHost struct {
	host, container, client *nftest.NetNS
}

// newDockerHost builds the namespaces, links, addresses and servers for
// every family. The container server answers "container <peer>", the host
// service "host <peer>", so a client sees who accepted it and from which
// address.
func newDockerHost(t *testing.T) *dockerHost {
	t.Helper()
	d := &dockerHost{host: nftest.New(t), container: nftest.New(t), client: nftest.New(t)}
	// No duplicate address detection on the links made below (their
	// link-local addresses included): it holds neighbour discovery back
	// for seconds after a link comes up.
	for _, ns := range []*nftest.NetNS{d.host, d.container, d.client} {
		sysctl(t, ns, "net/ipv6/conf/default/accept_dad", "0")
	}
	var containerAddrs, clientAddrs, hostAddrs []string
	for _, f := range dockerFamilies {
		containerAddrs = append(containerAddrs, f.container+f.cLen)
		clientAddrs = append(clientAddrs, f.banned+f.hostLen, f.other+f.hostLen)
		hostAddrs = append(hostAddrs, f.host+f.hostLen)
	}
	// host "va" <-> container "vb"; the host end is a port of docker0.
	nftest.Veth(t, d.host, d.container, nil, containerAddrs)
	d.host.IP(t, "link", "add", dockerBridge, "type", "bridge")
	d.host.IP(t, "link", "set", "va", "master", dockerBridge)
	for _, f := range dockerFamilies {
		d.host.IP(t, "addr", "add", f.bridge, "dev", dockerBridge)
	}
	d.host.IP(t, "link", "set", dockerBridge, "up")
	// client "va" <-> host "vb".
	nftest.Veth(t, d.client, d.host, clientAddrs, hostAddrs)
	for _, f := range dockerFamilies {
		gw, _, _ := strings.Cut(f.bridge, "/")
		d.container.IP(t, "route", "add", "default", "via", gw)
	}
	sysctl(t, d.host, "net/ipv4/ip_forward", "1")
	sysctl(t, d.host, "net/ipv6/conf/all/forwarding", "1")
	for _, f := range dockerFamilies {
		serveWhoAmI(t, d.container, net.JoinHostPort(f.container, "80"), "container")
		serveWhoAmI(t, d.host, f.hostPort("2222"), "host")
	}
	// The host's first neighbour solicitation on the new bridge can go
	// unanswered (IPv6, about a second): reach each container address
	// from the host once, so the client's first SYN is not the one held
	// back.
	for _, f := range dockerFamilies {
		addr := net.JoinHostPort(f.container, "80")
		var err error
		for range 10 {
			d.host.Do(t, func() {
				var c net.Conn
				if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
					c.Close()
				}
			})
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("host cannot reach the container at %s: %v", addr, err)
		}
	}
	return d
}

// sysctl writes value to /proc/sys/<key> inside ns.
func sysctl(t *testing.T, ns *nftest.NetNS, key, value string) {
	t.Helper()
	var err error
	ns.Do(t, func() { err = os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644) })
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, ns.Name, err)
	}
}

// serveWhoAmI listens on addr inside ns and answers each connection with
// "<name> <peer address>".
func serveWhoAmI(t *testing.T, ns *nftest.NetNS, addr, name string) {
	t.Helper()
	ns.ServeTCPFunc(t, addr, func(c net.Conn) { _, _ = io.WriteString(c, name+" "+c.RemoteAddr().String()) })
}

// reach reports whether a TCP connection from the client address src to
// dst opens, and checks that it reached the server named want and that
// this server saw src as the peer (Docker's DNAT keeps the source). A
// dropped SYN shows as a timeout; any other error fails the test.
//
// expect is the outcome the caller wants: a connection that should open
// gets seconds, so a loaded machine cannot pass for a drop, while one that
// should be dropped gets 300 ms (an answer on these links comes in well
// under a millisecond, so a connection that should not open still shows).
func (d *dockerHost) reach(t *testing.T, src, dst, want string, expect bool) bool {
	t.Helper()
	timeout := 300 * time.Millisecond
	if expect {
		timeout = 5 * time.Second
	}
	var got []byte
	var err error
	connected := false
	d.client.Do(t, func() {
		dl := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var c net.Conn
		if c, err = dl.Dial("tcp", dst); err != nil {
			return
		}
		defer c.Close()
		connected = true
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
	})
	var ne net.Error
	switch {
	case err != nil && connected:
		t.Fatalf("read from %s from %s: %v", dst, src, err)
	case err != nil && errors.As(err, &ne) && ne.Timeout():
		return false
	case err != nil:
		t.Fatalf("dial %s from %s: %v (want success or a timeout)", dst, src, err)
	}
	if prefix := want + " " + net.JoinHostPort(src, ""); !strings.HasPrefix(string(got), prefix) {
		t.Fatalf("dial %s from %s: server said %q, want %q…", dst, src, got, prefix)
	}
	return true
}

// runIn runs name args... inside ns with stdin and returns its standard
// output; the error carries the standard error.
func runIn(ns *nftest.NetNS, stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// execIn is runIn that fails the test on error.
func execIn(t *testing.T, ns *nftest.NetNS, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := runIn(ns, stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutTable drops the top-level block `table <family> <name> {...}`
// from the output of `nft list ruleset`.
func withoutTable(ruleset, family, name string) string {
	var b strings.Builder
	skip := false
	for line := range strings.SplitAfterSeq(ruleset, "\n") {
		switch {
		case line == "table "+family+" "+name+" {\n":
			skip = true
		case skip && line == "}\n":
			skip = false
		case !skip:
			b.WriteString(line)
		}
	}
	return b.String()
}

// dockerRules is one way Docker writes its rules.
type dockerRules struct {
	name string
	// install writes Docker's rules for every family into the host
	// namespace.
	install func(t *testing.T, host *nftest.NetNS)
	// dump lists Docker's rules that `nft list ruleset` does not show
	// (nil when it shows them all), counters left out.
	dump func(t *testing.T, host *nftest.NetNS) string
	// dnat is how a family's DNAT rule shows in the dump (a template for
	// dockerFamily.expand).
	dnat string
}

// iptablesRules writes dockerIPTables with iptables-<variant> and
// ip6tables-<variant> ("nft": the nf_tables backend, the default on current
// distributions; "legacy": the x_tables one, still found on older hosts).
func iptablesRules(variant string) dockerRules {
	bin := func(f dockerFamily) string { return f.iptables + "-" + variant }
	return dockerRules{
		name: "iptables-" + variant,
		install: func(t *testing.T, host *nftest.NetNS) {
			for _, f := range dockerFamilies {
				if _, err := exec.LookPath(bin(f) + "-restore"); err != nil {
					testkit.Missing(t, "needs %s-restore (apt-get install iptables; .ci/run installs it) to write Docker's iptables rules", bin(f))
				}
				if _, err := runIn(host, "", bin(f), "-w", "-t", "nat", "-S"); err != nil {
					t.Skipf("%s does not work in this kernel (%v): Docker hosts using it are not covered here", bin(f), err)
				}
			}
			for _, f := range dockerFamilies {
				execIn(t, host, f.expand(dockerIPTables), bin(f)+"-restore", "--noflush")
			}
		},
		dump: func(t *testing.T, host *nftest.NetNS) string {
			var b strings.Builder
			for _, f := range dockerFamilies {
				for _, table := range []string{"nat", "filter"} {
					b.WriteString(execIn(t, host, "", bin(f), "-w", "-t", table, "-S"))
				}
			}
			return b.String()
		},
		dnat: "--dport 8080 -j DNAT --to-destination {{ctrport}}",
	}
}

// TestDockerPublishedPort builds a Docker host (a bridge, a container with
// port 80 published as host port 8080, a host service) in namespaces, over
// IPv4 and IPv6, with Docker's DNAT written as Docker writes it, and checks
// that moat's bans, hooked at prerouting priority raw, cover the published
// port as well as the host service, match the host port the client
// dialled (not the container port after DNAT), and leave Docker's rules
// untouched.
func TestDockerPublishedPort(t *testing.T) {
	nftest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testkit.Missing(t, "needs the nft binary (apt-get install nftables) to write Docker's rules")
	}
	variants := []dockerRules{
		iptablesRules("nft"),
		iptablesRules("legacy"),
		{
			name: "nftables",
			install: func(t *testing.T, host *nftest.NetNS) {
				for _, f := range dockerFamilies {
					execIn(t, host, f.expand(dockerNftables), "nft", "-f", "-")
				}
			},
			dnat: `tcp dport 8080 counter dnat to {{ctrport}} comment "DNAT"`,
		},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // each variant has its own namespaces
			d := newDockerHost(t)
			v.install(t, d.host)
			// others is every rule outside moat's table; -s leaves
			// counters out, which the test's own traffic changes.
			others := func() string {
				all := withoutTable(execIn(t, d.host, "", "nft", "-s", "list", "ruleset"), "inet", nftables.DefaultTable)
				if v.dump != nil {
					all = v.dump(t, d.host) + all
				}
				return all
			}
			before := others()
			for _, f := range dockerFamilies {
				if !strings.Contains(before, f.expand(v.dnat)) {
					t.Fatalf("Docker's %s DNAT rule %q is not in the ruleset:\n%s", f.name, f.expand(v.dnat), before)
				}
			}
			unchanged := func(t *testing.T, when string) {
				t.Helper()
				if after := others(); after != before {
					t.Errorf("%s: rules outside table inet %s changed\nbefore:\n%s\nafter:\n%s", when, nftables.DefaultTable, before, after)
				}
			}

			// reachAll checks the access of the banned client (or of
			// the other one) to the published port and to the host
			// service, over each family.
			reachAll := func(t *testing.T, step string, banned, wantPublished, wantHost bool) {
				t.Helper()
				for _, f := range dockerFamilies {
					src := f.other
					if banned {
						src = f.banned
					}
					dst := f.hostPort(strconv.Itoa(publishedPort))
					if got := d.reach(t, src, dst, "container", wantPublished); got != wantPublished {
						t.Errorf("%s: %s -> published %s: reached = %v, want %v", step, src, dst, got, wantPublished)
					}
					dst = f.hostPort("2222")
					if got := d.reach(t, src, dst, "host", wantHost); got != wantHost {
						t.Errorf("%s: %s -> host service %s: reached = %v, want %v", step, src, dst, got, wantHost)
					}
				}
			}
			reachAll(t, "before moat", true, true, true)

			b, err := nftables.New(nftables.Options{NetNS: d.host.FD()})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer b.Close()
			ctx := context.Background()
			now := time.Now()
			jails := []firewall.Jail{
				{Name: "all"},
				{Name: "web", Ports: []firewall.PortRange{{First: publishedPort, Last: publishedPort}}},
				// The container's own port: DNAT rewrites 8080 to 80
				// after moat's hook, so this jail must not match.
				{Name: "inner", Ports: []firewall.PortRange{{First: 80, Last: 80}}},
			}
			if err := b.Sync(ctx, jails, nil, now); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			unchanged(t, "after Sync")
			if !strings.Contains(execIn(t, d.host, "", "nft", "list", "tables"), "table inet "+nftables.DefaultTable) {
				t.Fatal("moat's table is not in the kernel after Sync")
			}
			reachAll(t, "no bans", true, true, true)

			// bans bans the banned client, over each family, in jail.
			bans := func(jail string) []firewall.Ban {
				var bs []firewall.Ban
				for _, f := range dockerFamilies {
					bs = append(bs, firewall.Ban{Jail: jail, Prefix: pfx(f.banned + f.full), Expires: now.Add(time.Hour)})
				}
				return bs
			}
			// Each step bans the banned client in one jail; the other
			// client is never banned and must always get through.
			steps := []struct {
				name               string
				jail               string
				published, hostSvc bool // the banned client's reach while banned
			}{
				{"banned in all", "all", false, false},
				{"banned in web on 8080", "web", false, true},
				{"banned on the container port", "inner", true, true},
			}
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) {
					if err := b.Add(ctx, bans(st.jail), now); err != nil {
						t.Fatalf("Add: %v", err)
					}
					reachAll(t, "banned", true, st.published, st.hostSvc)
					reachAll(t, "other client", false, true, true)
					if err := b.Delete(ctx, bans(st.jail)); err != nil {
						t.Fatalf("Delete: %v", err)
					}
					reachAll(t, "unbanned", true, true, true)
					unchanged(t, "after Add and Delete")
				})
			}

			// Someone flushes moat's table: moat notices and rebuilds
			// it with the store's bans; Docker's rules stay as they were.
			t.Run("rebuilt after flush", func(t *testing.T) {
				if err := b.Add(ctx, bans("all"), now); err != nil {
					t.Fatalf("Add: %v", err)
				}
				execIn(t, d.host, "", "nft", "flush", "table", "inet", nftables.DefaultTable)
				if rep, err := b.Check(ctx, time.Now()); err != nil || rep.Counts[firewall.RepairLayout] != 1 {
					t.Fatalf("Check after flush = %+v, %v; want a layout repair", rep, err)
				}
				if rep, err := b.Check(ctx, time.Now()); err != nil || !rep.Matched() {
					t.Fatalf("Check after rebuild = %+v, %v; want matched", rep, err)
				}
				reachAll(t, "unbanned client", false, true, true)
				reachAll(t, "client banned in all", true, false, false)
				unchanged(t, "after rebuild")
			})
		})
	}
}
