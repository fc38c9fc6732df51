package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// jailSpec is one jail of the soak's configuration and what its writer
// writes. Writers use 192.0.2.0/24 and 198.51.100.0/24 and their own IPv6
// ranges; manual bans use 203.0.113.0/24 and 2001:db8:f000::/36 only, so
// no failure is ever read for an address a manual operation touches.
type jailSpec struct {
	name     string
	kind     string // sshd, nginx, app: the log format
	file     string
	maxretry int
	v6prefix int // the jail's ipv6_prefix (128: each address)
	ports    string
	altPorts string // "": the port list never changes
	v6range  netip.Prefix
}

func jailSpecs(dir string) []*jailSpec {
	return []*jailSpec{
		// The probe's jail: its configuration never changes.
		{name: "sshd", kind: "sshd", file: filepath.Join(dir, "auth.log"), maxretry: 3, v6prefix: 128,
			ports: "[22]", v6range: mustPrefix("2001:db8:a::/48")},
		{name: "sshv6", kind: "sshd", file: filepath.Join(dir, "sshv6.log"), maxretry: 3, v6prefix: 64,
			v6range: mustPrefix("2001:db8:b::/48")},
		{name: "web", kind: "nginx", file: filepath.Join(dir, "error.log"), maxretry: 4, v6prefix: 128,
			ports: "[80, 443]", altPorts: "[80, 443, \"8000-8100\"]", v6range: mustPrefix("2001:db8:c::/48")},
		{name: "app", kind: "app", file: filepath.Join(dir, "app.log"), maxretry: 2, v6prefix: 56,
			v6range: mustPrefix("2001:db8:d00::/40")},
	}
}

func (j *jailSpec) yaml(alt bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n", j.name)
	switch j.kind {
	case "sshd":
		b.WriteString("    filter: sshd\n")
	case "nginx":
		b.WriteString("    filter: nginx-http-auth\n")
	case "app":
		b.WriteString("    filter:\n      failregex:\n        - '^\\s*\\S+ app\\[\\d+\\]: login failed for \\S+ from <HOST>\\s*$'\n")
	}
	fmt.Fprintf(&b, "    logpath: %s\n    maxretry: %d\n", j.file, j.maxretry)
	if j.v6prefix != 128 {
		fmt.Fprintf(&b, "    ipv6_prefix: %d\n", j.v6prefix)
	}
	ports := j.ports
	if alt && j.altPorts != "" {
		ports = j.altPorts
	}
	if ports != "" {
		fmt.Fprintf(&b, "    ports: %s\n", ports)
	}
	return b.String()
}

// key is what a jail counts failures by and bans: the address, or an IPv6
// address's prefix of the jail's ipv6_prefix.
func (j *jailSpec) key(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(j.v6prefix)
		return p
	}
	return netip.PrefixFrom(a, 32)
}

// ledger is what the writers wrote: failures per jail and key.
type ledger struct {
	mu    sync.Mutex
	fails map[string]map[netip.Prefix]int
	addrs map[string]map[netip.Prefix][]netip.Addr
}

func newLedger() *ledger {
	return &ledger{fails: map[string]map[netip.Prefix]int{}, addrs: map[string]map[netip.Prefix][]netip.Addr{}}
}

func (l *ledger) fail(j *jailSpec, a netip.Addr) {
	k := j.key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails[j.name] == nil {
		l.fails[j.name] = map[netip.Prefix]int{}
		l.addrs[j.name] = map[netip.Prefix][]netip.Addr{}
	}
	l.fails[j.name][k]++
	as := l.addrs[j.name][k]
	for _, x := range as {
		if x == a {
			return
		}
	}
	l.addrs[j.name][k] = append(as, a)
}

func (l *ledger) count(jail string, k netip.Prefix) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fails[jail][k]
}

// attacker is an address (or a /64, /56 …) that fails a planned number of
// times, its lines interleaved with the other attackers'.
type attacker struct {
	key   netip.Prefix
	hosts []netip.Addr
	left  int
}

// writer appends one jail's log at a steady rate and rotates it now and
// then.
type writer struct {
	s   *soak
	j   *jailSpec
	r   *rand.Rand
	f   *os.File
	pid int
	req int

	active []*attacker
	v4free []netip.Addr
	used   map[netip.Prefix]bool

	mu         sync.Mutex // the counters below, read by the summary
	lines      int
	failLines  int
	rotRename  int
	rotCopy    int
	rotSkipped int
	gen        int
}

const (
	linesPerSecond = 20  // per writer, failures and noise
	noiseShare     = 0.2 // lines that no filter counts
)

func newWriter(s *soak, j *jailSpec, stream uint64) *writer {
	w := &writer{s: s, j: j, r: s.rng(stream), pid: 1000 + int(stream)*37, used: map[netip.Prefix]bool{}}
	for _, base := range []string{"192.0.2.0", "198.51.100.0"} {
		a := mustAddr(base)
		for i := 0; i < 256; i++ {
			if i != 0 && i != 255 {
				w.v4free = append(w.v4free, a)
			}
			a = a.Next()
		}
	}
	w.r.Shuffle(len(w.v4free), func(i, k int) { w.v4free[i], w.v4free[k] = w.v4free[k], w.v4free[i] })
	return w
}

func (w *writer) open() error {
	f, err := os.OpenFile(w.j.file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w.f = f
	return nil
}

// close closes the log file if it is open.
func (w *writer) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

func (w *writer) run(stop <-chan struct{}) {
	if err := w.open(); err != nil {
		w.s.fatal("writer %s: %v", w.j.name, err)
		return
	}
	defer w.close()
	tick := time.NewTicker(time.Second / linesPerSecond)
	defer tick.Stop()
	next := time.Now().Add(time.Duration(8+w.r.IntN(8)) * time.Second)
	kind := w.r.IntN(2)
	for {
		select {
		case <-stop:
			return
		case <-w.s.ctx.Done():
			return
		case <-tick.C:
		}
		if err := w.step(); err != nil {
			w.s.fatal("writer %s: %v", w.j.name, err)
			return
		}
		// No rotation in the last seconds: the final check waits for
		// the daemon to catch up with every file.
		if time.Now().After(next) && time.Until(w.s.end) > 6*time.Second {
			w.rotate(kind)
			kind ^= 1
			next = time.Now().Add(time.Duration(12+w.r.IntN(14)) * time.Second)
		}
	}
}

// step writes one line: noise, or a failure of an active attacker (a new
// one now and then).
func (w *writer) step() error {
	if w.r.Float64() < noiseShare {
		return w.write(w.noise(w.anyAddr()), false, netip.Addr{})
	}
	if len(w.active) < 4 || (len(w.active) < 12 && w.r.IntN(4) == 0) {
		w.active = append(w.active, w.newAttacker(w.plan()))
	}
	i := w.r.IntN(len(w.active))
	a := w.active[i]
	h := a.hosts[w.r.IntN(len(a.hosts))]
	if err := w.write(w.failure(h), true, h); err != nil {
		return err
	}
	if a.left--; a.left <= 0 {
		w.active = append(w.active[:i], w.active[i+1:]...)
	}
	return nil
}

// plan is how many times a new attacker fails: below maxretry (it must
// not be banned), exactly maxretry, or more (failures after its ban are
// read but not counted).
func (w *writer) plan() int {
	m := w.j.maxretry
	switch p := w.r.IntN(100); {
	case p < 35 && m > 1:
		return 1 + w.r.IntN(m-1)
	case p < 65:
		return m
	default:
		return m + 1 + w.r.IntN(4)
	}
}

// newAttacker picks an address (IPv4 while fresh ones are left) or a fresh
// key of the jail's IPv6 range with one to three hosts in it.
func (w *writer) newAttacker(n int) *attacker {
	if n < 1 {
		n = 1
	}
	if w.r.IntN(100) < 45 && len(w.v4free) > 0 {
		a := w.v4free[len(w.v4free)-1]
		w.v4free = w.v4free[:len(w.v4free)-1]
		return &attacker{key: w.j.key(a), hosts: []netip.Addr{a}, left: n}
	}
	for {
		a := randomIn(w.r, w.j.v6range)
		k := w.j.key(a)
		if w.used[k] {
			continue
		}
		w.used[k] = true
		at := &attacker{key: k, hosts: []netip.Addr{a}, left: n}
		if k.Bits() < 128 {
			for i := 1 + w.r.IntN(3); i > 1; i-- {
				at.hosts = append(at.hosts, randomIn(w.r, k))
			}
		}
		return at
	}
}

// anyAddr is an address for a noise line: any of the writers' addresses,
// failing ones included (a noise line must not count for them).
func (w *writer) anyAddr() netip.Addr {
	if w.r.IntN(2) == 0 {
		a := mustAddr("192.0.2.1")
		if w.r.IntN(2) == 0 {
			a = mustAddr("198.51.100.1")
		}
		for i := w.r.IntN(254); i > 0; i-- {
			a = a.Next()
		}
		return a
	}
	return randomIn(w.r, w.j.v6range)
}

func (w *writer) write(line string, failure bool, a netip.Addr) error {
	if w.f == nil {
		// The final sentinel, after run returned.
		if err := w.open(); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(w.f, line+"\n"); err != nil {
		return err
	}
	if failure {
		w.s.led.fail(w.j, a)
	}
	w.mu.Lock()
	w.lines++
	if failure {
		w.failLines++
	}
	w.mu.Unlock()
	return nil
}

var (
	sshUsers = []string{"admin", "oracle", "test", "ubuntu", "git", "postgres", "user1", "pi"}
	webUsers = []string{"alice", "bob", "admin", "editor"}
)

// failure is a line the jail's filter counts once for a.
func (w *writer) failure(a netip.Addr) string {
	now := time.Now()
	w.req++
	port := 30000 + w.r.IntN(30000)
	switch w.j.kind {
	case "sshd":
		u := sshUsers[w.r.IntN(len(sshUsers))]
		var msg string
		switch w.r.IntN(6) {
		case 0, 1:
			msg = fmt.Sprintf("Failed password for root from %s port %d ssh2", a, port)
		case 2:
			msg = fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", u, a, port)
		case 3:
			msg = fmt.Sprintf("Invalid user %s from %s port %d", u, a, port)
		case 4:
			msg = fmt.Sprintf("Connection closed by authenticating user root %s port %d [preauth]", a, port)
		default:
			msg = fmt.Sprintf("error: maximum authentication attempts exceeded for invalid user %s from %s port %d ssh2 [preauth]", u, a, port)
		}
		return fmt.Sprintf("%s gw sshd[%d]: %s", now.Format(time.Stamp), w.pid+w.req%97, msg)
	case "nginx":
		u := webUsers[w.r.IntN(len(webUsers))]
		if w.r.IntN(2) == 0 {
			return fmt.Sprintf(`%s [error] 812#812: *%d user "%s": password mismatch, client: %s, server: example.org, request: "GET /admin/ HTTP/1.1", host: "example.org"`,
				now.Format("2006/01/02 15:04:05"), w.req, u, a)
		}
		return fmt.Sprintf(`%s [error] 812#812: *%d user "%s" was not found in "/etc/nginx/.htpasswd", client: %s, server: example.org, request: "GET /private/ HTTP/1.1", host: "example.org", referrer: "https://example.org/"`,
			now.Format("2006/01/02 15:04:05"), w.req, u, a)
	default:
		return fmt.Sprintf("%s gw app[%d]: login failed for %s from %s", now.Format(time.Stamp), w.pid, webUsers[w.r.IntN(len(webUsers))], a)
	}
}

// noise is a line the jail's filter does not count (sshd's normal mode
// does not count pam_unix's line, "Bye Bye" or a pre-auth close by a
// client that never authenticated).
func (w *writer) noise(a netip.Addr) string {
	now := time.Now()
	w.req++
	port := 30000 + w.r.IntN(30000)
	switch w.j.kind {
	case "sshd":
		var msg string
		switch w.r.IntN(5) {
		case 0:
			msg = fmt.Sprintf("Accepted publickey for deploy from %s port %d ssh2: ED25519 SHA256:Yk3Jx0bV8nVfKq2s1uD6m9lJ4cXo7pR5tW1aZ0eHgQI", a, port)
		case 1:
			msg = "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)"
		case 2:
			msg = fmt.Sprintf("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=root", a)
		case 3:
			msg = fmt.Sprintf("Received disconnect from %s port %d:11: Bye Bye [preauth]", a, port)
		default:
			msg = fmt.Sprintf("Connection closed by %s port %d [preauth]", a, port)
		}
		return fmt.Sprintf("%s gw sshd[%d]: %s", now.Format(time.Stamp), w.pid+w.req%97, msg)
	case "nginx":
		return fmt.Sprintf(`%s [error] 812#812: *%d open() "/var/www/html/favicon.ico" failed (2: No such file or directory), client: %s, server: example.org, request: "GET /favicon.ico HTTP/1.1", host: "example.org"`,
			now.Format("2006/01/02 15:04:05"), w.req, a)
	default:
		if w.r.IntN(2) == 0 {
			return fmt.Sprintf("%s gw app[%d]: login ok for %s from %s", now.Format(time.Stamp), w.pid, webUsers[w.r.IntN(len(webUsers))], a)
		}
		return fmt.Sprintf("%s gw app[%d]: session closed for %s", now.Format(time.Stamp), w.pid, webUsers[w.r.IntN(len(webUsers))])
	}
}

// barrier writes maxretry failures in a row for a fresh key (in the
// ledger like any other) and waits until moat lists its ban: then the
// daemon has read every line written before them.
func (w *writer) barrier(timeout time.Duration) (*attacker, error) {
	a := w.newAttacker(w.j.maxretry)
	for i := 0; i < w.j.maxretry; i++ {
		if err := w.write(w.failure(a.hosts[i%len(a.hosts)]), true, a.hosts[i%len(a.hosts)]); err != nil {
			return a, err
		}
	}
	want := a.key.String()
	if a.key.IsSingleIP() {
		want = a.key.Addr().String()
	}
	t0 := time.Now()
	for {
		out, _, err := w.s.cli("bans", "--json", "--jail", w.j.name)
		if err == nil {
			var bs []banJSON
			if json.Unmarshal([]byte(out), &bs) == nil {
				for _, b := range bs {
					if b.IP == want {
						return a, nil
					}
				}
			}
		}
		if time.Since(t0) > timeout {
			return a, fmt.Errorf("not listed after %s", timeout)
		}
		if w.s.ctx.Err() != nil {
			return a, w.s.ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rotate rotates the log as logrotate does, once the daemon has read all
// of it (a copytruncate loses what the daemon had not read yet, in any
// follower): kind 0 is rename + create, the writer going on appending to
// the renamed file for a moment before it reopens (as nginx does); kind 1
// is copytruncate.
func (w *writer) rotate(kind int) {
	if _, err := w.barrier(8 * time.Second); err != nil {
		w.mu.Lock()
		w.rotSkipped++
		w.mu.Unlock()
		w.s.probs.note("jail %s: rotation skipped at %s: the daemon had not caught up (%v)", w.j.name, w.s.elapsed(), err)
		return
	}
	w.mu.Lock()
	w.gen++
	old := fmt.Sprintf("%s.%d", w.j.file, w.gen)
	w.mu.Unlock()
	if kind == 0 {
		if err := os.Rename(w.j.file, old); err != nil {
			w.s.fatal("rotate %s: %v", w.j.file, err)
			return
		}
		// Still appending to the renamed file.
		until := time.Now().Add(time.Duration(200+w.r.IntN(800)) * time.Millisecond)
		for time.Now().Before(until) {
			time.Sleep(time.Second / linesPerSecond)
			if err := w.step(); err != nil {
				w.s.fatal("writer %s: %v", w.j.name, err)
				return
			}
		}
		prev := w.f
		if err := w.open(); err != nil {
			w.s.fatal("reopen %s: %v", w.j.file, err)
			return
		}
		prev.Close()
		w.mu.Lock()
		w.rotRename++
		w.mu.Unlock()
		return
	}
	src, err := os.Open(w.j.file)
	if err != nil {
		w.s.fatal("copytruncate %s: %v", w.j.file, err)
		return
	}
	dst, err := os.Create(old)
	if err == nil {
		_, err = io.Copy(dst, src)
		dst.Close()
	}
	src.Close()
	if err == nil {
		err = w.f.Truncate(0)
	}
	if err != nil {
		w.s.fatal("copytruncate %s: %v", w.j.file, err)
		return
	}
	w.mu.Lock()
	w.rotCopy++
	w.mu.Unlock()
}

// banJSON is one element of `moat bans --json`.
type banJSON struct {
	Jail      string     `json:"jail"`
	IP        string     `json:"ip"`
	BannedAt  time.Time  `json:"banned_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Count     int        `json:"count"`
	Failures  int        `json:"failures"`
}

// randomIn is a random address of p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for k := 0; k < 8; k++ {
			if i*8+k >= bits && r.IntN(2) == 1 {
				b[i] |= 0x80 >> k
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
