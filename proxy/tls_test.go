package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pebbleca "github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	pebbleva "github.com/letsencrypt/pebble/v2/va"
	pebblewfe "github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/moatproj/moat/internal/testkit"
)

// testLog returns a debug slog logger and its buffer, dumped on failure
// under the given name.
func testLog(t *testing.T, name string) (*slog.Logger, *testkit.Buffer) {
	t.Helper()
	b := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// pebble is an ACME CA run in process on loopback.
type pebble struct {
	dirURL string         // ACME directory
	caRoot string         // PEM file of the WFE's TLS certificate
	roots  *x509.CertPool // the root Pebble issues under
}

// startPebble runs Pebble's WFE over HTTPS (httptest's certificate, written
// to a file for TLS.CARoot) with a VA that resolves every name to
// 127.0.0.1 through a DNS server of the test and validates HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort, without random sleeps.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	return startPebbleValid(t, httpPort, tlsPort, 0)
}

// startPebbleValid is startPebble issuing certificates valid for validity
// seconds (Pebble's default, 90 days, when 0).
func startPebbleValid(t *testing.T, httpPort, tlsPort int, validity uint64) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	dnsAddr := startDNS(t)
	logBuf := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", logBuf.String())
		}
	})
	plog := log.New(logBuf, "pebble ", log.Lmicroseconds)

	store := pebbledb.NewMemoryStore()
	ca := pebbleca.New(plog, store, "", "ecdsa", 0, 1, map[string]pebbleca.Profile{
		"default": {Description: "test", ValidityPeriod: validity},
	})
	va := pebbleva.New(plog, httpPort, tlsPort, false, dnsAddr, store)
	wfe := pebblewfe.New(plog, store, va, ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(wfe.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	caRoot := filepath.Join(t.TempDir(), "pebble-wfe.pem")
	writePEM(t, caRoot, "CERTIFICATE", srv.Certificate().Raw, 0o644)

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.GetRootCert(0).PEM()) {
		t.Fatal("pebble root: no certificate")
	}
	return &pebble{dirURL: srv.URL + pebblewfe.DirectoryPath, caRoot: caRoot, roots: roots}
}

// startDNS serves DNS over TCP on loopback, answering A 127.0.0.1 for
// every name and nothing else (Pebble's VA asks over TCP).
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

func writePEM(t *testing.T, path, typ string, der []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), perm); err != nil {
		t.Fatal(err)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

// serve runs h on ln, over TLS when tc is not nil, until the test ends.
func serve(t *testing.T, ln net.Listener, h http.Handler, tc *tls.Config) {
	t.Helper()
	srv := &http.Server{Handler: h, TLSConfig: tc, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		if tc != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { srv.Close() })
}

// answer is the handler behind every HTTPS listener of these tests.
var answer = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "hello %s", r.Host)
})

// get makes an HTTPS request to addr with SNI and Host name, trusting only
// roots; it returns the body and the leaf the server presented.
func get(t *testing.T, addr, name string, roots *x509.CertPool) (string, *x509.Certificate, error) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + name + "/")
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	return string(body), resp.TLS.PeerCertificates[0], nil
}

// acmeCase runs one ACME issuance through Pebble with one challenge type
// offered and checks that the certificate is served and was validated
// through that challenge.
func acmeCase(t *testing.T, host string, http01 bool) {
	httpLn, httpsLn := listen(t), listen(t)
	p := startPebble(t, portOf(t, httpLn), portOf(t, httpsLn))
	logger, _ := testLog(t, "moat")

	o := CertOptions{Logger: logger}
	if http01 {
		o.HTTPAddr = httpLn.Addr().String()
	} else {
		o.HTTPSAddr = httpsLn.Addr().String()
	}
	cfg := TLS{Mode: TLSAcme, Email: "ops@example.com", CA: p.dirURL, CARoot: p.caRoot}
	stateDir := t.TempDir()
	c, err := NewCerts(t.Context(), cfg, []string{host}, stateDir, o)
	if err != nil {
		t.Fatalf("NewCerts: %v", err)
	}
	t.Cleanup(c.Close)
	if c.RootPath() != "" {
		t.Errorf("RootPath() = %q in acme mode, want empty", c.RootPath())
	}

	// Count the challenges each listener sees.
	var httpChallenges, alpnHellos atomic.Int32
	httpHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			httpChallenges.Add(1)
		}
		c.HTTPChallenge(http.NotFoundHandler()).ServeHTTP(w, r)
	})
	tc := c.TLSConfig()
	getCert := tc.GetCertificate
	tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		for _, p := range hello.SupportedProtos {
			if p == "acme-tls/1" {
				alpnHellos.Add(1)
			}
		}
		return getCert(hello)
	}
	serve(t, httpLn, httpHandler, nil)
	serve(t, httpsLn, answer, tc)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Manage(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Manage: %v", err)
		}
	})

	testkit.WaitFor(t, 25*time.Second, "the certificate of "+host, func() bool { _, ok := c.Expiries()[host]; return ok })
	body, leaf, err := get(t, httpsLn.Addr().String(), host, p.roots)
	if err != nil {
		t.Fatalf("GET https://%s/ trusting Pebble's root: %v", host, err)
	}
	if want := "hello " + host; body != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		t.Errorf("served leaf: %v", err)
	}
	if got := c.Expiries()[host]; !got.Equal(leaf.NotAfter) {
		t.Errorf("Expiries()[%s] = %v, want the served NotAfter %v", host, got, leaf.NotAfter)
	}
	if http01 {
		if httpChallenges.Load() == 0 || alpnHellos.Load() != 0 {
			t.Errorf("HTTP-01 only: %d HTTP challenge requests, %d acme-tls/1 hellos; want >0 and 0",
				httpChallenges.Load(), alpnHellos.Load())
		}
	} else if alpnHellos.Load() == 0 || httpChallenges.Load() != 0 {
		t.Errorf("TLS-ALPN-01 only: %d acme-tls/1 hellos, %d HTTP challenge requests; want >0 and 0",
			alpnHellos.Load(), httpChallenges.Load())
	}
	// The certificate and the account are in the state directory.
	matches, _ := filepath.Glob(filepath.Join(stateDir, certsDir, "certificates", "*", host, host+".crt"))
	if len(matches) != 1 {
		t.Errorf("certificate files under %s: %v, want one", stateDir, matches)
	}
	accounts, _ := filepath.Glob(filepath.Join(stateDir, certsDir, "acme", "*", "users", "ops@example.com", "*.json"))
	if len(accounts) != 1 {
		t.Errorf("account files under %s: %v, want one", stateDir, accounts)
	}

	// A restart serves the stored certificate instead of ordering one.
	c2, err := NewCerts(t.Context(), cfg, []string{host}, stateDir, o)
	if err != nil {
		t.Fatalf("second NewCerts: %v", err)
	}
	t.Cleanup(c2.Close)
	ln2 := listen(t)
	serve(t, ln2, answer, c2.TLSConfig())
	ctx2, cancel2 := context.WithCancel(t.Context())
	done2 := make(chan error, 1)
	go func() { done2 <- c2.Manage(ctx2) }()
	t.Cleanup(func() { cancel2(); <-done2 })
	testkit.WaitFor(t, 25*time.Second, "the stored certificate of "+host, func() bool { _, ok := c2.Expiries()[host]; return ok })
	_, leaf2, err := get(t, ln2.Addr().String(), host, p.roots)
	if err != nil {
		t.Fatalf("GET after restart: %v", err)
	}
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after restart serial %x, want the stored certificate's %x", leaf2.SerialNumber, leaf.SerialNumber)
	}
}

func TestACMEHTTP01(t *testing.T) { acmeCase(t, "app.example.test", true) }

func TestACMETLSALPN01(t *testing.T) { acmeCase(t, "alpn.example.test", false) }

// TestACMERenewal: a certificate that enters its renewal window is
// renewed through Pebble while it is served, and handshakes go on without
// a break, first with the old certificate, then with the new one. Pebble
// issues 24-second certificates here and certmagic looks every half second.
func TestACMERenewal(t *testing.T) {
	const host = "renew.example.test"
	httpLn, httpsLn := listen(t), listen(t)
	p := startPebbleValid(t, portOf(t, httpLn), portOf(t, httpsLn), 24)
	logger, _ := testLog(t, "moat")
	cfg := TLS{Mode: TLSAcme, Email: "ops@example.com", CA: p.dirURL, CARoot: p.caRoot}
	c, err := NewCerts(t.Context(), cfg, []string{host}, t.TempDir(), CertOptions{Logger: logger, HTTPAddr: httpLn.Addr().String(), renewCheck: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewCerts: %v", err)
	}
	t.Cleanup(c.Close)
	serve(t, httpLn, c.HTTPChallenge(http.NotFoundHandler()), nil)
	serve(t, httpsLn, answer, c.TLSConfig())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Manage(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	testkit.WaitFor(t, 25*time.Second, "the first certificate", func() bool { _, ok := c.Expiries()[host]; return ok })
	_, first, err := get(t, httpsLn.Addr().String(), host, p.roots)
	if err != nil {
		t.Fatal(err)
	}
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("Pebble issued a certificate valid %v, want 24 s", life)
	}
	var renewed *x509.Certificate
	deadline := time.Now().Add(40 * time.Second)
	for renewed == nil {
		if time.Now().After(deadline) {
			t.Fatalf("certificate %x (until %v) not renewed by %v", first.SerialNumber, first.NotAfter, time.Now())
		}
		body, leaf, err := get(t, httpsLn.Addr().String(), host, p.roots)
		if err != nil || body != "hello "+host {
			t.Fatalf("handshake while renewing: %q %v", body, err)
		}
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = leaf
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate ends %v, the first %v", renewed.NotAfter, first.NotAfter)
	}
	if time.Now().After(first.NotAfter) {
		t.Errorf("renewed only after the first certificate expired (%v)", first.NotAfter)
	}
	testkit.WaitFor(t, 25*time.Second, "the renewed expiry", func() bool { return c.Expiries()[host].Equal(renewed.NotAfter) })
}

func TestInternalCA(t *testing.T) {
	const host = "app.example.test"
	stateDir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	logger, logs := testLog(t, "moat")

	c, err := NewCerts(t.Context(), TLS{Mode: TLSInternal}, []string{host, "203.0.113.7"}, stateDir, CertOptions{Logger: logger, Now: clock})
	if err != nil {
		t.Fatalf("NewCerts: %v", err)
	}
	t.Cleanup(c.Close)
	rootPath := c.RootPath()
	if rootPath == "" {
		t.Fatal("RootPath() empty in internal mode")
	}
	if !strings.Contains(logs.String(), "root="+rootPath) {
		t.Errorf("the root's path is not logged:\n%s", logs.String())
	}
	keyPath := filepath.Join(filepath.Dir(rootPath), internalRootKey)
	for path, want := range map[string]os.FileMode{rootPath: 0o644, keyPath: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	rootPEM, err := os.ReadFile(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("root file holds no certificate")
	}

	ln := listen(t)
	serve(t, ln, answer, c.TLSConfig())
	body, leaf, err := get(t, ln.Addr().String(), host, roots)
	if err != nil {
		t.Fatalf("GET trusting the internal root: %v", err)
	}
	if body != "hello "+host {
		t.Errorf("body = %q", body)
	}
	if want := now.Add(internalLeafLife); !leaf.NotAfter.Equal(want) {
		t.Errorf("leaf NotAfter = %v, want now+%v = %v (injected clock)", leaf.NotAfter, internalLeafLife, want)
	}
	ipCerts := c.cache.AllMatchingCertificates("203.0.113.7")
	if len(ipCerts) != 1 {
		t.Fatalf("%d certificates for the IP host, want 1", len(ipCerts))
	}
	if _, err := ipCerts[0].Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "203.0.113.7"}); err != nil {
		t.Errorf("leaf for the IP host: %v", err)
	}
	if got := c.Expiries(); !got[host].Equal(leaf.NotAfter) || len(got) != 2 {
		t.Errorf("Expiries() = %v, want both hosts, %s at %v", got, host, leaf.NotAfter)
	}
	c.Close()

	// A restart reuses the root and the stored leaf.
	c2, err := NewCerts(t.Context(), TLS{Mode: TLSInternal}, []string{host}, stateDir, CertOptions{Logger: logger, Now: clock})
	if err != nil {
		t.Fatalf("second NewCerts: %v", err)
	}
	t.Cleanup(c2.Close)
	rootPEM2, err := os.ReadFile(c2.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	if c2.RootPath() != rootPath || !bytes.Equal(rootPEM, rootPEM2) {
		t.Fatalf("second start: root %s changed (was %s)", c2.RootPath(), rootPath)
	}
	ln2 := listen(t)
	serve(t, ln2, answer, c2.TLSConfig())
	_, leaf2, err := get(t, ln2.Addr().String(), host, roots)
	if err != nil {
		t.Fatalf("GET after restart: %v", err)
	}
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("after restart the leaf was reissued (serial %x, was %x), want the stored one", leaf2.SerialNumber, leaf.SerialNumber)
	}
}

func TestInternalCAErrors(t *testing.T) {
	t.Run("cert_without_key", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := loadOrCreateCA(dir, time.Now); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, internalRootKey))
		if _, err := loadOrCreateCA(dir, time.Now); err == nil || !strings.Contains(err.Error(), "internal ca key") {
			t.Errorf("err = %v, want a missing key error", err)
		}
	})
	t.Run("key_of_another_root", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		for _, d := range []string{a, b} {
			if _, err := loadOrCreateCA(d, time.Now); err != nil {
				t.Fatal(err)
			}
		}
		key, _ := os.ReadFile(filepath.Join(b, internalRootKey))
		os.WriteFile(filepath.Join(a, internalRootKey), key, 0o600)
		if _, err := loadOrCreateCA(a, time.Now); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("err = %v, want a mismatch error", err)
		}
	})
	t.Run("key_without_cert_is_recreated", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, internalRootKey), []byte("half-written"), 0o600)
		ca, err := loadOrCreateCA(dir, time.Now)
		if err != nil {
			t.Fatalf("err = %v, want a new root", err)
		}
		if !ca.cert.IsCA {
			t.Error("new root is not a CA")
		}
	})
}

// makePair writes a self-signed certificate for name with the given
// serial, and its key, to certFile and keyFile, each through a rename.
func makePair(t testing.TB, certFile, keyFile, name string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: bigInt(serial),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Duration(serial) * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	replaceFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func bigInt(n int64) *big.Int { return big.NewInt(n) }

func leafPool(t *testing.T, certFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("no certificate in " + certFile)
	}
	return p
}

func TestFilesReload(t *testing.T) {
	const host = "files.example.test"
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	makePair(t, certFile, keyFile, host, 10)
	poolA := leafPool(t, certFile)
	logger, logs := testLog(t, "moat")

	c, err := NewCerts(t.Context(), TLS{Mode: TLSFiles, Cert: certFile, Key: keyFile}, []string{host}, "",
		CertOptions{Logger: logger, filesPoll: time.Hour})
	if err != nil {
		t.Fatalf("NewCerts: %v", err)
	}
	t.Cleanup(c.Close)
	ln := listen(t)
	serve(t, ln, answer, c.TLSConfig())
	addr := ln.Addr().String()

	_, leaf, err := get(t, addr, host, poolA)
	if err != nil || leaf.SerialNumber.Int64() != 10 {
		t.Fatalf("first pair: serial %v, err %v; want 10", leaf, err)
	}
	if got := c.Expiries()[host]; !got.Equal(leaf.NotAfter) {
		t.Errorf("Expiries()[%s] = %v, want %v", host, got, leaf.NotAfter)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Manage(ctx) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)

	// The watcher (not the hour-long poll) notices a replaced pair.
	makePair(t, certFile, keyFile, host, 20)
	poolB := leafPool(t, certFile)
	testkit.WaitFor(t, 25*time.Second, "the new pair to be served", func() bool {
		_, leaf, err := get(t, addr, host, poolB)
		return err == nil && leaf.SerialNumber.Int64() == 20
	})

	// Broken replacements keep the served pair.
	stop() // the rest calls checkFiles itself
	keyB, _ := os.ReadFile(keyFile)
	certB, _ := os.ReadFile(certFile)
	broken := []struct {
		name       string
		cert, key  []byte
		wantErrSub string
	}{
		{name: "garbage_cert", cert: []byte("not a certificate"), key: keyB, wantErrSub: "load tls files"},
		{name: "empty_key", cert: nil, key: []byte{}, wantErrSub: "load tls files"},
		{name: "key_of_other_cert", cert: nil, key: nil, wantErrSub: "private key does not match"},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "key_of_other_cert" {
				other := t.TempDir()
				makePair(t, filepath.Join(other, "c"), filepath.Join(other, "k"), host, 30)
				kOther, _ := os.ReadFile(filepath.Join(other, "k"))
				tc.key = kOther
			}
			if tc.cert == nil {
				tc.cert = certB
			}
			replaceFile(t, certFile, tc.cert)
			replaceFile(t, keyFile, tc.key)
			changed, err := c.checkFiles()
			if changed || err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
				t.Errorf("checkFiles() = %v, %v; want false and an error containing %q", changed, err, tc.wantErrSub)
			}
			_, leaf, err := get(t, addr, host, poolB)
			if err != nil || leaf.SerialNumber.Int64() != 20 {
				t.Errorf("after a broken pair: serial %v, err %v; want the previous pair (20)", leaf, err)
			}
		})
	}
	// A good pair after broken ones is taken again.
	makePair(t, certFile, keyFile, host, 40)
	if changed, err := c.checkFiles(); !changed || err != nil {
		t.Fatalf("checkFiles() = %v, %v after a good pair", changed, err)
	}
	if _, leaf, err := get(t, addr, host, leafPool(t, certFile)); err != nil || leaf.SerialNumber.Int64() != 40 {
		t.Errorf("good pair after broken ones: serial %v, err %v; want 40", leaf, err)
	}
	if !strings.Contains(logs.String(), "tls files reloaded") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}
}

func TestNewCertsErrors(t *testing.T) {
	dir := t.TempDir()
	noCert := filepath.Join(dir, "nocert.pem")
	os.WriteFile(noCert, []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), 0o644)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	makePair(t, certFile, keyFile, "a.example.test", 1)
	otherCert, otherKey := filepath.Join(dir, "c2.pem"), filepath.Join(dir, "k2.pem")
	makePair(t, otherCert, otherKey, "b.example.test", 2)
	missing := filepath.Join(dir, "missing.pem")
	hosts := []string{"app.example.test"}
	listeners := CertOptions{HTTPAddr: ":80", HTTPSAddr: ":443"}

	tests := []struct {
		name     string
		cfg      TLS
		hosts    []string
		stateDir string
		o        CertOptions
		want     string // substring of the error
	}{
		{name: "mode_off", cfg: TLS{Mode: TLSOff}, want: "tls mode off"},
		{name: "mode_unknown", cfg: TLS{Mode: "letsencrypt"}, want: `tls mode "letsencrypt"`},
		{name: "acme_http_ca", cfg: TLS{Mode: TLSAcme, CA: "http://127.0.0.1:14000/dir"}, o: listeners, want: "want an https:// directory URL"},
		{name: "acme_ca_no_scheme", cfg: TLS{Mode: TLSAcme, CA: "acme.example.test/dir"}, o: listeners, want: "want an https:// directory URL"},
		{name: "acme_ca_unparsable", cfg: TLS{Mode: TLSAcme, CA: "https://[::1"}, o: listeners, want: "acme ca"},
		{name: "acme_email_display_name", cfg: TLS{Mode: TLSAcme, Email: "Ops <ops@example.com>"}, o: listeners, want: "acme email"},
		{name: "acme_email_no_at", cfg: TLS{Mode: TLSAcme, Email: "ops.example.com"}, o: listeners, want: "acme email"},
		{name: "acme_email_no_domain_dot", cfg: TLS{Mode: TLSAcme, Email: "ops@localhost"}, o: listeners, want: "acme email"},
		{name: "acme_ca_root_missing", cfg: TLS{Mode: TLSAcme, CARoot: missing}, o: listeners, want: "acme ca_root"},
		{name: "acme_ca_root_no_cert", cfg: TLS{Mode: TLSAcme, CARoot: noCert}, o: listeners, want: "no PEM certificate"},
		{name: "acme_no_listeners", cfg: TLS{Mode: TLSAcme}, want: "neither an http nor an https listener"},
		{name: "acme_bad_listen_port", cfg: TLS{Mode: TLSAcme}, o: CertOptions{HTTPAddr: ":http"}, want: "port must be a number"},
		{name: "acme_port_zero", cfg: TLS{Mode: TLSAcme}, o: CertOptions{HTTPSAddr: "127.0.0.1:0"}, want: "not 0"},
		{name: "acme_wildcard", cfg: TLS{Mode: TLSAcme}, hosts: []string{"*.example.com"}, o: listeners, want: "DNS-01"},
		{name: "acme_localhost", cfg: TLS{Mode: TLSAcme}, hosts: []string{"localhost"}, o: listeners, want: `host "localhost" cannot have a certificate`},
		{name: "acme_no_hosts", cfg: TLS{Mode: TLSAcme}, hosts: []string{}, o: listeners, want: "no host names"},
		{name: "internal_bad_host", cfg: TLS{Mode: TLSInternal}, hosts: []string{"bad host"}, want: `host "bad host" cannot have a certificate`},
		{name: "no_state_dir", cfg: TLS{Mode: TLSInternal}, stateDir: "-", want: "no state directory"},
		{name: "files_missing_cert", cfg: TLS{Mode: TLSFiles, Cert: missing, Key: keyFile}, want: "missing.pem"},
		{name: "files_missing_key", cfg: TLS{Mode: TLSFiles, Cert: certFile, Key: missing}, want: "missing.pem"},
		{name: "files_no_key_setting", cfg: TLS{Mode: TLSFiles, Cert: certFile}, want: "cert and key are both required"},
		{name: "files_not_pem", cfg: TLS{Mode: TLSFiles, Cert: noCert, Key: keyFile}, want: "load tls files"},
		{name: "files_key_mismatch", cfg: TLS{Mode: TLSFiles, Cert: certFile, Key: otherKey}, want: "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.hosts
			if h == nil {
				h = hosts
			}
			sd := tc.stateDir
			switch sd {
			case "":
				sd = t.TempDir()
			case "-":
				sd = ""
			}
			c, err := NewCerts(t.Context(), tc.cfg, h, sd, tc.o)
			if err == nil {
				c.Close()
				t.Fatalf("NewCerts(%+v) = nil error, want one containing %q", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewCerts(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestCheckEmail(t *testing.T) {
	for _, tc := range emailCases {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkEmail(tc.in); (err == nil) != tc.ok {
				t.Errorf("checkEmail(%q) = %v, want ok %v", tc.in, err, tc.ok)
			}
		})
	}
}

var emailCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"plain", "ops@example.com", true},
	{"plus", "ops+moat@mail.example.com", true},
	{"display_name", "Ops <ops@example.com>", false},
	{"angle", "<ops@example.com>", false},
	{"no_at", "ops.example.com", false},
	{"no_dot", "ops@example", false},
	{"space", "ops @example.com", false},
	{"two", "a@example.com, b@example.com", false},
	{"empty", "", false},
}

func FuzzCheckEmail(f *testing.F) {
	for _, tc := range emailCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkEmail(s) == nil && (strings.ContainsAny(s, " <>,\n") || !strings.Contains(s, "@")) {
			t.Errorf("checkEmail(%q) accepted", s)
		}
	})
}

func TestSlogCore(t *testing.T) {
	var b testkit.Buffer
	zl := zap.New(slogCore{log: slog.New(slog.NewTextHandler(&b, nil))}).Named("acme").With(zap.String("ca", "x"))
	zl.Info("routine", zap.Int("n", 1))
	zl.Warn("warned", zap.String("identifier", "app.example.test"))
	zl.Error("failed", zap.Error(errors.New("boom")))
	out := b.String()
	for _, want := range []string{
		`level=WARN msg=warned ca=x identifier=app.example.test certmagic=acme`,
		`level=ERROR msg=failed ca=x error=boom certmagic=acme`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "routine") {
		t.Errorf("info level reached slog:\n%s", out)
	}
}

// BenchmarkGetCertificate measures the certificate lookup of one TLS
// handshake (the hot path of every new HTTPS connection).
func BenchmarkGetCertificate(b *testing.B) {
	const host = "app.example.test"
	b.Run("internal", func(b *testing.B) {
		c, err := NewCerts(b.Context(), TLS{Mode: TLSInternal}, []string{host}, b.TempDir(), CertOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchGetCertificate(b, c.TLSConfig(), host)
	})
	b.Run("files", func(b *testing.B) {
		dir := b.TempDir()
		certFile, keyFile := filepath.Join(dir, "c"), filepath.Join(dir, "k")
		makePair(b, certFile, keyFile, host, 1)
		c, err := NewCerts(b.Context(), TLS{Mode: TLSFiles, Cert: certFile, Key: keyFile}, []string{host}, "", CertOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchGetCertificate(b, c.TLSConfig(), host)
	})
}

func benchGetCertificate(b *testing.B, tc *tls.Config, host string) {
	hello := &tls.ClientHelloInfo{ServerName: host, SupportedProtos: []string{"h2", "http/1.1"}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cert, err := tc.GetCertificate(hello)
			if err != nil || cert == nil {
				b.Fatalf("GetCertificate: %v, %v", cert, err)
			}
		}
	})
}

func TestInternalIssue(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := createCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrFor := func(t *testing.T, names ...string) *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	tests := []struct {
		name      string
		at        time.Time
		names     []string
		wantAfter time.Time // zero: an error is wanted
	}{
		{name: "week", at: now, names: []string{"a.example.test"}, wantAfter: now.Add(internalLeafLife)},
		{name: "capped_by_root", at: ca.cert.NotAfter.Add(-time.Hour), names: []string{"a.example.test"}, wantAfter: ca.cert.NotAfter},
		{name: "no_names", at: now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca.now = func() time.Time { return tc.at }
			got, err := ca.Issue(t.Context(), csrFor(t, tc.names...))
			if tc.wantAfter.IsZero() {
				if err == nil {
					t.Fatal("Issue() = nil error, want one")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := pem.Decode(got.Certificate)
			leaf, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !leaf.NotAfter.Equal(tc.wantAfter) {
				t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, tc.wantAfter)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.names[0], CurrentTime: tc.at}); err != nil {
				t.Errorf("leaf does not verify against the root: %v", err)
			}
		})
	}
}
