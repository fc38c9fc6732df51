package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall/nftables/nftest"

	"github.com/moatproj/moat/internal/testkit"
)

// The proxy end-to-end tests run the daemon as a child process (inside a
// server namespace for the kernel tests) with a proxy in front of a real
// HTTP upstream, and clients in a second namespace that dial from chosen
// source addresses on the veth between them.

// proxyPort is the proxy's port in the server namespaces, which the tests
// make fresh, so it is free.
const proxyPort = "8080"

// proxyJail is the proxy jail of these tests: three 429s within a minute ban
// for an hour.
const proxyJail = "  proxy: {maxretry: 3, findtime: 1m, bantime: 1h}\n"

// upstream serves HTTP on a loopback listener (inside ns when ns is not
// nil: a socket stays in the namespace it was made in) until the test
// ends. Its answer names it and echoes the forwarding headers it got.
func upstream(t *testing.T, ns *netNS, name string) string {
	t.Helper()
	var ln net.Listener
	var err error
	listen := func() { ln, err = net.Listen("tcp", "127.0.0.1:0") }
	if ns != nil {
		ns.Do(t, listen)
	} else {
		listen()
	}
	if err != nil {
		t.Fatalf("upstream %s: listen: %v", name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s real=%s xff=%s", name, r.Header.Get("X-Real-IP"), r.Header.Get("X-Forwarded-For"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dialIn dials addr from inside ns (the caller's namespace when ns is nil)
// with src as the source address ("" for the kernel's choice). It never
// calls into t, so an http.Transport may call it on any goroutine.
func dialIn(ctx context.Context, ns *netNS, src, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	if ns == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	// The socket is made on the namespace's thread; a dial to one address
	// literal makes it on the calling goroutine.
	var c net.Conn
	var err error
	if rerr := ns.Run(func() { c, err = d.DialContext(ctx, "tcp", addr) }); rerr != nil {
		return nil, rerr
	}
	return c, err
}

// httpClient is an HTTP client whose connections are dialled inside ns
// from src. Without keepAlive each request opens a new connection.
func httpClient(t *testing.T, ns *netNS, src string, keepAlive bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, src, addr)
		},
		DisableKeepAlives: !keepAlive,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 3 * time.Second}
}

// answer is what one request got: a response, or an error.
type answer struct {
	code   int
	header http.Header
	body   string
	err    error
}

func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %q", a.code, a.body)
}

// get sends GET url with the headers given as name, value pairs.
func get(c *http.Client, url string, hdr ...string) answer {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(body), err: err}
}

// proxySetup is a daemon with a proxy at url, in server, reached from
// client, whose addresses are 192.0.2.2 and 192.0.2.3.
type proxySetup struct {
	server, client *netNS
	d              *daemonProc
	socket, url    string
	cfg            string
	env            map[string]string
}

// startProxyNS makes the two namespaces, an upstream in the server one and
// a daemon there (firewall backend as given) whose proxy listens on
// 192.0.2.1:8080 with tls off and one route limited to 5/s, burst 5.
// proxyExtra is added to the proxy section (indented by two spaces).
func startProxyNS(t *testing.T, backend, proxyExtra string) *proxySetup {
	t.Helper()
	return startProxyOn(t, backend, proxyJail, proxyExtra, []string{"192.0.2.1/24"}, []string{"192.0.2.2/24", "192.0.2.3/24"})
}

// startProxyOn is startProxyNS with the proxy jail's line and the veth's
// addresses given: the proxy listens on the first server address.
func startProxyOn(t *testing.T, backend, jailLine, proxyExtra string, serverAddrs, clientAddrs []string) *proxySetup {
	t.Helper()
	needRoot(t)
	s := &proxySetup{server: newNetNS(t), client: newNetNS(t)}
	nftest.Veth(t, s.server, s.client, serverAddrs, clientAddrs)
	host := net.JoinHostPort(strings.Split(serverAddrs[0], "/")[0], proxyPort)
	up := upstream(t, s.server, "one")
	dir := t.TempDir()
	cfg, socket, logPath := testConfig(t, dir, backend, jailLine+fmt.Sprintf(`proxy:
  http: "%s"
  tls: {mode: off}
%s  routes:
    - {upstream: "%s", rate: 5/s, burst: 5}
`, host, proxyExtra, up))
	appendFile(t, logPath, noise(0))
	s.d = startDaemon(t, s.server, cfg, socket)
	s.cfg = cfg
	s.socket, s.env = socket, map[string]string{"MOAT_SOCKET": socket}
	s.url = "http://" + host + "/"
	return s
}

// flood sends requests from a (with the headers hdr) every 50ms, faster
// than the route's 5/s, until three of them got 429; every sixth round
// (3.3/s, under the limit) b sends one, which must get 200. It returns the
// first 429 and the number of 200s a got before it.
func flood(t *testing.T, s *proxySetup, a, b *http.Client, hdr ...string) (first answer, okBefore int) {
	t.Helper()
	limited := 0
	for i := 0; limited < 3; i++ {
		if i == 60 {
			t.Fatalf("60 requests at 20/s and fewer than three 429s (route limit 5/s burst 5)")
		}
		r := get(a, s.url, hdr...)
		switch {
		case r.err != nil:
			t.Fatalf("flooding client, request %d: %v", i, r.err)
		case r.code == http.StatusTooManyRequests:
			if limited == 0 {
				first = r
			}
			limited++
		case r.code == http.StatusOK && limited == 0:
			okBefore++
		case r.code != http.StatusOK:
			t.Fatalf("flooding client, request %d: %s, want 200 or 429", i, r)
		}
		if i%6 == 0 {
			if r := get(b, s.url); r.err != nil || r.code != http.StatusOK {
				t.Fatalf("the other client, during the flood: %s, want 200", r)
			}
		}
		time.Sleep(50 * time.Millisecond) // the flood's rate: 20/s against a limit of 5/s
	}
	return first, okBefore
}

// check429 asserts the rate-limit headers of a refusal.
func check429(t *testing.T, r answer) {
	t.Helper()
	// At 5/s a token comes back within the second: Retry-After is 1.
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("429 with Retry-After %q, want 1 (seconds): %v", ra, r.header)
	}
	if p := r.header.Get("Ratelimit-Policy"); !strings.Contains(p, ";q=5") {
		t.Errorf("429 with RateLimit-Policy %q, want the route's quota q=5: %v", p, r.header)
	}
	rl := strings.Join(r.header.Values("Ratelimit"), ", ")
	if !regexp.MustCompile(`(^|;)r=0(;|$)`).MatchString(rl) {
		t.Errorf("429 with RateLimit %q, want remaining r=0", rl)
	}
}

// waitBanned waits until `moat bans --json` lists exactly ip, in jail proxy.
func waitBanned(t *testing.T, socket, ip string) banJSON {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, ip+" banned in jail proxy", func() bool {
		bans := cliBans(t, socket)
		return len(bans) == 1 && bans[0].IP == ip && bans[0].Jail == "proxy"
	})
	return cliBans(t, socket)[0]
}

// checkStatus asserts that `moat status proxy` counts the three 429s of a
// flood and lists ip, alone, as banned.
func checkStatus(t *testing.T, s *proxySetup, ip string) {
	t.Helper()
	r := cli(t, s.env, "status", "proxy")
	for _, w := range []string{"Total failed:\t3\n", "Currently banned:\t1\n", "Banned IP list:\t" + ip + "\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, w) {
			t.Errorf("moat status proxy: exit %d, printed %q, want %q in it", r.code, r.stdout, w)
		}
	}
}

// totalFailed is what `moat status proxy` prints as Total failed.
func totalFailed(t *testing.T, s *proxySetup) int {
	t.Helper()
	r := cli(t, s.env, "status", "proxy")
	m := regexp.MustCompile(`Total failed:\t(\d+)\n`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("moat status proxy: exit %d, printed %q, want a Total failed line", r.code, r.stdout)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestProxyRateLimitBansInKernel: a client flooding the proxy gets 200s,
// then 429s with the rate-limit headers; after three 429s it is banned in
// jail proxy and in the kernel set, and can no longer open a connection to
// the proxy's port; a second client on the same link, slower than the
// limit, is served throughout.
func TestProxyRateLimitBansInKernel(t *testing.T) {
	s := startProxyNS(t, "nftables", "")
	a := httpClient(t, s.client, "192.0.2.2", true)
	b := httpClient(t, s.client, "192.0.2.3", true)
	if r := get(a, s.url); r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "one real=192.0.2.2 ") {
		t.Fatalf("first request through the proxy: %s, want 200 from upstream one for 192.0.2.2", r)
	}
	first, ok := flood(t, s, a, b)
	if ok < 4 { // the first request above took one token of the burst
		t.Errorf("%d requests served before the first 429, want the rest of the burst (4 or more)", ok)
	}
	check429(t, first)
	ban := waitBanned(t, s.socket, "192.0.2.2")
	if ban.ExpiresAt == nil || ban.ExpiresAt.Sub(ban.BannedAt).Round(time.Second) != time.Hour {
		t.Errorf("ban = %+v, want a 1h ban", ban)
	}
	testkit.WaitFor(t, 5*time.Second, "192.0.2.2/32 in the kernel set of jail proxy", func() bool {
		kb := kernelBans(t, s.server, "moat")
		return len(kb) == 1 && kb[0].Prefix.String() == "192.0.2.2/32" && kb[0].Jail == "proxy"
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := dialIn(ctx, s.client, "192.0.2.2", "192.0.2.1:"+proxyPort)
	if err == nil {
		c.Close()
		t.Fatalf("banned 192.0.2.2 still opens a TCP connection to the proxy")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("banned dial: %v, want a timeout (the kernel drops the packets)", err)
	}
	fresh := httpClient(t, s.client, "192.0.2.3", false)
	for _, c := range []*http.Client{b, fresh} {
		if r := get(c, s.url); r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "one real=192.0.2.3 ") {
			t.Fatalf("192.0.2.3 after the ban of 192.0.2.2: %s, want 200", r)
		}
	}
}

// TestProxyBannedWithoutFirewall: with firewall backend none, the proxy
// itself holds the ban: the banned client's open connection gets 403 and
// its new connections are closed without an answer, while the other
// client is served, also after a restart; after `moat unban` it is served
// again, and a single 429 does not ban it anew.
func TestProxyBannedWithoutFirewall(t *testing.T) {
	s := startProxyNS(t, "none", "")
	a := httpClient(t, s.client, "192.0.2.2", true)
	b := httpClient(t, s.client, "192.0.2.3", true)
	first, _ := flood(t, s, a, b)
	check429(t, first)
	waitBanned(t, s.socket, "192.0.2.2")
	checkStatus(t, s, "192.0.2.2")
	if kb := kernelBans(t, s.server, "moat"); len(kb) != 0 {
		t.Errorf("backend none wrote kernel bans: %+v", kb)
	}
	if r := get(a, s.url); r.err != nil || r.code != http.StatusForbidden {
		t.Errorf("banned client on its open connection: %s, want 403", r)
	}
	fresh := httpClient(t, s.client, "192.0.2.2", false)
	if r := get(fresh, s.url); r.err == nil {
		t.Errorf("banned client on a new connection: %s, want no HTTP answer (closed by the proxy)", r)
	}
	if r := get(b, s.url); r.err != nil || r.code != http.StatusOK {
		t.Fatalf("192.0.2.3 while 192.0.2.2 is banned: %s, want 200", r)
	}
	// The ban holds across a restart: the proxy reads it from the store.
	s.d.stop(t)
	s.d = startDaemon(t, s.server, s.cfg, s.socket)
	if r := get(fresh, s.url); r.err == nil {
		t.Errorf("banned client after a restart: %s, want no HTTP answer", r)
	}
	if r := get(httpClient(t, s.client, "192.0.2.3", false), s.url); r.err != nil || r.code != http.StatusOK {
		t.Fatalf("192.0.2.3 after a restart: %s, want 200", r)
	}
	if r := cli(t, s.env, "unban", "192.0.2.2"); r.code != 0 || !strings.Contains(r.stdout, "unbanned 192.0.2.2 in proxy") {
		t.Fatalf("moat unban: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The bucket of 192.0.2.2 is empty after the flood: one request at the
	// rate it refills (5/s) is served. Polling faster would be a new flood.
	time.Sleep(250 * time.Millisecond)
	if r := get(fresh, s.url); r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "one real=192.0.2.2 ") {
		t.Fatalf("192.0.2.2 after the unban: %s, want 200", r)
	}
	// The ban reset its failure window: one more 429 does not ban again.
	failed := totalFailed(t, s)
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatalf("20 quick requests after the unban and no 429")
		}
		r := get(fresh, s.url)
		if r.err != nil {
			t.Fatalf("192.0.2.2 after the unban, request %d: %v", i, r.err)
		}
		if r.code == http.StatusTooManyRequests {
			break
		}
	}
	// The engine decides on a ban as it counts the failure: once the 429
	// is counted, a wrong ban has shown.
	testkit.WaitFor(t, 10*time.Second, "the 429 counted", func() bool { return totalFailed(t, s) > failed })
	if bans := cliBans(t, s.socket); len(bans) != 0 {
		t.Errorf("one 429 after the unban banned again: %+v", bans)
	}
}

// TestProxySpoofedXFF: X-Forwarded-For from a peer that is not a trusted
// proxy is ignored: the peer is limited and banned as itself, and the
// upstream never sees the forged address. From a trusted proxy, the
// forwarded address is the client: it is limited and banned (in the
// kernel too), and the proxy in front of it is not.
func TestProxySpoofedXFF(t *testing.T) {
	const forged = "198.51.100.7"
	t.Run("untrusted peer", func(t *testing.T) {
		s := startProxyNS(t, "none", "")
		a := httpClient(t, s.client, "192.0.2.2", true)
		b := httpClient(t, s.client, "192.0.2.3", true)
		if r := get(a, s.url, "X-Forwarded-For", forged); r.err != nil || r.body != "one real=192.0.2.2 xff=192.0.2.2" {
			t.Fatalf("request with a forged X-Forwarded-For: %s, want the upstream to see 192.0.2.2 only", r)
		}
		flood(t, s, a, b, "X-Forwarded-For", forged)
		waitBanned(t, s.socket, "192.0.2.2")
		checkStatus(t, s, "192.0.2.2")
		// Another forged address does not get the peer round its ban.
		fresh := httpClient(t, s.client, "192.0.2.2", false)
		if r := get(fresh, s.url, "X-Forwarded-For", "198.51.100.8"); r.err == nil {
			t.Errorf("banned peer with another forged X-Forwarded-For: %s, want no answer", r)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		s := startProxyNS(t, "nftables", "  trusted_proxies: [192.0.2.2]\n")
		a := httpClient(t, s.client, "192.0.2.2", true)
		b := httpClient(t, s.client, "192.0.2.3", true)
		if r := get(a, s.url, "X-Forwarded-For", forged); r.err != nil || r.body != "one real="+forged+" xff="+forged+", 192.0.2.2" {
			t.Fatalf("request through the trusted proxy: %s, want the upstream to see %s as the client", r, forged)
		}
		first, _ := flood(t, s, a, b, "X-Forwarded-For", forged)
		check429(t, first)
		waitBanned(t, s.socket, forged)
		testkit.WaitFor(t, 5*time.Second, forged+"/32 alone in the kernel set", func() bool {
			kb := kernelBans(t, s.server, "moat")
			return len(kb) == 1 && kb[0].Prefix.String() == forged+"/32"
		})
		if r := get(a, s.url, "X-Forwarded-For", forged); r.err != nil || r.code != http.StatusForbidden {
			t.Errorf("banned client through the trusted proxy: %s, want 403", r)
		}
		// The trusted proxy itself is not banned: its other clients and
		// its own requests are served.
		fresh := httpClient(t, s.client, "192.0.2.2", false)
		for _, hdr := range [][]string{{"X-Forwarded-For", "198.51.100.8"}, nil} {
			if r := get(fresh, s.url, hdr...); r.err != nil || r.code != http.StatusOK {
				t.Errorf("trusted proxy with X-Forwarded-For %v after the ban of %s: %s, want 200", hdr, forged, r)
			}
		}
	})
}

// proxyLoopbackConfig writes a configuration with a proxy on listen (tls
// off unless tlsYAML says otherwise) and one route to up.
func proxyLoopbackConfig(t *testing.T, path, listen, tlsYAML, up string) {
	t.Helper()
	if tlsYAML == "" {
		tlsYAML = "  tls: {mode: off}\n"
	}
	dir := filepath.Dir(path)
	text := fmt.Sprintf(`state_dir: %s
socket: %s
firewall: {backend: none}
proxy:
  http: "%s"
%s  routes:
    - {upstream: "%s", rate: 100/s, burst: 100}
jails:
%s`, filepath.Join(dir, "state"), filepath.Join(dir, "moat.sock"), listen, tlsYAML, up, proxyJail)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProxyReloadKeepsLastGood: SIGHUP with a broken route is refused (the
// log names file, line and field) and the proxy keeps the routes in force;
// a good route is taken at the next SIGHUP; a TLS change is said to need a
// restart while the route changed with it is taken, and the proxy keeps
// serving.
func TestProxyReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	listen := freeAddr(t)
	up1, up2 := upstream(t, nil, "one"), upstream(t, nil, "two")
	proxyLoopbackConfig(t, cfg, listen, "", up1)
	d := startDaemon(t, nil, cfg, filepath.Join(dir, "moat.sock"))
	c := httpClient(t, nil, "", false)
	url := "http://" + listen + "/"
	reaches := func(name string) bool {
		r := get(c, url)
		return r.err == nil && r.code == http.StatusOK && strings.HasPrefix(r.body, name+" ")
	}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	if !reaches("one") {
		t.Fatalf("before any reload: %s, want upstream one", get(c, url))
	}

	proxyLoopbackConfig(t, cfg, listen, "", "ftp://x")
	hup()
	testkit.WaitFor(t, 10*time.Second, "the refused reload in the log", func() bool {
		return strings.Contains(d.logs.String(), "reload refused")
	})
	// The route is on line 8 of the file.
	if want := cfg + `:8: proxy.routes[0].upstream`; !strings.Contains(d.logs.String(), want) {
		t.Errorf("the refusal does not say %q:\n%s", want, d.logs.String())
	}
	for range 3 {
		if !reaches("one") {
			t.Fatalf("after the refused reload: %s, want upstream one still", get(c, url))
		}
	}

	proxyLoopbackConfig(t, cfg, listen, "", up2)
	hup()
	testkit.WaitFor(t, 10*time.Second, "requests reaching upstream two after the reload", func() bool { return reaches("two") })
	if !strings.Contains(d.logs.String(), "proxy routes and limits reloaded") {
		t.Errorf("no 'proxy routes and limits reloaded' in the log:\n%s", d.logs.String())
	}

	certFile, keyFile, _ := writeCert(t, dir)
	https := freeAddr(t)
	// TLS and the route change together: the route is taken now, TLS at
	// the next start.
	proxyLoopbackConfig(t, cfg, listen, fmt.Sprintf("  https: %q\n  tls: {mode: files, cert: %s, key: %s}\n", https, certFile, keyFile), up1)
	before := strings.Count(d.logs.String(), "next start")
	hup()
	testkit.WaitFor(t, 10*time.Second, "the TLS change said to need a restart", func() bool {
		return strings.Count(d.logs.String(), "next start") > before
	})
	testkit.WaitFor(t, 10*time.Second, "requests reaching upstream one again", func() bool { return reaches("one") })
	if conn, err := net.DialTimeout("tcp", https, time.Second); err == nil {
		conn.Close()
		t.Errorf("the HTTPS listener %s of a reloaded configuration is open: it comes at the next start", https)
	}
}

// writeCert writes a self-signed certificate for app.example.com and its
// key as PEM files in dir, and a second key unrelated to the certificate.
func writeCert(t *testing.T, dir string) (certFile, keyFile, otherKey string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "app.example.com"},
		DNSNames:     []string{"app.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	marshal := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM("cert.pem", "CERTIFICATE", der), writePEM("key.pem", "PRIVATE KEY", marshal(key)),
		writePEM("other-key.pem", "PRIVATE KEY", marshal(other))
}

// TestCheckProxyErrors: `moat check` on a bad proxy section exits non-zero
// and names the file, the line and the field; on a good one it prints the
// routes and exits 0.
func TestCheckProxyErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, otherKey := writeCert(t, dir)
	noCert := filepath.Join(dir, "no-cert.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const head = "state_dir: %s\nsocket: %s\nfirewall: {backend: none}\nproxy:\n  http: \"127.0.0.1:8080\"\n"
	// TLS errors name the tls line (7) or the proxy section's (4).
	tlsAt := `:(4|7): proxy(\.tls(\.[a-z_]+)?)?: `
	for _, tc := range []struct {
		name string
		body string
		want []string // regexps the output must match; the first is prefixed with the file's path
	}{
		{name: "bad upstream",
			body: "  tls: {mode: off}\n  routes:\n    - {upstream: \"ftp://x:21\"}\n",
			want: []string{`:8: proxy\.routes\[0\]\.upstream: "ftp://x:21" is not an upstream`}},
		{name: "route without upstream",
			body: "  tls: {mode: off}\n  routes:\n    - {hosts: [app.example.com], path: /api}\n",
			want: []string{`:8: proxy\.routes\[0\]\.upstream: is missing`}},
		{name: "bad rate",
			body: "  tls: {mode: off}\n  routes:\n    - {upstream: 127.0.0.1:9000, rate: 5/sec}\n",
			want: []string{`:8: proxy\.routes\[0\]\.rate: "5/sec" is not a rate`}},
		{name: "tls files that do not exist",
			body: fmt.Sprintf("  https: \"127.0.0.1:8443\"\n  tls: {mode: files, cert: %s, key: %s}\n  routes:\n    - {upstream: 127.0.0.1:9000}\n", missing, keyFile),
			want: []string{tlsAt + `.*` + regexp.QuoteMeta(missing), `no such file`}},
		{name: "tls key of another certificate",
			body: fmt.Sprintf("  https: \"127.0.0.1:8443\"\n  tls: {mode: files, cert: %s, key: %s}\n  routes:\n    - {upstream: 127.0.0.1:9000}\n", certFile, otherKey),
			want: []string{tlsAt + `.*` + regexp.QuoteMeta(certFile), `does not match`}},
		{name: "ca_root without a certificate",
			body: fmt.Sprintf("  https: \"127.0.0.1:8443\"\n  tls: {mode: acme, email: ops@example.com, ca: \"https://127.0.0.1:14000/dir\", ca_root: %s}\n  routes:\n    - {hosts: [app.example.com], upstream: 127.0.0.1:9000}\n", noCert),
			want: []string{tlsAt + `.*ca_root.*` + regexp.QuoteMeta(noCert), `no PEM certificate`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "moat.yaml")
			text := fmt.Sprintf(head, filepath.Join(dir, "state"), filepath.Join(dir, "moat.sock")) + tc.body
			if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			r := cli(t, map[string]string{}, "check", "--config", cfg)
			if r.code == 0 {
				t.Fatalf("moat check exit 0 on:\n%s\nstdout %q", text, r.stdout)
			}
			for i, w := range tc.want {
				if i == 0 {
					w = regexp.QuoteMeta(cfg) + w
				}
				if !regexp.MustCompile(w).MatchString(r.stderr) {
					t.Errorf("moat check printed %q, want a match for %s", r.stderr, w)
				}
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "moat.yaml")
		text := fmt.Sprintf(head, filepath.Join(dir, "state"), filepath.Join(dir, "moat.sock")) +
			fmt.Sprintf("  https: \"127.0.0.1:8443\"\n  tls: {mode: files, cert: %s, key: %s}\n", certFile, keyFile) +
			"  routes:\n    - {hosts: [app.example.com], upstream: 127.0.0.1:9000, rate: 5/s, burst: 5}\n" +
			"    - {path: /api, upstream: [127.0.0.1:9001, \"http://127.0.0.1:9002\"]}\njails:\n" + proxyJail
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		r := cli(t, map[string]string{}, "check", "--config", cfg)
		if r.code != 0 {
			t.Fatalf("moat check: exit %d, stderr %q", r.code, r.stderr)
		}
		for _, w := range []string{
			cfg + ": ok\n",
			"tls files, 2 route(s)",
			"  app.example.com/ -> 127.0.0.1:9000 (5/s burst 5)\n",
			"  */api -> 127.0.0.1:9001 http://127.0.0.1:9002 (no limit)\n",
		} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("moat check printed:\n%s\nwant it to contain %q", r.stdout, w)
			}
		}
		lines := strings.Split(r.stdout, "\n")
		if !slices.ContainsFunc(lines, func(l string) bool {
			return regexp.MustCompile(`^proxy\s+\(proxy: 429s\)\s+3\s+1m0s\s+1h0m0s`).MatchString(l)
		}) {
			t.Errorf("moat check printed:\n%s\nwant the proxy jail with maxretry 3, findtime 1m, bantime 1h", r.stdout)
		}
	})
}

// TestProxyIPv6PrefixBan: IPv6 clients share a bucket per /64, and with
// ipv6_prefix: 64 on the proxy jail a flood from 2001:db8::2 bans
// 2001:db8::/64 in the jail and in the kernel, so 2001:db8::3 cannot
// connect either, while 2001:db8:1::2, in another /64, is served
// throughout. The server's own address is in a /64 of its own: the jail
// never bans a prefix holding one of the host's addresses.
func TestProxyIPv6PrefixBan(t *testing.T) {
	s := startProxyOn(t, "nftables", "  proxy: {maxretry: 3, findtime: 1m, bantime: 1h, ipv6_prefix: 64}\n", "",
		[]string{"2001:db8:ff::1/32"}, []string{"2001:db8::2/32", "2001:db8::3/32", "2001:db8:1::2/32"})
	a := httpClient(t, s.client, "2001:db8::2", true)
	same := httpClient(t, s.client, "2001:db8::3", true)
	b := httpClient(t, s.client, "2001:db8:1::2", true)
	if r := get(a, s.url); r.err != nil || r.code != http.StatusOK || !strings.HasPrefix(r.body, "one real=2001:db8::2 ") {
		t.Fatalf("first request over IPv6: %s, want 200 for 2001:db8::2", r)
	}
	// 2001:db8::3 takes from the same bucket: its requests count in the
	// flood of its /64.
	for range 2 {
		if r := get(same, s.url); r.err != nil || r.code != http.StatusOK {
			t.Fatalf("2001:db8::3 before the flood: %s, want 200", r)
		}
	}
	first, ok := flood(t, s, a, b)
	if ok > 3 {
		t.Errorf("%d requests of 2001:db8::2 served before the first 429; the /64 had 2 tokens of 5 left", ok)
	}
	check429(t, first)
	waitBanned(t, s.socket, "2001:db8::/64")
	testkit.WaitFor(t, 5*time.Second, "2001:db8::/64 in the kernel set", func() bool {
		kb := kernelBans(t, s.server, "moat")
		return len(kb) == 1 && kb[0].Prefix.String() == "2001:db8::/64" && kb[0].Jail == "proxy"
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := dialIn(ctx, s.client, "2001:db8::3", net.JoinHostPort("2001:db8:ff::1", proxyPort)); err == nil {
		c.Close()
		t.Errorf("2001:db8::3, in the banned /64, still opens a connection")
	}
	if r := get(httpClient(t, s.client, "2001:db8:1::2", false), s.url); r.err != nil || r.code != http.StatusOK {
		t.Fatalf("2001:db8:1::2 after the ban of 2001:db8::/64: %s, want 200", r)
	}
}

// TestProxyAccessLogReopen: the daemon's proxy writes one JSON line per
// request to access_log; after a rotation by rename, SIGUSR1 makes it
// write to a new file at the path, and no entry is lost between the two.
func TestProxyAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	listen := freeAddr(t)
	logPath := filepath.Join(dir, "access.log")
	up := upstream(t, nil, "one")
	proxyLoopbackConfig(t, cfg, listen, fmt.Sprintf("  tls: {mode: off}\n  access_log: %s\n", logPath), up)
	d := startDaemon(t, nil, cfg, filepath.Join(dir, "moat.sock"))
	c := httpClient(t, nil, "", false)
	lines := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	for i := range 3 {
		if r := get(c, fmt.Sprintf("http://%s/before/%d", listen, i)); r.code != http.StatusOK {
			t.Fatalf("request %d: %s", i, r)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "3 entries in the access log", func() bool { return len(lines(logPath)) == 3 })
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the access log reopened", func() bool {
		_, err := os.Stat(logPath)
		return err == nil && strings.Contains(d.logs.String(), "access log reopened")
	})
	for i := range 2 {
		if r := get(c, fmt.Sprintf("http://%s/after/%d", listen, i)); r.code != http.StatusOK {
			t.Fatalf("request %d after the rotation: %s", i, r)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "2 entries in the new access log", func() bool { return len(lines(logPath)) == 2 })
	old, cur := lines(logPath+".1"), lines(logPath)
	// Entries of requests a moment apart may be written in either order.
	if len(old) != 3 || !strings.Contains(strings.Join(old, "\n"), `"path":"/before/2"`) || !strings.Contains(strings.Join(cur, "\n"), `"path":"/after/0"`) {
		t.Errorf("rotated log:\n%s\nnew log:\n%s", strings.Join(old, "\n"), strings.Join(cur, "\n"))
	}
	if !strings.HasPrefix(cur[0], `{"time":"`) || !strings.Contains(cur[0], `"client":"127.0.0.1","host":"`) || !strings.Contains(cur[0], `"status":200,`) {
		t.Errorf("entry = %s", cur[0])
	}
}
