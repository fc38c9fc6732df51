package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/fsnotify/fsnotify"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// certsDir is where certmagic keeps certificates and the ACME account,
// under the state directory.
const certsDir = "certs"

// Defaults of the files mode's watcher.
const (
	defaultFilesPoll     = 30 * time.Second
	defaultFilesDebounce = 250 * time.Millisecond
)

// CertOptions are the parts of NewCerts that vary by caller.
type CertOptions struct {
	// Logger receives certificate events and, at warn and above, certmagic's
	// own log (slog.Default's handler is never used when nil: logs are
	// discarded).
	Logger *slog.Logger
	// Now is the clock of the internal CA (time.Now when nil). certmagic
	// keeps its own clock for renewals.
	Now func() time.Time
	// HTTPAddr and HTTPSAddr are the addresses moat's HTTP and HTTPS
	// listeners are bound to (acme; with an explicit port, so the bound
	// address when the configuration says port 0). The HTTP-01 challenge
	// is answered by HTTPChallenge on the first, TLS-ALPN-01 by TLSConfig
	// on the second; an empty address disables that challenge. Both
	// listeners must be bound before Manage is called: certmagic probes
	// these addresses and starts its own challenge server on one it finds
	// free.
	HTTPAddr, HTTPSAddr string

	// filesPoll is how often the files mode stats the pair besides
	// watching it (defaultFilesPoll when 0).
	filesPoll time.Duration
	// renewCheck is how often certmagic looks for certificates to renew
	// (its default, 10 minutes, when 0).
	renewCheck time.Duration
}

// Certs provides the certificates of the HTTPS listener in one of the TLS
// modes acme, internal or files. Its methods are safe for concurrent use.
type Certs struct {
	mode  string
	hosts []string
	log   *slog.Logger

	// acme and internal
	cache    *certmagic.Cache
	magic    *certmagic.Config
	acme     *certmagic.ACMEIssuer
	rootPath string

	// files
	certFile, keyFile string
	served            atomic.Pointer[tls.Certificate]
	filesPoll         time.Duration
	filesMu           sync.Mutex // serialises checkFiles
	filesSeen         filePairStat

	closeOnce sync.Once
}

// NewCerts prepares certificates for hosts according to cfg.Mode (acme,
// internal or files; off is refused). Certificates, the ACME account and
// locks live in certmagic file storage under stateDir/certs; the internal
// CA in stateDir/ca. In internal mode the leaf certificates are issued (or
// loaded) before NewCerts returns; in files mode the pair is loaded; in acme
// mode nothing is requested before Manage. Errors name the setting at fault:
// an unreadable file, a ca_root without certificate, a CA URL that is not
// https, an invalid email, a host name that cannot have a certificate.
func NewCerts(ctx context.Context, cfg TLS, hosts []string, stateDir string, o CertOptions) (*Certs, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	c := &Certs{mode: cfg.Mode, log: log, filesPoll: o.filesPoll}
	if c.filesPoll <= 0 {
		c.filesPoll = defaultFilesPoll
	}
	switch cfg.Mode {
	case TLSFiles:
		c.hosts = normalizeHosts(hosts)
		if err := c.initFiles(cfg); err != nil {
			return nil, err
		}
		return c, nil
	case TLSAcme, TLSInternal:
	case TLSOff:
		return nil, errors.New("tls mode off: no certificates to manage")
	default:
		return nil, fmt.Errorf("tls mode %q: want %s, %s, %s or %s", cfg.Mode, TLSAcme, TLSInternal, TLSFiles, TLSOff)
	}

	if stateDir == "" {
		return nil, errors.New("certificates: no state directory")
	}
	c.hosts = normalizeHosts(hosts)
	if len(c.hosts) == 0 {
		return nil, fmt.Errorf("tls mode %s: no host names to get certificates for (routes need hosts)", cfg.Mode)
	}
	for _, h := range c.hosts {
		ok := certmagic.SubjectQualifiesForCert(h)
		if cfg.Mode == TLSAcme {
			ok = certmagic.SubjectQualifiesForPublicCert(h)
		}
		if !ok {
			return nil, fmt.Errorf("tls mode %s: host %q cannot have a certificate", cfg.Mode, h)
		}
		if cfg.Mode == TLSAcme && strings.Contains(h, "*") {
			return nil, fmt.Errorf("tls mode acme: host %q: a wildcard needs the DNS-01 challenge, which moat does not answer", h)
		}
	}

	zl := zap.New(slogCore{log: log})
	c.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return c.magic, nil },
		Logger:             zl,
		RenewCheckInterval: o.renewCheck,
	})
	c.magic = certmagic.New(c.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: filepath.Join(stateDir, certsDir)},
		Logger:  zl,
		OnEvent: c.onEvent,
		// Only what onEvent logs: certmagic otherwise builds an event
		// for every handshake.
		ShouldEmitFunc: func(event string) bool { return event == "cert_obtained" || event == "cert_failed" },
	})

	switch cfg.Mode {
	case TLSAcme:
		iss, err := newACMEIssuer(c.magic, cfg, o, zl)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.acme = iss
		c.magic.Issuers = []certmagic.Issuer{iss}
	case TLSInternal:
		ca, err := loadOrCreateCA(filepath.Join(stateDir, internalCADir), now)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.rootPath = ca.certPath
		log.Info("internal CA: clients trust this root", "root", ca.certPath, "subject", ca.cert.Subject.CommonName)
		c.magic.Issuers = []certmagic.Issuer{ca}
		// Local and quick: done now, so the first handshake has its
		// certificate and a failure stops the start.
		if err := c.magic.ManageSync(ctx, c.hosts); err != nil {
			c.Close()
			return nil, fmt.Errorf("internal certificates: %w", err)
		}
	}
	return c, nil
}

// newACMEIssuer validates the acme settings and makes the issuer.
func newACMEIssuer(magic *certmagic.Config, cfg TLS, o CertOptions, zl *zap.Logger) (*certmagic.ACMEIssuer, error) {
	if cfg.Email != "" {
		if err := checkEmail(cfg.Email); err != nil {
			return nil, err
		}
	}
	ca := cfg.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	u, err := url.Parse(ca)
	if err != nil {
		return nil, fmt.Errorf("acme ca %q: %w", ca, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("acme ca %q: want an https:// directory URL", ca)
	}
	tmpl := certmagic.ACMEIssuer{
		CA:     ca,
		Email:  cfg.Email,
		Agreed: true, // configuring acme is agreeing to the CA's terms
		Logger: zl,
		// moat's own listeners serve the challenges; these addresses
		// are where certmagic looks for them (see CertOptions).
		DisableHTTPChallenge:    o.HTTPAddr == "",
		DisableTLSALPNChallenge: o.HTTPSAddr == "",
	}
	if tmpl.DisableHTTPChallenge && tmpl.DisableTLSALPNChallenge {
		return nil, errors.New("acme: neither an http nor an https listener to answer challenges on")
	}
	if !tmpl.DisableHTTPChallenge {
		host, port, err := splitListen(o.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("acme: http listener: %w", err)
		}
		tmpl.ListenHost, tmpl.AltHTTPPort = host, port
	}
	if !tmpl.DisableTLSALPNChallenge {
		host, port, err := splitListen(o.HTTPSAddr)
		if err != nil {
			return nil, fmt.Errorf("acme: https listener: %w", err)
		}
		if !tmpl.DisableHTTPChallenge && host != tmpl.ListenHost {
			// One probe host for both: the wildcard conflicts with a
			// listener on any address of the port.
			host = ""
		}
		tmpl.ListenHost, tmpl.AltTLSALPNPort = host, port
	}
	if cfg.CARoot != "" {
		pool, err := loadRoots(cfg.CARoot)
		if err != nil {
			return nil, err
		}
		tmpl.TrustedRoots = pool
	}
	if cfg.AccountKey != "" {
		key, err := loadAccountKey(cfg.AccountKey)
		if err != nil {
			return nil, err
		}
		tmpl.AccountKeyPEM = key
	}
	return certmagic.NewACMEIssuer(magic, tmpl), nil
}

// loadAccountKey reads the PEM private key of an existing ACME account.
// The key itself never reaches a log line or an error.
func loadAccountKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("acme account_key: %w", err)
	}
	if _, err := certmagic.PEMDecodePrivateKey(b); err != nil {
		return "", fmt.Errorf("acme account_key %s: not a PEM private key", path)
	}
	return string(b), nil
}

// splitListen splits a listen address such as ":443" or "127.0.0.1:8443"
// into the host certmagic should probe and a port number.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("address %q: port must be a number in 1-65535", addr)
	}
	if port == 0 {
		return "", 0, fmt.Errorf("address %q: acme needs the fixed port the CA validates on, not 0", addr)
	}
	return host, port, nil
}

// checkEmail accepts a bare address such as ops@example.com.
func checkEmail(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("acme email %q: want a bare address such as ops@example.com", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !strings.Contains(s[at+1:], ".") {
		return fmt.Errorf("acme email %q: want a bare address such as ops@example.com", s)
	}
	return nil
}

// loadRoots reads a PEM file of CA certificates into a pool.
func loadRoots(path string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acme ca_root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("acme ca_root %s: no PEM certificate in the file", path)
	}
	return pool, nil
}

// normalizeHosts lowercases, trims dots and removes duplicates and empty
// names, keeping the order.
func normalizeHosts(hosts []string) []string {
	var out []string
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

// onEvent logs certificate events worth an operator's attention.
func (c *Certs) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		c.log.Info("certificate obtained", "identifier", data["identifier"], "renewal", data["renewal"])
	case "cert_failed":
		c.log.Error("certificate not obtained", "identifier", data["identifier"], "renewal", data["renewal"], "error", data["error"])
	}
	return nil
}

// TLSConfig is the configuration of the HTTPS listener: certificates by
// SNI, ALPN h2 and http/1.1 (and acme-tls/1 in acme mode so TLS-ALPN-01 is
// answered), TLS 1.2 at least. Each call returns a new value.
func (c *Certs) TLSConfig() *tls.Config {
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	switch c.mode {
	case TLSFiles:
		tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.served.Load(), nil
		}
	default:
		tc.GetCertificate = c.magic.GetCertificate
		if c.acme != nil {
			tc.NextProtos = append(tc.NextProtos, acmez.ACMETLS1Protocol)
		}
	}
	return tc
}

// HTTPChallenge answers ACME HTTP-01 challenges under
// /.well-known/acme-challenge/ (acme mode) and passes every other request
// to next.
func (c *Certs) HTTPChallenge(next http.Handler) http.Handler {
	if c.acme == nil || c.acme.DisableHTTPChallenge {
		return next
	}
	return c.acme.HTTPChallengeHandler(next)
}

// Manage keeps the certificates current until ctx is done, then returns
// nil. In acme mode it starts certmagic's ManageAsync: certificates are
// obtained in the background, with retries and backoff, so a CA that is
// down delays no listener and no prompt is ever read from stdin (the
// synchronous variant is interactive); failures are logged. The HTTP and
// HTTPS listeners must already be bound. Renewals (acme and internal) are
// done by certmagic's cache until Close. In files mode it watches the
// pair (fsnotify on their directories, and a periodic stat) and reloads it
// when either file changes; a pair that does not load is logged and the
// previous one is kept. An error means management could not start.
func (c *Certs) Manage(ctx context.Context) error {
	switch c.mode {
	case TLSAcme:
		if err := c.magic.ManageAsync(ctx, c.hosts); err != nil {
			return fmt.Errorf("manage certificates: %w", err)
		}
	case TLSFiles:
		return c.watchFiles(ctx)
	}
	<-ctx.Done()
	return nil
}

// Expiries maps each host to the NotAfter of the certificate served for it;
// a host without a certificate yet is absent.
func (c *Certs) Expiries() map[string]time.Time {
	out := make(map[string]time.Time, len(c.hosts))
	if c.mode == TLSFiles {
		cert := c.served.Load()
		if cert == nil || cert.Leaf == nil {
			return out
		}
		names := c.hosts
		if len(names) == 0 {
			names = cert.Leaf.DNSNames
		}
		for _, h := range names {
			if cert.Leaf.VerifyHostname(h) == nil {
				out[h] = cert.Leaf.NotAfter
			}
		}
		return out
	}
	for _, h := range c.hosts {
		for _, cert := range c.cache.AllMatchingCertificates(h) {
			if cert.Leaf == nil {
				continue
			}
			if t, ok := out[h]; !ok || cert.Leaf.NotAfter.After(t) {
				out[h] = cert.Leaf.NotAfter
			}
		}
	}
	return out
}

// RootPath is the PEM file of moat's root CA in internal mode, for clients
// to trust; "" in the other modes.
func (c *Certs) RootPath() string { return c.rootPath }

// Close stops certmagic's maintenance (renewals). Cancel Manage's context
// as well. Safe to call more than once.
func (c *Certs) Close() {
	c.closeOnce.Do(func() {
		if c.cache != nil {
			c.cache.Stop()
		}
	})
}

// --- files mode ---

// filePairStat identifies a version of the cert and key files.
type filePairStat struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func statPair(certFile, keyFile string) (filePairStat, error) {
	cs, err := os.Stat(certFile)
	if err != nil {
		return filePairStat{}, err
	}
	ks, err := os.Stat(keyFile)
	if err != nil {
		return filePairStat{}, err
	}
	return filePairStat{certMod: cs.ModTime(), keyMod: ks.ModTime(), certSize: cs.Size(), keySize: ks.Size()}, nil
}

func (c *Certs) initFiles(cfg TLS) error {
	if cfg.Cert == "" || cfg.Key == "" {
		return errors.New("tls mode files: cert and key are both required")
	}
	c.certFile, c.keyFile = cfg.Cert, cfg.Key
	st, err := statPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls files: %w", err)
	}
	cert, err := loadPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.served.Store(cert)
	c.filesSeen = st
	return nil
}

// loadPair reads and checks a certificate and key pair.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls files %s, %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("load tls files %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// checkFiles reloads the pair when the files differ from the version last
// seen. It reports whether a new pair is now served; a pair that does not
// load is returned as an error, and the old one stays.
func (c *Certs) checkFiles() (bool, error) {
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	st, err := statPair(c.certFile, c.keyFile)
	if err != nil {
		return false, fmt.Errorf("reload tls files: %w", err)
	}
	if st == c.filesSeen {
		return false, nil
	}
	cert, err := loadPair(c.certFile, c.keyFile)
	if err != nil {
		return false, err
	}
	c.filesSeen = st
	c.served.Store(cert)
	return true, nil
}

// watchFiles runs checkFiles after changes in the files' directories
// (debounced, since a pair is written as two files) and every filesPoll.
func (c *Certs) watchFiles(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		dirs := map[string]bool{filepath.Dir(c.certFile): true, filepath.Dir(c.keyFile): true}
		names := make([]string, 0, len(dirs))
		for d := range dirs {
			names = append(names, d)
		}
		sort.Strings(names)
		for _, d := range names {
			if err := w.Add(d); err != nil {
				c.log.Warn("watch tls files; polling only", "dir", d, "error", err)
			}
		}
		events, errs = w.Events, w.Errors
	} else {
		c.log.Warn("watch tls files; polling only", "error", err)
	}

	tick := time.NewTicker(c.filesPoll)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var lastErr string
	check := func() {
		changed, err := c.checkFiles()
		switch {
		case err != nil:
			// Once per distinct error, not at every tick.
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				c.log.Error("tls files not reloaded; serving the previous pair", "error", err)
			}
		case changed:
			lastErr = ""
			leaf := c.served.Load().Leaf
			c.log.Info("tls files reloaded", "cert", c.certFile, "not_after", leaf.NotAfter)
		}
	}
	// What changed between the load in NewCerts and the watch.
	check()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			debounce.Reset(defaultFilesDebounce)
		case err := <-errs:
			c.log.Warn("watch tls files", "error", err)
		case <-debounce.C:
			check()
		case <-tick.C:
			check()
		}
	}
}

// slogCore is a zapcore.Core that hands certmagic's warnings and errors to
// slog; lower levels are dropped.
type slogCore struct {
	log   *slog.Logger
	attrs []slog.Attr
}

func (s slogCore) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (s slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{log: s.log, attrs: append(append([]slog.Attr(nil), s.attrs...), fieldAttrs(fields)...)}
}

func (s slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if s.Enabled(e.Level) {
		return ce.AddCore(e, s)
	}
	return ce
}

func (s slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	attrs := append(append([]slog.Attr(nil), s.attrs...), fieldAttrs(fields)...)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("certmagic", e.LoggerName))
	}
	s.log.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}

func (s slogCore) Sync() error { return nil }

// fieldAttrs turns zap fields into slog attributes, sorted by key.
func fieldAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
