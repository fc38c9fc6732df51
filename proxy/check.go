package proxy

import (
	"fmt"

	"github.com/caddyserver/certmagic"
)

// Check looks at what the configuration's syntax cannot show, reading
// files but touching no network and writing nothing: the TLS files (a
// certificate and key that load and match, a ca_root with a certificate),
// host names a certificate can be issued for, and upstreams. `moat check`
// and a reload call it, so a bad TLS setup is refused before it is in
// force.
func Check(cfg Config) error {
	switch cfg.TLS.Mode {
	case TLSFiles:
		if _, err := loadPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return err
		}
	case TLSAcme, TLSInternal:
		if cfg.TLS.CARoot != "" {
			if _, err := loadRoots(cfg.TLS.CARoot); err != nil {
				return err
			}
		}
		if cfg.TLS.AccountKey != "" {
			if _, err := loadAccountKey(cfg.TLS.AccountKey); err != nil {
				return err
			}
		}
		for _, h := range Hosts(cfg.Routes) {
			ok := certmagic.SubjectQualifiesForCert(h)
			if cfg.TLS.Mode == TLSAcme {
				ok = certmagic.SubjectQualifiesForPublicCert(h)
			}
			if !ok {
				return fmt.Errorf("tls mode %s: host %q cannot have a certificate", cfg.TLS.Mode, h)
			}
		}
	}
	for _, r := range cfg.Routes {
		for _, u := range r.Upstreams {
			if _, err := ParseUpstream(u); err != nil {
				return err
			}
		}
	}
	return nil
}
