package proxy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/certmagic"
)

// Files and lifetimes of the internal CA (TLS mode "internal").
const (
	internalCADir      = "ca"
	internalRootCert   = "root.crt"
	internalRootKey    = "root.key"
	internalRootLife   = 10 * 365 * 24 * time.Hour
	internalLeafLife   = 7 * 24 * time.Hour
	internalIssuerKey  = "moat-internal"
	internalBackdating = 5 * time.Minute
)

// internalCA is moat's own root: it signs the leaf certificates of TLS mode
// "internal". It is immutable after loadOrCreateCA and safe for concurrent
// use.
type internalCA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPath string
	now      func() time.Time
}

// loadOrCreateCA reads the root certificate and key from dir, or creates
// them when neither exists. A key without its certificate is the trace of
// an interrupted creation and is replaced; a certificate without its key, or
// a pair that does not match, is an error (replacing it would silently
// invalidate what clients already trust).
func loadOrCreateCA(dir string, now func() time.Time) (*internalCA, error) {
	certPath := filepath.Join(dir, internalRootCert)
	keyPath := filepath.Join(dir, internalRootKey)
	certPEM, certErr := os.ReadFile(certPath)
	if certErr != nil && !errors.Is(certErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("read internal ca: %w", certErr)
	}
	if certErr == nil {
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("read internal ca key: %w", err)
		}
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load internal ca %s: %w", certPath, err)
		}
		ca.certPath, ca.now = certPath, now
		return ca, nil
	}
	ca, err := createCA(dir, now())
	if err != nil {
		return nil, fmt.Errorf("create internal ca in %s: %w", dir, err)
	}
	ca.certPath, ca.now = certPath, now
	return ca, nil
}

// parseCA parses a root certificate and its PKCS#8 key and checks that they
// belong together.
func parseCA(certPEM, keyPEM []byte) (*internalCA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("key does not match certificate")
	}
	return &internalCA{cert: cert, key: signer}, nil
}

// createCA makes a new ECDSA P-256 root and writes it to dir: the key 0600
// first, the certificate 0644 last, each through a temporary file and a
// rename, so a crash leaves either nothing or a key without certificate.
func createCA(dir string, now time.Time) (*internalCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "moat internal root " + serial.Text(16)[:8],
			Organization: []string{"moat"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(internalRootLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeFileAtomic(filepath.Join(dir, internalRootKey), keyPEM, 0o600); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, internalRootCert), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &internalCA{cert: cert, key: key}, nil
}

// writeFileAtomic writes data to a temporary file in path's directory with
// mode perm, syncs it and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// IssuerKey implements certmagic.Issuer: certificates from this CA are kept
// apart from ACME ones in storage.
func (ca *internalCA) IssuerKey() string { return internalIssuerKey }

// Issue implements certmagic.Issuer: it signs a short-lived server
// certificate for the names of csr with the root. certmagic renews it when
// a third of its lifetime is left.
func (ca *internalCA) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("internal ca: check csr: %w", err)
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, errors.New("internal ca: csr names no host")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	notAfter := now.Add(internalLeafLife)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-internalBackdating),
		NotAfter:     notAfter,
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(csr.DNSNames) > 0 {
		tmpl.Subject.CommonName = csr.DNSNames[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("internal ca: sign: %w", err)
	}
	var out bytes.Buffer
	_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &certmagic.IssuedCertificate{Certificate: out.Bytes()}, nil
}
