// Package proxyconfig is the proxy's settings as moat's configuration gives
// them (listeners, TLS, routes, rate limits, hardening limits) and the
// parsers of the values they are written in (rates, upstreams): plain data,
// so that the configuration parser can build and check them without pulling
// in the proxy. It must not listen, dial, or import the proxy, certmagic or
// net/http.
package proxyconfig

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults for the hardening limits, used where Config leaves them zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultBodyTimeout       = 60 * time.Second
	DefaultSendTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxBodyBytes      = 10 << 20
	DefaultMaxConnsPerClient = 256
	DefaultIPv6Prefix        = 64
	DefaultMaxKeys           = 1 << 18
	// DefaultJail is the name of the jail rate-limit rejections count in.
	DefaultJail = "proxy"
)

// Client-address headers a trusted proxy may set (Config.ClientHeader).
const (
	HeaderXFF       = "X-Forwarded-For"
	HeaderForwarded = "Forwarded"
)

// TLS modes.
const (
	TLSAcme     = "acme"
	TLSInternal = "internal"
	TLSFiles    = "files"
	TLSOff      = "off"
)

// Config is the proxy section of moat's configuration, validated.
type Config struct {
	// HTTP and HTTPS are listen addresses ("" for none). With TLS on, the
	// HTTP listener answers ACME HTTP-01 challenges and redirects the rest
	// to HTTPS; with TLS off it serves the routes.
	HTTP, HTTPS string
	TLS         TLS
	// TrustedProxies are the peers whose X-Forwarded-For and Forwarded
	// headers are believed, read right to left.
	TrustedProxies []netip.Prefix
	// ClientHeader is the header trusted proxies put the client chain in:
	// HeaderXFF (when "") or HeaderForwarded. Only one is read, so a client
	// cannot add the other behind a proxy that sets just one.
	ClientHeader string
	Routes       []Route
	// Global, when set, limits each client across all routes before the
	// route's own limit.
	Global *Limit
	// IPv6Prefix is the prefix length IPv6 clients are keyed by in the rate
	// limiters and the connection cap (DefaultIPv6Prefix when 0).
	IPv6Prefix int
	// Exempt lists clients never rate limited.
	Exempt []netip.Prefix
	// MaxKeys caps the addresses each limiter tracks (DefaultMaxKeys when 0).
	MaxKeys int

	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// BodyTimeout bounds the wait for each read of a request body
	// (DefaultBodyTimeout when 0): a client that stalls is answered 408
	// and closed, as nginx's client_body_timeout.
	BodyTimeout time.Duration
	// SendTimeout bounds each write of an answer to the client
	// (DefaultSendTimeout when 0): a client that stops reading is closed,
	// as nginx's send_timeout.
	SendTimeout    time.Duration
	MaxHeaderBytes int
	// UnderscoresInHeaders passes request fields whose names hold '_'
	// upstream; by default they are dropped, as nginx does, because CGI
	// and WSGI stacks read X_Real_IP as X-Real-IP.
	UnderscoresInHeaders bool
	// MaxConnsPerClient caps the open connections of one client address
	// (keyed like the limiters); 0 means DefaultMaxConnsPerClient, -1 none.
	MaxConnsPerClient int
	// AccessLog is the path of the JSON access log ("" for none).
	AccessLog string
	// Jail is the jail rate-limit rejections count in (DefaultJail when "").
	Jail string
	// Line is the proxy section's line in the configuration, for messages.
	Line int
	// StateDir is where certificates, the ACME account and the internal CA
	// are kept (moat's state directory; certificates go in StateDir/certs).
	StateDir string
}

// TLS is how the HTTPS listener gets its certificates.
type TLS struct {
	// Mode is TLSAcme, TLSInternal, TLSFiles or TLSOff.
	Mode string
	// Email is the ACME account's contact (acme).
	Email string
	// CA is the ACME directory URL (acme; Let's Encrypt's when "").
	CA string
	// CARoot is a PEM file of roots to trust for the ACME server (acme,
	// for a private CA).
	CARoot string
	// AccountKey is a PEM file holding the private key of an ACME account
	// that already exists at the CA (acme; a Docker secret, say). Without
	// it moat makes an account and keeps its key in the state directory.
	AccountKey string
	// Cert and Key are PEM files (files); they are reloaded when they change.
	Cert, Key string
	// HSTS, when positive, is sent as Strict-Transport-Security max-age on
	// HTTPS responses.
	HSTS time.Duration
}

// Route sends requests for Hosts (any host when empty) whose path starts
// with Path to Upstreams.
type Route struct {
	Hosts []string
	// Path is a prefix ("/" when empty); the longest matching prefix wins.
	Path string
	// Upstreams are "host:port" or URLs (http:// or https://), used round
	// robin; one that refuses connections is skipped for a while.
	Upstreams []string
	// Limit, when set, limits each client on this route.
	Limit *Limit
	// MaxBodyBytes caps a request body (DefaultMaxBodyBytes when 0; -1 none).
	MaxBodyBytes int64
	// Line is the route's line in the configuration, for messages.
	Line int
}

// Limit is a token bucket: Rate tokens per second, Burst at most.
type Limit struct {
	// Rate is in requests per second (600/m is 10).
	Rate float64
	// Burst is the bucket size (at least 1).
	Burst int
	// Window is the unit the rate was written in (time.Second for 10/s,
	// time.Minute for 600/m), used in the RateLimit-Policy header.
	Window time.Duration
}

// Hosts is the host names routes name, without wildcards, sorted and
// unique: the names certificates are obtained for.
func Hosts(routes []Route) []string {
	var out []string
	for _, r := range routes {
		for _, h := range r.Hosts {
			if !strings.HasPrefix(h, "*") {
				out = append(out, strings.ToLower(h))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
