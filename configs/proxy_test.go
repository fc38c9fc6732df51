package configs

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/proxy"
)

const proxyYAML = `state_dir: /var/lib/moat
proxy:
  http: ":8080"
  https: "127.0.0.1:8443"
  tls: {mode: acme, email: ops@example.com, ca: "https://127.0.0.1:14000/dir", ca_root: /etc/moat/pebble.pem, hsts: 365d}
  trusted_proxies: [192.0.2.0/28, 2001:db8::1]
  client_header: forwarded
  rate: 100/s
  exempt: 198.51.100.0/24
  ipv6_prefix: 56
  max_conns_per_client: 64
  max_header_bytes: 32k
  read_header_timeout: 5s
  body_timeout: 30s
  send_timeout: 45s
  underscores_in_headers: true
  access_log: /var/log/moat/access.log
  routes:
    - hosts: [App.Example.com, "*.example.org"]
      path: /api
      upstream: [127.0.0.1:8080, "http://[::1]:8081/base"]
      rate: 600/m
      burst: 20
      max_body: 1m
    - upstream: 127.0.0.1:9000
jails:
  proxy: {maxretry: 10, findtime: 1m, bantime: 1h}
`

func TestParseProxy(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(proxyYAML), Options{Env: rootEnv, CheckFilter: checkFilter})
	if err != nil {
		t.Fatal(err)
	}
	want := &proxy.Config{
		HTTP: ":8080", HTTPS: "127.0.0.1:8443",
		TLS: proxy.TLS{Mode: proxy.TLSAcme, Email: "ops@example.com", CA: "https://127.0.0.1:14000/dir",
			CARoot: "/etc/moat/pebble.pem", HSTS: 365 * 24 * time.Hour},
		TrustedProxies:       []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28"), netip.MustParsePrefix("2001:db8::1/128")},
		ClientHeader:         proxy.HeaderForwarded,
		Global:               &proxy.Limit{Rate: 100, Burst: 100, Window: time.Second},
		Exempt:               []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		IPv6Prefix:           56,
		MaxConnsPerClient:    64,
		MaxHeaderBytes:       32 << 10,
		ReadHeaderTimeout:    5 * time.Second,
		BodyTimeout:          30 * time.Second,
		SendTimeout:          45 * time.Second,
		UnderscoresInHeaders: true,
		AccessLog:            "/var/log/moat/access.log",
		Line:                 2,
		StateDir:             "/var/lib/moat",
		Routes: []proxy.Route{
			{Hosts: []string{"app.example.com", "*.example.org"}, Path: "/api",
				Upstreams: []string{"127.0.0.1:8080", "http://[::1]:8081/base"},
				Limit:     &proxy.Limit{Rate: 10, Burst: 20, Window: time.Minute}, MaxBodyBytes: 1 << 20, Line: 19},
			{Upstreams: []string{"127.0.0.1:9000"}, Line: 25},
		},
	}
	if !reflect.DeepEqual(cfg.Proxy, want) {
		t.Errorf("Proxy =\n%+v\nwant\n%+v", cfg.Proxy, want)
	}
	if len(cfg.Jails) != 1 || cfg.Jails[0].Name != "proxy" || cfg.Jails[0].MaxRetry != 10 || cfg.Jails[0].BanTime != time.Hour ||
		len(cfg.Jails[0].LogPath) != 0 || cfg.Jails[0].Filter.Name != "" {
		t.Errorf("Jails = %+v, want the proxy jail as written, without log or filter", cfg.Jails)
	}
}

func TestParseProxyDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml      string
		http, https     string
		mode            string
		jailMax         int
		jails           int
		routeLimitBurst int
	}{
		{name: "acme by default", yaml: "proxy:\n  routes: [{hosts: [a.example.com], upstream: 127.0.0.1:80, rate: 2.5/s}]\n",
			http: ":80", https: ":443", mode: "acme", jailMax: 5, jails: 1, routeLimitBurst: 3},
		{name: "off serves http only", yaml: "proxy:\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\n",
			http: ":80", mode: "off", jailMax: 5, jails: 1},
		{name: "defaults reach the proxy jail", yaml: "defaults: {maxretry: 7}\nproxy:\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
			http: ":80", mode: "off", jailMax: 7, jails: 2},
		{name: "proxy jail disabled", yaml: "proxy:\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\njails:\n  proxy: {enabled: false}\n  sshd: {logpath: /var/log/auth.log}\n",
			http: ":80", mode: "off", jails: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("moat.yaml", []byte(tc.yaml), Options{Env: rootEnv, CheckFilter: checkFilter})
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Proxy
			if p.HTTP != tc.http || p.HTTPS != tc.https || p.TLS.Mode != tc.mode {
				t.Errorf("http %q https %q mode %q, want %q %q %q", p.HTTP, p.HTTPS, p.TLS.Mode, tc.http, tc.https, tc.mode)
			}
			if len(cfg.Jails) != tc.jails {
				t.Fatalf("jails = %d, want %d", len(cfg.Jails), tc.jails)
			}
			for _, j := range cfg.Jails {
				if j.Name == "proxy" && j.MaxRetry != tc.jailMax {
					t.Errorf("proxy jail maxretry = %d, want %d", j.MaxRetry, tc.jailMax)
				}
				// The proxy jail bans IPv6 by the /64 its limiters key by;
				// other jails keep the single address.
				if want := map[bool]int{true: 64, false: 128}[j.Name == "proxy"]; j.IPv6Prefix != want {
					t.Errorf("jail %s ipv6 prefix = %d, want %d", j.Name, j.IPv6Prefix, want)
				}
			}
			if tc.routeLimitBurst != 0 && p.Routes[0].Limit.Burst != tc.routeLimitBurst {
				t.Errorf("burst = %d, want %d", p.Routes[0].Limit.Burst, tc.routeLimitBurst)
			}
		})
	}
}

func TestParseProxyBad(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{name: "no routes", yaml: "proxy:\n  http: \":80\"\n",
			want: []string{`moat.yaml:1: proxy.routes: is missing (want at least one route, such as - {hosts: [app.example.com], upstream: 127.0.0.1:8080})`}},
		{name: "route without upstream", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - hosts: [a.example.com]\n",
			want: []string{`moat.yaml:4: proxy.routes[0].upstream: is missing (want host:port such as 127.0.0.1:8080, or an http:// or https:// URL, or a list of them)`}},
		{name: "bad upstream", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - upstream: [\"ftp://x:21\", 127.0.0.1]\n",
			want: []string{
				`moat.yaml:4: proxy.routes[0].upstream: "ftp://x:21" is not an upstream: scheme "ftp" is not http or https (want host:port such as 127.0.0.1:8080, or an http:// or https:// URL, or a list of them)`,
				`moat.yaml:4: proxy.routes[0].upstream: "127.0.0.1" is not an upstream: no port (want host:port such as 127.0.0.1:8080, or an http:// or https:// URL, or a list of them)`,
			}},
		{name: "bad rate", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - {upstream: 127.0.0.1:80, rate: 10/sec}\n",
			want: []string{`moat.yaml:4: proxy.routes[0].rate: "10/sec" is not a rate (want requests per unit such as 10/s, 600/m or 36000/h)`}},
		{name: "burst without rate", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - {upstream: 127.0.0.1:80, burst: 5}\n",
			want: []string{`moat.yaml:4: proxy.routes[0].burst: is set without rate (want rate: as well, such as rate: 10/s)`}},
		{name: "tls mode typo", yaml: "proxy:\n  tls: {mode: acm}\n  routes: [{hosts: [a.example.com], upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.tls.mode: "acm" is not a TLS mode (did you mean acme?)`}},
		{name: "acme without hosts", yaml: "proxy:\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:1: proxy.tls.mode: "acme" needs host names to get certificates for, and no route has one (want hosts: on the routes, or tls: {mode: files} or {mode: off})`}},
		{name: "files without key", yaml: "proxy:\n  tls: {mode: files, cert: /etc/moat/cert.pem}\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.tls: "files" needs cert: and key: (want cert: and key: paths of PEM files)`}},
		{name: "http ca", yaml: "proxy:\n  tls: {mode: acme, ca: \"http://127.0.0.1/dir\"}\n  routes: [{hosts: [a.example.com], upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.tls.ca: "http://127.0.0.1/dir" is not an https URL (want an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory)`}},
		{name: "bad email", yaml: "proxy:\n  tls: {mode: acme, email: \"Ops <ops@example.com>\"}\n  routes: [{hosts: [a.example.com], upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.tls.email: "Ops <ops@example.com>" is not an email address (want an address such as ops@example.com)`}},
		{name: "https with tls off", yaml: "proxy:\n  https: \":443\"\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.https: ":443" is set but tls.mode is off (want no https:, or a tls.mode other than off)`}},
		{name: "bad trusted proxy", yaml: "proxy:\n  tls: {mode: off}\n  trusted_proxies: [10.0.0.0/33]\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:3: proxy.trusted_proxies: "10.0.0.0/33" is not an address or CIDR prefix (want addresses or CIDR prefixes such as 192.0.2.10 or 198.51.100.0/24, as a list)`}},
		{name: "route twice", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - {hosts: [a.example.com], upstream: 127.0.0.1:80}\n    - {hosts: [A.example.com], path: /, upstream: 127.0.0.1:81}\n",
			want: []string{`moat.yaml:5: proxy.routes[1]: "a.example.com/" is routed twice, first on line 4 (want one route per host and path)`}},
		{name: "bad host and path", yaml: "proxy:\n  tls: {mode: off}\n  routes:\n    - {hosts: [\"a_b.example.com\"], path: api, upstream: 127.0.0.1:80}\n",
			want: []string{
				`moat.yaml:4: proxy.routes[0].hosts: "a_b.example.com" is not a host name (want host names such as app.example.com or *.example.com, as a list)`,
				`moat.yaml:4: proxy.routes[0].path: "api" is not a path prefix (want a path prefix starting with /, such as /api)`,
			}},
		{name: "bad listener", yaml: "proxy:\n  http: \"80\"\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:2: proxy.http: "80" is not an address to listen on (want host:port such as :443, 0.0.0.0:80 or [::]:443)`}},
		{name: "zero conns", yaml: "proxy:\n  tls: {mode: off}\n  max_conns_per_client: 0\n  routes: [{upstream: 127.0.0.1:80}]\n",
			want: []string{`moat.yaml:3: proxy.max_conns_per_client: "0" would refuse every connection (want a whole number from 1, or -1 for no cap)`}},
		{name: "proxy jail filter without log", yaml: "proxy:\n  tls: {mode: off}\n  routes: [{upstream: 127.0.0.1:80}]\njails:\n  proxy: {filter: moat-proxy}\n",
			want: []string{`moat.yaml:5: jails.proxy.filter: "moat-proxy" is set without logpath (want logpath: the log the filter reads, such as the proxy's access_log)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("moat.yaml", []byte(tc.yaml), Options{Env: rootEnv, CheckFilter: checkFilter})
			if err == nil {
				t.Fatalf("Parse = %+v, want errors", cfg.Proxy)
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestParseContainers(t *testing.T) {
	const y = "docker: {root: /srv/docker}\njails:\n  web:\n    filter: nginx-http-auth\n    containers: [web, \"label:com.example.role=frontend\", label:tier]\n"
	cfg, err := Parse("moat.yaml", []byte(y), Options{Env: rootEnv, CheckFilter: checkFilter})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Docker.Root != "/srv/docker" {
		t.Errorf("docker root = %q", cfg.Docker.Root)
	}
	want := []string{"web", "label:com.example.role=frontend", "label:tier"}
	if len(cfg.Jails) != 1 || !reflect.DeepEqual(cfg.Jails[0].Containers, want) || len(cfg.Jails[0].LogPath) != 0 {
		t.Errorf("jails = %+v, want containers %q and no logpath", cfg.Jails, want)
	}
	_, err = Parse("moat.yaml", []byte("jails:\n  web:\n    filter: sshd\n    containers: [\"/web\", \"label:=x\", \"\"]\n"), Options{Env: rootEnv, CheckFilter: checkFilter})
	got := strings.Join(errorLines(t, err), "\n")
	if strings.Contains(got, "/web") {
		t.Errorf("/web (Docker's own spelling of a name) refused:\n%s", got)
	}
	for _, w := range []string{`moat.yaml:4: jails.web.containers: "label:=x" is not a container selector: container selector "label:=x": empty label key`,
		`moat.yaml:4: jails.web.containers: is not a container selector: empty container selector`} {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nwant %q", got, w)
		}
	}
}
