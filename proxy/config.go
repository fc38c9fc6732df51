// Package proxy is moat's TLS reverse proxy: routes by host and path to one
// or more upstreams, certificates from certmagic, client-address
// resolution through trusted proxies, per-address rate limits whose
// rejections are failures in the proxy's jail, hardening limits and a JSON
// access log. It never writes to the firewall: it reports failures and asks
// the jail engine whether an address is banned.
package proxy

import "github.com/moatproj/moat/proxy/proxyconfig"

// The proxy's settings are plain data in proxyconfig, which the
// configuration parser builds without importing the proxy.
type (
	Config = proxyconfig.Config
	TLS    = proxyconfig.TLS
	Route  = proxyconfig.Route
	Limit  = proxyconfig.Limit
)

// Defaults for the hardening limits, used where Config leaves them zero,
// and the proxy's jail.
const (
	DefaultReadHeaderTimeout = proxyconfig.DefaultReadHeaderTimeout
	DefaultIdleTimeout       = proxyconfig.DefaultIdleTimeout
	DefaultBodyTimeout       = proxyconfig.DefaultBodyTimeout
	DefaultSendTimeout       = proxyconfig.DefaultSendTimeout
	DefaultMaxHeaderBytes    = proxyconfig.DefaultMaxHeaderBytes
	DefaultMaxBodyBytes      = proxyconfig.DefaultMaxBodyBytes
	DefaultMaxConnsPerClient = proxyconfig.DefaultMaxConnsPerClient
	DefaultIPv6Prefix        = proxyconfig.DefaultIPv6Prefix
	DefaultMaxKeys           = proxyconfig.DefaultMaxKeys
	DefaultJail              = proxyconfig.DefaultJail
)

// TLS modes and client-address headers (Config.TLS.Mode, Config.ClientHeader).
const (
	TLSAcme         = proxyconfig.TLSAcme
	TLSInternal     = proxyconfig.TLSInternal
	TLSFiles        = proxyconfig.TLSFiles
	TLSOff          = proxyconfig.TLSOff
	HeaderXFF       = proxyconfig.HeaderXFF
	HeaderForwarded = proxyconfig.HeaderForwarded
)

// Hosts, ParseRate and ParseUpstream are proxyconfig's.
var (
	Hosts         = proxyconfig.Hosts
	ParseRate     = proxyconfig.ParseRate
	ParseUpstream = proxyconfig.ParseUpstream
)
