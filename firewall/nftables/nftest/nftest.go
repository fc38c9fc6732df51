// Package nftest gives tests throwaway network namespaces, so that nftables
// and packet-level tests run against a real kernel without touching the
// host's ruleset or network. It is for tests only.
//
// Namespaces are named ("moat-test-<pid>-<n>") and bind-mounted under
// /run/netns, so they can also be entered with `ip netns exec NAME`. All
// helpers skip the test when not run as root.
package nftest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/moatproj/moat/internal/testkit"
)

var counter atomic.Int64

// NetNS is a network namespace made for one test, deleted by t.Cleanup.
type NetNS struct {
	// Name is the namespace's name under /run/netns (for `ip netns exec`
	// and `ip -n`).
	Name   string
	handle netns.NsHandle
}

// FD is an open file descriptor of the namespace, valid until the test's
// cleanup; pass it to nftables.WithNetNSFd or moat's Options.NetNS.
func (n *NetNS) FD() int { return int(n.handle) }

// RequireRoot skips t unless the process runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root: creates network namespaces and nftables tables (run the tests as root, as CI does)")
	}
}

// New makes a named network namespace with its loopback up, and deletes it
// when the test ends. The calling goroutine's namespace is not changed.
func New(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("moat-test-%d-%d", os.Getpid(), counter.Add(1))
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		// A thread whose namespace could not be restored is never
		// unlocked, so the runtime ends it with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			done <- result{err: fmt.Errorf("create netns %s: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			done <- result{h: h, err: fmt.Errorf("switch back from netns %s: %w", name, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{h: h}
	}()
	r := <-done
	if r.h.IsOpen() {
		t.Cleanup(func() {
			r.h.Close()
			if err := netns.DeleteNamed(name); err != nil {
				t.Errorf("delete netns %s: %v", name, err)
			}
		})
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	n := &NetNS{Name: name, handle: r.h}
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Do runs fn on an OS thread switched into the namespace, and waits for it.
// Sockets made inside fn (listeners, dialled connections) stay in the
// namespace after fn returns. fn must not start goroutines that expect to
// be in the namespace.
func (n *NetNS) Do(t testing.TB, fn func()) {
	t.Helper()
	if err := n.Run(fn); err != nil {
		t.Fatal(err)
	}
}

// Run is Do without a test: it reports a namespace switch that failed (or a
// panic in fn) as an error, so it may be called from any goroutine, such
// as an http.Transport's dialer.
func (n *NetNS) Run(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		var panicked any
		func() {
			defer func() { panicked = recover() }()
			fn()
		}()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		if panicked != nil {
			errc <- fmt.Errorf("panic in netns %s: %v", n.Name, panicked)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// IP runs `ip -n NAME args...` (iproute2) and fails the test on error.
func (n *NetNS) IP(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Nft runs `nft args...` inside the namespace and returns its output; it
// skips the test when the nft binary is not installed.
func (n *NetNS) Nft(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testkit.Missing(t, "needs the nft binary (apt-get install nftables) to read the ruleset back")
	}
	return run(t, "ip", append([]string{"netns", "exec", n.Name, "nft"}, args...)...)
}

// NftMaybe is Nft for a command that may fail (`nft get element` of an
// element that is not there): it returns the output and the error instead
// of failing the test. It is safe to call from another goroutine.
func (n *NetNS) NftMaybe(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testkit.Missing(t, "needs the nft binary (apt-get install nftables) to read the ruleset back")
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, "nft"}, args...)...).CombinedOutput()
	return string(out), err
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Veth joins namespaces a and b with a veth pair (ends named va and vb),
// brings both ends up and gives them the addresses (CIDR form, such as
// "192.0.2.1/24" or "2001:db8::1/64"; IPv6 addresses skip duplicate
// address detection so they are usable at once).
func Veth(t testing.TB, a, b *NetNS, addrsA, addrsB []string) {
	t.Helper()
	a.IP(t, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b.Name)
	for _, end := range []struct {
		ns    *NetNS
		dev   string
		addrs []string
	}{{a, "va", addrsA}, {b, "vb", addrsB}} {
		for _, addr := range end.addrs {
			args := []string{"addr", "add", addr, "dev", end.dev}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			end.ns.IP(t, args...)
		}
		end.ns.IP(t, "link", "set", end.dev, "up")
	}
}

// ServeTCP listens on addr ("192.0.2.1:0", "[2001:db8::1]:0") inside the
// namespace and accepts and closes connections until the test ends. It
// returns the address it listens on.
func (n *NetNS) ServeTCP(t testing.TB, addr string) string {
	t.Helper()
	return n.ServeTCPFunc(t, addr, func(net.Conn) {})
}

// ServeTCPFunc is ServeTCP with fn called on each connection before it is
// closed.
func (n *NetNS) ServeTCPFunc(t testing.TB, addr string, fn func(net.Conn)) string {
	t.Helper()
	var ln net.Listener
	var err error
	n.Do(t, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fn(c)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// CanDial reports whether a TCP connection from the namespace to addr opens
// within timeout. An error other than a timeout (a refusal, no route) fails
// the test: a dropped packet shows as a timeout, nothing else.
func (n *NetNS) CanDial(t testing.TB, addr string, timeout time.Duration) bool {
	t.Helper()
	var err error
	n.Do(t, func() {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, timeout); err == nil {
			c.Close()
		}
	})
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("dial %s from %s: %v (want success or a timeout)", addr, n.Name, err)
	}
	return err == nil
}
