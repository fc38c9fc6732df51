package configs

import (
	"fmt"
	"math"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/proxy/proxyconfig"
)

var (
	proxyKeys = []string{"http", "https", "tls", "trusted_proxies", "client_header", "routes", "rate", "burst",
		"ipv6_prefix", "exempt", "max_keys", "read_header_timeout", "idle_timeout", "max_header_bytes",
		"max_conns_per_client", "access_log", "body_timeout", "send_timeout", "underscores_in_headers"}
	tlsKeys   = []string{"mode", "email", "ca", "ca_root", "account_key", "cert", "key", "hsts"}
	routeKeys = []string{"hosts", "path", "upstream", "rate", "burst", "max_body"}
)

const (
	wantListen    = "host:port such as :443, 0.0.0.0:80 or [::]:443"
	wantTLSMode   = "acme, internal, files or off"
	wantRate      = "requests per unit such as 10/s, 600/m or 36000/h"
	wantBurst     = "a whole number of requests from 1 to 1000000"
	wantUpstream  = "host:port such as 127.0.0.1:8080, or an http:// or https:// URL, or a list of them"
	wantHost      = "host names such as app.example.com or *.example.com, as a list"
	wantRoutePath = "a path prefix starting with /, such as /api"
	wantCIDRs     = "addresses or CIDR prefixes such as 192.0.2.10 or 198.51.100.0/24, as a list"
	wantByteSize  = "a size such as 65536, 512k, 10m or 1g"
	wantHeader    = "x-forwarded-for or forwarded"
)

// proxySpec is the proxy section as written, before defaults.
type proxySpec struct {
	cfg     proxyconfig.Config
	line    int
	http    opt[string]
	https   opt[string]
	tlsMode opt[string]
	rate    opt[proxyconfig.Limit]
	burst   opt[int]
}

// proxySection reads proxy:. It returns nil when the section is absent or
// empty.
func (d *decoder) proxySection(key, n *yaml.Node) *proxyconfig.Config {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	s := &proxySpec{line: key.Line}
	c := &s.cfg
	c.Line = key.Line
	var routesNode *yaml.Node
	d.mapping(n, "proxy", "a mapping such as {https: \":443\", routes: [...]}", proxyKeys, func(k string, key, val *yaml.Node) {
		f := join("proxy", k)
		switch k {
		case "http", "https":
			v, ok := d.scalar(val, f, wantListen)
			if !ok {
				return
			}
			if !listenAddr(v) {
				d.fail(resolve(val).Line, f, v, "is not an address to listen on", wantListen)
				return
			}
			if k == "http" {
				s.http.put(v, val)
			} else {
				s.https.put(v, val)
			}
		case "tls":
			d.tls(val, f, s)
		case "trusted_proxies":
			c.TrustedProxies = d.cidrs(val, f)
		case "client_header":
			if v, ok := d.scalar(val, f, wantHeader); ok {
				switch strings.ToLower(v) {
				case "x-forwarded-for":
					c.ClientHeader = proxyconfig.HeaderXFF
				case "forwarded":
					c.ClientHeader = proxyconfig.HeaderForwarded
				default:
					d.fail(resolve(val).Line, f, v, "is not a client address header", wantHeader)
				}
			}
		case "routes":
			routesNode = val
		case "rate":
			if l, ok := d.rate(val, f); ok {
				s.rate.put(l, val)
			}
		case "burst":
			if v, ok := d.integer(val, f, 1, 1_000_000, wantBurst); ok {
				s.burst.put(v, val)
			}
		case "ipv6_prefix":
			if v, ok := d.integer(val, f, 32, 128, "a prefix length from 32 to 128, such as 64"); ok {
				c.IPv6Prefix = v
			}
		case "exempt":
			c.Exempt = d.cidrs(val, f)
		case "max_keys":
			if v, ok := d.integer(val, f, 1024, 1<<30, "a whole number from 1024, such as 1048576"); ok {
				c.MaxKeys = v
			}
		case "read_header_timeout":
			if v, ok := d.duration(val, f, false, true, wantDuration); ok {
				c.ReadHeaderTimeout = v
			}
		case "idle_timeout":
			if v, ok := d.duration(val, f, false, true, wantDuration); ok {
				c.IdleTimeout = v
			}
		case "body_timeout":
			if v, ok := d.duration(val, f, false, true, wantDuration); ok {
				c.BodyTimeout = v
			}
		case "send_timeout":
			if v, ok := d.duration(val, f, false, true, wantDuration); ok {
				c.SendTimeout = v
			}
		case "underscores_in_headers":
			if v, ok := d.boolean(val, f); ok {
				c.UnderscoresInHeaders = v
			}
		case "max_header_bytes":
			if v, ok := d.byteSize(val, f, 1024, 16<<20); ok {
				c.MaxHeaderBytes = int(v)
			}
		case "max_conns_per_client":
			if v, ok := d.integer(val, f, -1, 1_000_000, "a whole number of connections, or -1 for no cap"); ok {
				if v == 0 {
					d.fail(resolve(val).Line, f, "0", "would refuse every connection", "a whole number from 1, or -1 for no cap")
					return
				}
				c.MaxConnsPerClient = v
			}
		case "access_log":
			if v, ok := d.absPath(val, f, "an absolute path such as /var/log/moat/access.log"); ok {
				c.AccessLog = v
			}
		}
	})
	if routesNode != nil {
		d.routes(routesNode, s)
	} else {
		d.fail(key.Line, "proxy.routes", "", "is missing", "at least one route, such as - {hosts: [app.example.com], upstream: 127.0.0.1:8080}")
	}
	if s.rate.set {
		l := s.rate.v
		l.Burst = s.burst.get(defaultBurst(l))
		c.Global = &l
	} else if s.burst.set {
		d.fail(s.burst.line, "proxy.burst", "", "is set without proxy.rate", "rate: as well, such as rate: 100/s")
	}
	d.proxyTLS(s)
	return c
}

// defaultBurst is a limit's burst when none is written: one second's worth
// of requests, at least one.
func defaultBurst(l proxyconfig.Limit) int {
	return max(1, int(math.Ceil(l.Rate)))
}

// proxyTLS settles the TLS mode and the listeners, which depend on each
// other.
func (d *decoder) proxyTLS(s *proxySpec) {
	c := &s.cfg
	mode := s.tlsMode.get(proxyconfig.TLSAcme)
	c.TLS.Mode = mode
	if mode == proxyconfig.TLSOff {
		c.HTTP = s.http.get(":80")
		if s.https.set {
			d.fail(s.https.line, "proxy.https", s.https.v, "is set but tls.mode is off", "no https:, or a tls.mode other than off")
		}
		return
	}
	c.HTTP = s.http.get(":80")
	c.HTTPS = s.https.get(":443")
	where := s.tlsMode.line
	if where == 0 {
		where = s.line
	}
	switch mode {
	case proxyconfig.TLSAcme, proxyconfig.TLSInternal:
		if len(proxyconfig.Hosts(c.Routes)) == 0 && !d.hasErrorsAfter(s.line) {
			d.fail(where, "proxy.tls.mode", mode, "needs host names to get certificates for, and no route has one",
				"hosts: on the routes, or tls: {mode: files} or {mode: off}")
		}
	case proxyconfig.TLSFiles:
		if c.TLS.Cert == "" || c.TLS.Key == "" {
			d.fail(where, "proxy.tls", mode, "needs cert: and key:", "cert: and key: paths of PEM files")
		}
	}
	if mode != proxyconfig.TLSAcme && (c.TLS.Email != "" || c.TLS.CA != "" || c.TLS.CARoot != "" || c.TLS.AccountKey != "") {
		d.fail(where, "proxy.tls", mode, "has email, ca, ca_root or account_key, which only mode acme uses", "mode: acme, or remove them")
	}
	if mode != proxyconfig.TLSFiles && (c.TLS.Cert != "" || c.TLS.Key != "") {
		d.fail(where, "proxy.tls", mode, "has cert or key, which only mode files uses", "mode: files, or remove them")
	}
}

// hasErrorsAfter says whether an error was recorded at or after line (so a
// follow-on complaint would only repeat it).
func (d *decoder) hasErrorsAfter(line int) bool {
	for _, e := range d.errs {
		if e.Line >= line && strings.HasPrefix(e.Field, "proxy.routes") {
			return true
		}
	}
	return false
}

func (d *decoder) tls(n *yaml.Node, field string, s *proxySpec) {
	t := &s.cfg.TLS
	d.mapping(n, field, "a mapping such as {mode: acme, email: ops@example.com}", tlsKeys, func(k string, key, val *yaml.Node) {
		f := join(field, k)
		switch k {
		case "mode":
			v, ok := d.scalar(val, f, wantTLSMode)
			if !ok {
				return
			}
			modes := []string{proxyconfig.TLSAcme, proxyconfig.TLSInternal, proxyconfig.TLSFiles, proxyconfig.TLSOff}
			if !slices.Contains(modes, v) {
				want := wantTLSMode
				if sg := suggest(v, modes); sg != "" {
					want = "did you mean " + sg + "?"
				}
				d.fail(resolve(val).Line, f, v, "is not a TLS mode", want)
				return
			}
			s.tlsMode.put(v, val)
		case "email":
			v, ok := d.scalar(val, f, "an address such as ops@example.com")
			if !ok {
				return
			}
			if a, err := mail.ParseAddress(v); err != nil || a.Address != v || a.Name != "" {
				d.fail(resolve(val).Line, f, v, "is not an email address", "an address such as ops@example.com")
				return
			}
			t.Email = v
		case "ca":
			const want = "an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory"
			v, ok := d.scalar(val, f, want)
			if !ok {
				return
			}
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				d.fail(resolve(val).Line, f, v, "is not an https URL", want)
				return
			}
			t.CA = v
		case "ca_root":
			if v, ok := d.absPath(val, f, "the absolute path of a PEM file of CA certificates"); ok {
				t.CARoot = v
			}
		case "account_key":
			if v, ok := d.absPath(val, f, "the absolute path of the PEM private key of an existing ACME account, such as /run/secrets/acme_account_key"); ok {
				t.AccountKey = v
			}
		case "cert":
			if v, ok := d.absPath(val, f, "the absolute path of a PEM certificate chain"); ok {
				t.Cert = v
			}
		case "key":
			if v, ok := d.absPath(val, f, "the absolute path of a PEM private key"); ok {
				t.Key = v
			}
		case "hsts":
			if v, ok := d.duration(val, f, false, true, "a duration such as 8760h or 365d"); ok {
				t.HSTS = v
			}
		}
	})
}

func (d *decoder) routes(n *yaml.Node, s *proxySpec) {
	n = resolve(n)
	const want = "a list of routes, such as - {hosts: [app.example.com], upstream: 127.0.0.1:8080}"
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		if n.Kind == yaml.SequenceNode || isNull(n) {
			d.fail(n.Line, "proxy.routes", "", "is empty", want)
		} else {
			d.wrongKind(n, "proxy.routes", "a list", want)
		}
		return
	}
	seen := map[string]int{}
	for i, rn := range n.Content {
		rn = resolve(rn)
		field := fmt.Sprintf("proxy.routes[%d]", i)
		r := proxyconfig.Route{Line: rn.Line}
		var rate opt[proxyconfig.Limit]
		var burst opt[int]
		hasUp := false
		d.mapping(rn, field, "a mapping such as {hosts: [app.example.com], upstream: 127.0.0.1:8080}", routeKeys, func(k string, key, val *yaml.Node) {
			f := join(field, k)
			switch k {
			case "hosts":
				for _, c := range d.items(val, f, wantHost) {
					for _, w := range words(c.Value) {
						if !hostName(w) {
							d.fail(c.Line, f, w, "is not a host name", wantHost)
							continue
						}
						r.Hosts = append(r.Hosts, strings.ToLower(w))
					}
				}
			case "path":
				v, ok := d.scalar(val, f, wantRoutePath)
				if !ok {
					return
				}
				if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "?# \t") {
					d.fail(resolve(val).Line, f, v, "is not a path prefix", wantRoutePath)
					return
				}
				r.Path = v
			case "upstream":
				hasUp = true
				items := d.items(val, f, wantUpstream)
				if len(items) == 0 {
					d.fail(resolve(val).Line, f, "", "is empty", wantUpstream)
				}
				for _, c := range items {
					for _, w := range words(c.Value) {
						if _, err := proxyconfig.ParseUpstream(w); err != nil {
							d.fail(c.Line, f, w, "is not an upstream: "+strings.TrimPrefix(err.Error(), fmt.Sprintf("upstream %q: ", w)), wantUpstream)
							continue
						}
						r.Upstreams = append(r.Upstreams, w)
					}
				}
			case "rate":
				if l, ok := d.rate(val, f); ok {
					rate.put(l, val)
				}
			case "burst":
				if v, ok := d.integer(val, f, 1, 1_000_000, wantBurst); ok {
					burst.put(v, val)
				}
			case "max_body":
				v := resolve(val)
				if v.Kind == yaml.ScalarNode && v.Value == "-1" {
					r.MaxBodyBytes = -1
					return
				}
				if b, ok := d.byteSize(val, f, 1, 1<<40); ok {
					r.MaxBodyBytes = b
				}
			}
		})
		if rn.Kind == yaml.MappingNode && !hasUp {
			d.fail(rn.Line, join(field, "upstream"), "", "is missing", wantUpstream)
		}
		if rate.set {
			l := rate.v
			l.Burst = burst.get(defaultBurst(l))
			r.Limit = &l
		} else if burst.set {
			d.fail(burst.line, join(field, "burst"), "", "is set without rate", "rate: as well, such as rate: 10/s")
		}
		hosts := r.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		path := r.Path
		if path == "" {
			path = "/"
		}
		for _, h := range hosts {
			k := h + " " + path
			if first, ok := seen[k]; ok {
				d.fail(rn.Line, field, h+path, fmt.Sprintf("is routed twice, first on line %d", first), "one route per host and path")
				continue
			}
			seen[k] = rn.Line
		}
		s.cfg.Routes = append(s.cfg.Routes, r)
	}
}

// rate reads a rate such as 10/s.
func (d *decoder) rate(n *yaml.Node, field string) (proxyconfig.Limit, bool) {
	v, ok := d.scalar(n, field, wantRate)
	if !ok {
		return proxyconfig.Limit{}, false
	}
	per, window, err := proxyconfig.ParseRate(strings.TrimSpace(v))
	if err != nil {
		d.fail(resolve(n).Line, field, v, "is not a rate", wantRate)
		return proxyconfig.Limit{}, false
	}
	return proxyconfig.Limit{Rate: per, Window: window}, true
}

func (d *decoder) cidrs(n *yaml.Node, field string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range d.items(n, field, wantCIDRs) {
		for _, w := range words(c.Value) {
			p, err := netaddr.ParsePrefix(w)
			if err != nil {
				d.fail(c.Line, field, w, "is not an address or CIDR prefix", wantCIDRs)
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// byteSize reads a size in bytes, with an optional k, m or g suffix
// (powers of 1024), within [lo, hi].
func (d *decoder) byteSize(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	v, ok := d.scalar(n, field, wantByteSize)
	if !ok {
		return 0, false
	}
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	var x int64
	if s == "" {
		d.fail(resolve(n).Line, field, v, "is not a size", wantByteSize)
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' || x > hi {
			d.fail(resolve(n).Line, field, v, "is not a size", wantByteSize)
			return 0, false
		}
		x = x*10 + int64(r-'0')
	}
	if x > hi/mult || x*mult < lo {
		d.fail(resolve(n).Line, field, v, "is out of range", fmt.Sprintf("%s, from %d to %d bytes", wantByteSize, lo, hi))
		return 0, false
	}
	return x * mult, true
}

// hostName accepts a DNS name (letters, digits, '-', dots), optionally
// starting with "*." for one level of subdomains.
func hostName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
