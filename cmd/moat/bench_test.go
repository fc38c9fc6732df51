package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"time"

	"github.com/moatproj/moat/firewall"

	"github.com/moatproj/moat/internal/testkit"
)

// BenchmarkBanLatency measures the time from the line that completes a
// failure count being appended to the log to the address being an element of
// the kernel set (read back over netlink every millisecond), and reports p50
// and p99. Root only: it runs the daemon in a network namespace.
//
//	go test -run '^$' -bench BanLatency -benchtime 1x ./cmd/moat
func BenchmarkBanLatency(b *testing.B) {
	needRoot(b)
	ns := newNetNS(b)
	dir := b.TempDir()
	socket := filepath.Join(dir, "moat.sock")
	logPath := filepath.Join(dir, "auth.log")
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf("state_dir: %s\nsocket: %s\nfirewall: {backend: nftables, table: moat}\n"+
		"jails:\n  sshd:\n    filter: sshd\n    logpath: %s\n    maxretry: 3\n    findtime: 1h\n    bantime: 1h\n",
		filepath.Join(dir, "state"), socket, logPath)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	appendFile(b, logPath, noise(0))
	startDaemon(b, ns, cfg, socket)
	env := map[string]string{"MOAT_SOCKET": socket}
	const n = 200
	var lat []time.Duration
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		lat = lat[:0]
		for i := 0; i < n; i++ {
			addr := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::%x", iter, i/256, i%256+1)).String()
			appendFile(b, logPath, sshdFailure(addr, 1)+sshdFailure(addr, 2))
			// Only the line that completes the count is timed: wait until
			// the two before it are counted (3 failures per address).
			b.StopTimer()
			counted := fmt.Sprintf("Total failed:\t%d\n", 3*(iter*n+i)+2)
			testkit.WaitFor(b, 10*time.Second, "the first two failures counted", func() bool {
				return strings.Contains(cli(b, env, "status", "sshd").stdout, counted)
			})
			b.StartTimer()
			start := time.Now()
			appendFile(b, logPath, sshdFailure(addr, 3))
			for {
				if slices.ContainsFunc(kernelBans(b, ns, "moat"), func(k firewall.Ban) bool { return k.Prefix.Addr().String() == addr }) {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatalf("%s not in the kernel set after 10s", addr)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkRSS reports the daemon's resident memory idle with 10 jails, and
// after failures from 1M distinct addresses (one failure each, so none is
// banned and each is held in a failure window), with the none backend.
//
//	go test -run '^$' -bench RSS -benchtime 1x ./cmd/moat
func BenchmarkRSS(b *testing.B) {
	dir := b.TempDir()
	socket := filepath.Join(dir, "moat.sock")
	var jails strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&jails, "  j%d:\n    filter: sshd\n    logpath: %s\n    findtime: 1d\n", i, filepath.Join(dir, fmt.Sprintf("log%d", i)))
	}
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf("state_dir: %s\nsocket: %s\nfirewall: {backend: none}\njails:\n%s", filepath.Join(dir, "state"), socket, jails.String())
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		appendFile(b, filepath.Join(dir, fmt.Sprintf("log%d", i)), noise(i))
	}
	d := startDaemon(b, nil, cfg, socket)
	time.Sleep(2 * time.Second) // idle for a while: what idle-MiB measures
	idle := rssKiB(b, d.cmd.Process.Pid)

	const n = 1_000_000
	f, err := os.OpenFile(filepath.Join(dir, "log0"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	stamp := time.Now().Format(time.Stamp)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "%s web1 sshd[%d]: Failed password for root from 2001:db8:%x:%x::1 port 22 ssh2\n", stamp, i%30000, i>>16, i&0xffff)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	start := time.Now()
	env := map[string]string{"MOAT_SOCKET": socket}
	testkit.WaitFor(b, 5*time.Minute, "1M failures counted", func() bool {
		out := cli(b, env, "status", "j0").stdout
		return strings.Contains(out, fmt.Sprintf("Total failed:\t%d", n))
	})
	took := time.Since(start)
	loaded := rssKiB(b, d.cmd.Process.Pid)
	b.ReportMetric(float64(idle)/1024, "idle-MiB")
	b.ReportMetric(float64(loaded)/1024, "1M-addr-MiB")
	b.ReportMetric(float64(n)/took.Seconds(), "e2e-lines/s")
}

// rssKiB reads VmRSS of a process.
func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
