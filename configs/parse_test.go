package configs

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/jail"

	"github.com/moatproj/moat/sources/journal"
)

var rootEnv = Env{Root: true, Home: "/root", UID: 0}

// errorLines returns the message of each *Error in err, in order, failing
// the test if err holds anything else.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not an errors.Join", err, err)
	}
	errs := j.Unwrap()
	var out []string
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v (%T) is not a *configs.Error", e, e)
		}
		out = append(out, ce.Error())
	}
	return out
}

// badCases are configurations that must be refused, each with every
// message moat check prints for it (file:line: field: value problem (want)).
var badCases = []struct {
	name string
	yaml string
	want []string
}{
	{
		name: "unknown key with suggestion",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    maxretries: 3\n",
		want: []string{`moat.yaml:4: jails.sshd: "maxretries" is not a known key (did you mean maxretry?)`},
	},
	{
		name: "unknown key with separator",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ban_time: 1h\n",
		want: []string{`moat.yaml:4: jails.sshd: "ban_time" is not a known key (did you mean bantime?)`},
	},
	{
		name: "unknown top-level key without suggestion",
		yaml: "webserver: {}\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:1: "webserver" is not a known key (want one of state_dir, socket, firewall, metrics, proxy, docker, fail2ban, defaults, jails)`},
	},
	{
		name: "unknown key in firewall",
		yaml: "firewall:\n  backnd: none\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:2: firewall: "backnd" is not a known key (did you mean backend?)`},
	},
	{
		name: "bad duration",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    findtime: 10x\n",
		want: []string{`moat.yaml:4: jails.sshd.findtime: "10x" is not a duration (want a duration such as 10m, 1h30m or 1d)`},
	},
	{
		name: "duration without unit",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    bantime: 600\n",
		want: []string{`moat.yaml:4: jails.sshd.bantime: "600" has no unit (want a duration such as 10m, 1h or 1d, or -1 for no end)`},
	},
	{
		name: "zero findtime",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    findtime: 0s\n",
		want: []string{`moat.yaml:4: jails.sshd.findtime: "0s" is zero (want a duration such as 10m, 1h30m or 1d)`},
	},
	{
		name: "findtime of -1",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    findtime: -1\n",
		want: []string{`moat.yaml:4: jails.sshd.findtime: "-1" is not a duration (want a duration such as 10m, 1h30m or 1d)`},
	},
	{
		name: "string where a number is wanted",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    maxretry: five\n",
		want: []string{`moat.yaml:4: jails.sshd.maxretry: "five" is not a whole number (want a whole number of at least 1, such as 5)`},
	},
	{
		name: "quoted number",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    maxretry: \"5\"\n",
		want: []string{`moat.yaml:4: jails.sshd.maxretry: "5" is quoted, so it is text (want a whole number of at least 1, such as 5, without quotes)`},
	},
	{
		name: "maxretry below 1",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    maxretry: 0\n",
		want: []string{`moat.yaml:4: jails.sshd.maxretry: "0" is out of range (want a whole number of at least 1, such as 5)`},
	},
	{
		name: "list where a mapping is wanted",
		yaml: "jails:\n  - sshd\n",
		want: []string{`moat.yaml:2: jails: got a list (want a mapping from jail names to their settings)`},
	},
	{
		name: "scalar where a jail's mapping is wanted",
		yaml: "jails:\n  sshd: true\n",
		want: []string{`moat.yaml:2: jails.sshd: "true" is not a mapping (want a mapping of jail settings such as logpath: and maxretry:)`},
	},
	{
		name: "document is a list",
		yaml: "- jails\n",
		want: []string{`moat.yaml:1: got a list (want a mapping of settings such as jails:)`},
	},
	{
		name: "empty multipliers",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    bantime_increment: {multipliers: []}\n",
		want: []string{`moat.yaml:4: jails.sshd.bantime_increment.multipliers: is an empty list (want a list of numbers greater than 0, such as [1, 2, 4, 8])`},
	},
	{
		name: "mapping where a list or string is wanted",
		yaml: "jails:\n  sshd:\n    logpath: {file: /var/log/auth.log}\n",
		want: []string{`moat.yaml:3: jails.sshd.logpath: got a mapping (want an absolute path or glob such as /var/log/auth.log, or a list of them)`},
	},
	{
		name: "not a boolean",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    enabled: yes\n",
		want: []string{`moat.yaml:4: jails.sshd.enabled: "yes" is not true or false (did you mean true?)`},
	},
	{
		name: "not a boolean at all",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ignoreself: 1\n",
		want: []string{`moat.yaml:4: jails.sshd.ignoreself: "1" is not true or false (want true or false)`},
	},
	{
		name: "duplicate key",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    maxretry: 3\n    maxretry: 4\n",
		want: []string{`moat.yaml:5: jails.sshd: "maxretry" is set twice, first on line 4 (want each key once)`},
	},
	{
		name: "duplicate jail",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n  sshd:\n    logpath: /var/log/secure\n",
		want: []string{`moat.yaml:4: jails: "sshd" is set twice, first on line 2 (want each key once)`},
	},
	{
		name: "second document",
		yaml: "jails:\n  sshd: {logpath: /var/log/auth.log}\n---\njails: {}\n",
		want: []string{`moat.yaml:3: a second YAML document starts here (want one document: remove the --- line and what follows, or merge the two)`},
	},
	{
		name: "yaml syntax error",
		yaml: "jails:\n  sshd:\n\tlogpath: /var/log/auth.log\n",
		want: []string{`moat.yaml:3: found character that cannot start any token (want valid YAML)`},
	},
	{
		name: "bad CIDR",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ignoreip: [192.0.2.0/24, 198.51.100.0/33]\n",
		want: []string{`moat.yaml:4: jails.sshd.ignoreip: "198.51.100.0/33" is not an address or CIDR prefix (want addresses or CIDR prefixes such as 192.0.2.7, 198.51.100.0/24 or 2001:db8::/64, as a list or separated by spaces or commas)`},
	},
	{
		name: "host name in ignoreip",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ignoreip: 192.0.2.1 example.org\n",
		want: []string{`moat.yaml:4: jails.sshd.ignoreip: "example.org" is not an address or CIDR prefix (want addresses or CIDR prefixes such as 192.0.2.7, 198.51.100.0/24 or 2001:db8::/64, as a list or separated by spaces or commas)`},
	},
	{
		name: "port out of range",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ports:\n      - 22\n      - 65536\n",
		want: []string{`moat.yaml:6: jails.sshd.ports: "65536" is out of range (want ports 1-65535, ranges such as 8000-8100, or service names such as ssh, as a list or separated by commas)`},
	},
	{
		name: "port range backwards",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ports: 22,8100-8000\n",
		want: []string{`moat.yaml:4: jails.sshd.ports: "8100-8000" ends before it starts (want ports 1-65535, ranges such as 8000-8100, or service names such as ssh, as a list or separated by commas)`},
	},
	{
		name: "unknown port name",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ports: sshh\n",
		want: []string{`moat.yaml:4: jails.sshd.ports: "sshh" is not a port number or a known service name (want ports 1-65535, ranges such as 8000-8100, or service names such as ssh, as a list or separated by commas)`},
	},
	{
		name: "unknown backend",
		yaml: "firewall:\n  backend: iptables\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:2: firewall.backend: "iptables" is not a firewall backend (did you mean nftables?)`},
	},
	{
		name: "unknown backend without suggestion",
		yaml: "firewall:\n  backend: ufw\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:2: firewall.backend: "ufw" is not a firewall backend (want auto, nftables or none)`},
	},
	{
		name: "fail2ban-only key",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    banaction: iptables-multiport\n",
		want: []string{`moat.yaml:4: jails.sshd: "banaction" is a fail2ban setting that moat does not use (want nothing: moat bans through its nftables sets; see firewall:)`},
	},
	{
		name: "bad table name",
		yaml: "firewall:\n  table: my-table\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:2: firewall.table: "my-table" is not a table name (want 1 to 32 letters, digits or '_', starting with a letter)`},
	},
	{
		name: "bad jail name",
		yaml: "jails:\n  ssh d:\n    logpath: /var/log/auth.log\n",
		want: []string{`moat.yaml:2: jails: "ssh d" is not a valid jail name (want 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit)`},
	},
	{
		name: "jail name that reads as a flag",
		yaml: "jails:\n  -sshd:\n    logpath: /var/log/auth.log\n",
		want: []string{`moat.yaml:2: jails: "-sshd" is not a valid jail name (want 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit)`},
	},
	{
		name: "missing logpath",
		yaml: "jails:\n  sshd:\n    maxretry: 3\n",
		want: []string{`moat.yaml:2: jails.sshd.logpath: is missing (want an absolute path or glob such as /var/log/auth.log, or a list of them; or containers:)`},
	},
	{
		name: "relative logpath",
		yaml: "jails:\n  sshd:\n    logpath: [/var/log/auth.log, log/secure]\n",
		want: []string{`moat.yaml:3: jails.sshd.logpath: "log/secure" is not an absolute path (want an absolute path or glob such as /var/log/auth.log, or a list of them)`},
	},
	{
		name: "bad glob",
		yaml: "jails:\n  nginx:\n    logpath: /var/log/nginx/[a.log\n",
		want: []string{`moat.yaml:3: jails.nginx.logpath: "/var/log/nginx/[a.log" is not a valid glob (want an absolute path or glob such as /var/log/auth.log, or a list of them)`},
	},
	{
		name: "filter rejected by CheckFilter",
		yaml: "jails:\n  web:\n    filter: nginx-nope\n    logpath: /var/log/nginx/error.log\n",
		want: []string{`moat.yaml:3: jails.web.filter: "nginx-nope" cannot be loaded: unknown filter nginx-nope (want a built-in filter name such as sshd, a name with options such as sshd[mode=aggressive], or a path to a filter.d file, or a mapping with failregex:)`},
	},
	{
		name: "default filter rejected by CheckFilter",
		yaml: "jails:\n  web:\n    logpath: /var/log/nginx/error.log\n",
		want: []string{`moat.yaml:2: jails.web.filter: "web" (the jail's name, used as its filter when filter: is not set) cannot be loaded: unknown filter web (want a built-in filter name such as sshd, a name with options such as sshd[mode=aggressive], or a path to a filter.d file, or a mapping with failregex:)`},
	},
	{
		name: "inline filter without failregex",
		yaml: "jails:\n  app:\n    filter:\n      ignoreregex: healthcheck\n    logpath: /var/log/app.log\n",
		want: []string{`moat.yaml:4: jails.app.filter.failregex: is missing (want a regex, or a list of regexes)`},
	},
	{
		name: "bad filter name",
		yaml: "jails:\n  sshd:\n    filter: sshd[mode=aggressive\n    logpath: /var/log/auth.log\n",
		want: []string{`moat.yaml:3: jails.sshd.filter: "sshd[mode=aggressive" is not a filter name or path (want a built-in filter name such as sshd, a name with options such as sshd[mode=aggressive], or a path to a filter.d file)`},
	},
	{
		name: "ipv6_prefix out of range",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    ipv6_prefix: 129\n",
		want: []string{`moat.yaml:4: jails.sshd.ipv6_prefix: "129" is out of range (want a prefix length from 16 to 128, such as 64)`},
	},
	{
		name: "bad increment",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    bantime_increment:\n      factor: 0\n      multipliers: [1, two]\n      maxtime: forever\n",
		want: []string{
			`moat.yaml:5: jails.sshd.bantime_increment.factor: "0" is out of range (want a number greater than 0, such as 1 or 1.5)`,
			`moat.yaml:6: jails.sshd.bantime_increment.multipliers: "two" is not a number (want a list of numbers greater than 0, such as [1, 2, 4, 8])`,
			`moat.yaml:7: jails.sshd.bantime_increment.maxtime: "forever" is not a duration (want a duration such as 10m, 1h30m or 1d, or 0 for no cap)`,
		},
	},
	{
		name: "relative state_dir and bad metrics address",
		yaml: "state_dir: var/lib/moat\nmetrics:\n  listen: 127.0.0.1\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{
			`moat.yaml:1: state_dir: "var/lib/moat" is not an absolute path (want an absolute path such as /var/lib/moat)`,
			`moat.yaml:3: metrics.listen: "127.0.0.1" is not an address to listen on (want host:port such as 127.0.0.1:9477 or [::1]:9477, or empty for no metrics)`,
		},
	},
	{
		name: "socket path too long",
		yaml: "socket: /run/" + strings.Repeat("m", 100) + "/moat.sock\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:1: socket: "/run/` + strings.Repeat("m", 75) + `…" is longer than the 107 bytes a unix socket path may have (want an absolute path such as /run/moat/moat.sock)`},
	},
	{
		name: "empty file",
		yaml: "# nothing but a comment\n",
		want: []string{`moat.yaml:1: the file is empty (want settings with at least one jail under jails:)`},
	},
	{
		name: "null document",
		yaml: "~\n",
		want: []string{`moat.yaml:1: the file is empty (want settings with at least one jail under jails:)`},
	},
	{
		name: "no jails",
		yaml: "firewall:\n  backend: none\n",
		want: []string{`moat.yaml:1: jails: is missing (want at least one jail, such as sshd: {logpath: /var/log/auth.log})`},
	},
	{
		name: "all jails disabled",
		yaml: "jails:\n  sshd:\n    enabled: false\n    logpath: /var/log/auth.log\n",
		want: []string{`moat.yaml:1: jails: are all disabled (want at least one jail without enabled: false)`},
	},
	{
		name: "merge key",
		yaml: "x: &base {logpath: /var/log/auth.log}\njails:\n  sshd:\n    <<: *base\n",
		want: []string{
			`moat.yaml:1: "x" is not a known key (want one of state_dir, socket, firewall, metrics, proxy, docker, fail2ban, defaults, jails)`,
			`moat.yaml:3: jails.sshd.logpath: is missing (want an absolute path or glob such as /var/log/auth.log, or a list of them; or containers:)`,
			`moat.yaml:4: jails.sshd: "<<" merge keys are not supported (want shared settings under defaults:)`,
		},
	},
	{
		name: "bad value in defaults",
		yaml: "defaults:\n  bantime: 1 hour\njails:\n  sshd: {logpath: /var/log/auth.log}\n",
		want: []string{`moat.yaml:2: defaults.bantime: "1 hour" is not a duration (want a duration such as 10m, 1h or 1d, or -1 for no end)`},
	},
	{
		name: "unknown log backend",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    backend: sytemd\n",
		want: []string{`moat.yaml:4: jails.sshd.backend: "sytemd" is not a log backend (did you mean systemd?)`},
	},
	{
		name: "fail2ban's gamin backend",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    backend: gamin\n",
		want: []string{`moat.yaml:4: jails.sshd.backend: "gamin" is not a log backend (want auto, polling, pyinotify or systemd)`},
	},
	{
		name: "journalmatch term without a value",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    journalmatch: _SYSTEMD_UNIT=ssh.service + sshd\n",
		want: []string{`moat.yaml:4: jails.sshd.journalmatch: "_SYSTEMD_UNIT=ssh.service + sshd" journalmatch line 1: term "sshd" is not FIELD=value (want FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd)`},
	},
	{
		name: "journalmatch list with a bad field name",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    journalmatch:\n      - _SYSTEMD_UNIT=ssh.service\n      - _comm=sshd\n",
		want: []string{`moat.yaml:6: jails.sshd.journalmatch: "_comm=sshd" journalmatch line 1: term "_comm=sshd": field names hold only A-Z, 0-9 and _ (not 'c') (want FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd)`},
	},
	{
		name: "journalmatch with an empty alternative",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    journalmatch: _COMM=sshd +\n",
		want: []string{`moat.yaml:4: jails.sshd.journalmatch: "_COMM=sshd +" journalmatch line 1: "+" must stand between two terms (want FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd)`},
	},
	{
		name: "empty journalmatch",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    journalmatch: []\n",
		want: []string{`moat.yaml:4: jails.sshd.journalmatch: is empty (want FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd; or no journalmatch, to read every entry)`},
	},
	{
		name: "journalmatch with an unclosed quote",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    journalmatch: \"_COMM='sshd\"\n",
		want: []string{`moat.yaml:4: jails.sshd.journalmatch: "_COMM='sshd" journalmatch line 1: no closing quotation (want FIELD=value terms such as _SYSTEMD_UNIT=ssh.service, with '+' between alternatives: _SYSTEMD_UNIT=sshd.service + _COMM=sshd)`},
	},
	{
		name: "logpath with backend systemd",
		yaml: "jails:\n  sshd:\n    backend: systemd\n    logpath: /var/log/auth.log\n    journalmatch: _COMM=sshd\n",
		want: []string{`moat.yaml:4: jails.sshd.logpath: is set, but with backend: systemd the jail reads the journal, not files (want backend: auto, to read the files when they exist and the journal otherwise; or no logpath)`},
	},
	{
		name: "journalmatch without a journal backend",
		yaml: "jails:\n  sshd:\n    logpath: /var/log/auth.log\n    journalmatch: _COMM=sshd\n",
		want: []string{`moat.yaml:4: jails.sshd.journalmatch: is set, but with no backend: the jail reads files (want backend: systemd, or backend: auto to read the files when they exist and the journal otherwise; or no journalmatch)`},
	},
	{
		name: "journalmatch with backend polling",
		yaml: "defaults:\n  backend: polling\njails:\n  sshd:\n    logpath: /var/log/auth.log\n    journalmatch: _COMM=sshd\n",
		want: []string{`moat.yaml:6: jails.sshd.journalmatch: is set, but with backend: polling the jail reads files (want backend: systemd, or backend: auto to read the files when they exist and the journal otherwise; or no journalmatch)`},
	},
	{
		name: "several errors sorted by line",
		yaml: "jails:\n  b:\n    logpath: /var/log/b.log\n    maxretry: -2\n  a:\n    logpath: /var/log/a.log\n    findtime: soon\ndefaults:\n  ports: 0\n",
		want: []string{
			`moat.yaml:4: jails.b.maxretry: "-2" is out of range (want a whole number of at least 1, such as 5)`,
			`moat.yaml:7: jails.a.findtime: "soon" is not a duration (want a duration such as 10m, 1h30m or 1d)`,
			`moat.yaml:9: defaults.ports: "0" is out of range (want ports 1-65535, ranges such as 8000-8100, or service names such as ssh, as a list or separated by commas)`,
		},
	},
}

// checkFilter stands for the filters package: it knows every filter but
// "nginx-nope" and "web".
func checkFilter(f Filter) error {
	if f.Name == "nginx-nope" || f.Name == "web" {
		return fmt.Errorf("unknown filter %s", f.Name)
	}
	return nil
}

func TestParseBad(t *testing.T) {
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("moat.yaml", []byte(tc.yaml), Options{Env: rootEnv, CheckFilter: checkFilter})
			if err == nil {
				t.Fatalf("Parse = %+v, want errors %q", cfg, tc.want)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestErrorFields checks the parts of one error one by one, as callers
// reading them with errors.As see them.
func TestErrorFields(t *testing.T) {
	_, err := Parse("/etc/moat/moat.yaml", []byte("jails:\n  sshd:\n    logpath: /var/log/auth.log\n    findtime: 10x\n"), Options{Env: rootEnv})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error %v is not a *Error", err)
	}
	want := Error{File: "/etc/moat/moat.yaml", Line: 4, Field: "jails.sshd.findtime", Value: "10x", Problem: "is not a duration", Want: wantDuration}
	if *e != want {
		t.Errorf("error = %+v, want %+v", *e, want)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "moat.yaml", Line: 12, Field: "jails.sshd.findtime", Value: "10x", Problem: "is not a duration", Want: "a Go duration such as 10m or 1h, or -1"},
			`moat.yaml:12: jails.sshd.findtime: "10x" is not a duration (want a Go duration such as 10m or 1h, or -1)`},
		{"suggestion", Error{File: "m.yaml", Line: 3, Field: "jails.x", Value: "maxretries", Problem: "is not a known key", Want: "did you mean maxretry?"},
			`m.yaml:3: jails.x: "maxretries" is not a known key (did you mean maxretry?)`},
		{"no line, no value", Error{File: "m.yaml", Field: "state_dir", Problem: "has no default"},
			`m.yaml: state_dir: has no default`},
		{"no file", Error{Line: 2, Problem: "broken"}, `config:2: broken`},
		{"value quoted", Error{File: "f", Line: 1, Field: "a", Value: "x\ty\"", Problem: "is bad"}, `f:1: a: "x\ty\"" is bad`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseDefaultsApplied(t *testing.T) {
	const doc = "jails:\n  sshd:\n    logpath: /var/log/auth.log\n"
	tests := []struct {
		name                      string
		env                       Env
		stateDir, socket, backend string
	}{
		{"root", Env{Root: true, Home: "/root", XDGStateHome: "/ignored", XDGRuntimeDir: "/ignored"}, "/var/lib/moat", "/run/moat/moat.sock", "auto"},
		{"user with XDG", Env{Home: "/home/u", XDGStateHome: "/home/u/.state", XDGRuntimeDir: "/run/user/1000", UID: 1000}, "/home/u/.state/moat", "/run/user/1000/moat/moat.sock", "none"},
		{"user without XDG", Env{Home: "/home/u", UID: 1000}, "/home/u/.local/state/moat", "/home/u/.local/state/moat/moat.sock", "none"},
		{"user with relative XDG", Env{Home: "/home/u", XDGStateHome: "state", XDGRuntimeDir: "run", UID: 1000}, "/home/u/.local/state/moat", "/home/u/.local/state/moat/moat.sock", "none"},
		{"user with runtime dir only", Env{Home: "/home/u", XDGRuntimeDir: "/run/user/1000", UID: 1000}, "/home/u/.local/state/moat", "/run/user/1000/moat/moat.sock", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("moat.yaml", []byte(doc), Options{Env: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			if DefaultStateDir(tc.env) != tc.stateDir || DefaultSocket(tc.env) != tc.socket {
				t.Errorf("DefaultStateDir, DefaultSocket = %s, %s; want %s, %s", DefaultStateDir(tc.env), DefaultSocket(tc.env), tc.stateDir, tc.socket)
			}
			if cfg.StateDir != tc.stateDir || cfg.Socket != tc.socket || cfg.Firewall.Backend != tc.backend {
				t.Errorf("state_dir, socket, backend = %s, %s, %s; want %s, %s, %s", cfg.StateDir, cfg.Socket, cfg.Firewall.Backend, tc.stateDir, tc.socket, tc.backend)
			}
			want := Jail{
				Config: jail.Config{
					Name: "sshd", MaxRetry: 5, FindTime: 10 * time.Minute, BanTime: 10 * time.Minute,
					Increment:  jail.Increment{Factor: 1},
					IgnoreSelf: true, IPv6Prefix: 128,
				},
				Filter:  Filter{Name: "sshd"},
				LogPath: []string{"/var/log/auth.log"},
				Line:    2,
			}
			if len(cfg.Jails) != 1 || !reflect.DeepEqual(cfg.Jails[0], want) {
				t.Errorf("jails = %+v, want [%+v]", cfg.Jails, want)
			}
			if cfg.Firewall.Table != "moat" || cfg.Firewall.Check != time.Second || cfg.Metrics.Listen != "" {
				t.Errorf("firewall, metrics = %+v, %+v", cfg.Firewall, cfg.Metrics)
			}
		})
	}
}

func TestParseNoStateDir(t *testing.T) {
	_, err := Parse("moat.yaml", []byte("jails:\n  sshd: {logpath: /var/log/auth.log}\n"), Options{Env: Env{UID: 1000}})
	got := errorLines(t, err)
	want := []string{`moat.yaml: state_dir: has no default: not root, and neither $XDG_STATE_HOME nor $HOME is an absolute path (want state_dir: set to a directory moat may write)`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors = %q, want %q", got, want)
	}
	// Setting state_dir is the way out.
	cfg, err := Parse("moat.yaml", []byte("state_dir: /srv/moat\njails:\n  sshd: {logpath: /var/log/auth.log}\n"), Options{Env: Env{UID: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/srv/moat" || cfg.Socket != "/srv/moat/moat.sock" {
		t.Errorf("state_dir, socket = %s, %s", cfg.StateDir, cfg.Socket)
	}
	// A long state_dir makes the default socket too long for a unix socket.
	long := "/srv/" + strings.Repeat("s", 100)
	_, err = Parse("moat.yaml", []byte("state_dir: "+long+"\njails:\n  sshd: {logpath: /var/log/auth.log}\n"), Options{Env: Env{UID: 1000, Home: "/home/u"}})
	want = []string{`moat.yaml:1: socket: "` + (long + "/moat.sock")[:80] + `…" (the default) is longer than the 107 bytes a unix socket path may have (want socket: set to a shorter path)`}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors = %q, want %q", got, want)
	}
	if got := DefaultSocket(Env{UID: 1000}); got != "/run/moat/moat.sock" {
		t.Errorf("DefaultSocket with no user directory = %s, want /run/moat/moat.sock", got)
	}
}

func TestParseFull(t *testing.T) {
	const doc = `state_dir: /srv/moat/
socket: /srv/moat/ctl.sock
firewall:
  backend: nftables
  table: guard_1
  check: 5s
metrics:
  listen: "[::1]:9477"
jails:
  web:
    filter:
      failregex: |
        ^bad login from <HOST>$
        ^denied <HOST>$
      ignoreregex: [^healthcheck]
    logpath: [/var/log/web/*.log, /var/log/web.log]
    maxretry: 3
    findtime: 1h30m
    bantime: -1
    bantime_increment:
      enabled: true
      factor: 1.5
      maxtime: 2w
      multipliers: [1, 2.5, 4]
      rndtime: 30s
    ignoreip: "192.0.2.7, 198.51.100.0/24 2001:db8::1 ::ffff:203.0.113.9"
    ignoreself: false
    ports: [443, "8000-8100", "8050:8200", 80, http, "22,23"]
    ipv6_prefix: 64
`
	cfg, err := Parse("full.yaml", []byte(doc), Options{Env: rootEnv, CheckFilter: checkFilter})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File: "full.yaml", StateDir: "/srv/moat", Socket: "/srv/moat/ctl.sock",
		Firewall: Firewall{Backend: "nftables", Table: "guard_1", Check: 5 * time.Second},
		Metrics:  Metrics{Listen: "[::1]:9477"},
		Docker:   Docker{Root: "/var/lib/docker"},
		Jails: []Jail{{
			Config: jail.Config{
				Name: "web", MaxRetry: 3, FindTime: 90 * time.Minute, BanTime: -1,
				Increment: jail.Increment{Enabled: true, Factor: 1.5, MaxTime: 14 * 24 * time.Hour, Multipliers: []float64{1, 2.5, 4}, RndTime: 30 * time.Second},
				IgnoreIP: []netip.Prefix{
					netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("198.51.100.0/24"),
					netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("203.0.113.9/32"),
				},
				IgnoreSelf: false, IPv6Prefix: 64,
				// Sorted, and overlapping or touching ranges merged.
				Ports: []firewall.PortRange{{First: 22, Last: 23}, {First: 80, Last: 80}, {First: 443, Last: 443}, {First: 8000, Last: 8200}},
			},
			Filter:  Filter{FailRegex: []string{"^bad login from <HOST>$", "^denied <HOST>$"}, IgnoreRegex: []string{"^healthcheck"}},
			LogPath: []string{"/var/log/web/*.log", "/var/log/web.log"},
			Line:    10,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestDefaultsInheritance(t *testing.T) {
	const doc = `defaults:
  enabled: false
  maxretry: 3
  bantime: 1h
  ignoreip: [192.0.2.0/24]
  ports: ssh
  bantime_increment:
    enabled: true
    maxtime: 1w
jails:
  sshd:
    enabled: true
    logpath: /var/log/auth.log
  nginx-http-auth:
    enabled: true
    logpath: /var/log/nginx/error.log
    maxretry: 10
    ignoreip: []
    ports: [80, 443]
    bantime_increment:
      maxtime: 1d
  nginx-botsearch:
    logpath: /var/log/nginx/access.log
`
	cfg, err := Parse("moat.yaml", []byte(doc), Options{Env: rootEnv})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Jails) != 2 {
		t.Fatalf("jails = %+v, want sshd and nginx-http-auth (nginx-botsearch inherits enabled: false)", cfg.Jails)
	}
	sshd, web := cfg.Jails[0], cfg.Jails[1]
	if sshd.Name != "sshd" || sshd.MaxRetry != 3 || sshd.BanTime != time.Hour || sshd.FindTime != DefaultFindTime ||
		!reflect.DeepEqual(sshd.IgnoreIP, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) ||
		!reflect.DeepEqual(sshd.Ports, []firewall.PortRange{{First: 22, Last: 22}}) ||
		!reflect.DeepEqual(sshd.Increment, jail.Increment{Enabled: true, Factor: 1, MaxTime: 7 * 24 * time.Hour}) {
		t.Errorf("sshd = %+v, want the defaults", sshd)
	}
	if web.Name != "nginx-http-auth" || web.MaxRetry != 10 || web.BanTime != time.Hour || len(web.IgnoreIP) != 0 ||
		!reflect.DeepEqual(web.Ports, []firewall.PortRange{{First: 80, Last: 80}, {First: 443, Last: 443}}) ||
		!web.Increment.Enabled || web.Increment.MaxTime != 24*time.Hour {
		t.Errorf("nginx-http-auth = %+v, want its own maxretry, ignoreip, ports and maxtime over the defaults", web)
	}
	// Jails must not share the defaults' slices: one jail's change must not
	// show in another.
	sshd.IgnoreIP[0] = netip.MustParsePrefix("203.0.113.0/24")
	cfg2, _ := Parse("moat.yaml", []byte(doc), Options{Env: rootEnv})
	if cfg2.Jails[0].IgnoreIP[0] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Error("jails share slices")
	}
}

func TestJailOrderAndLines(t *testing.T) {
	const doc = "jails:\n  zeta: {logpath: /var/log/z.log}\n  alpha: {logpath: /var/log/a.log}\n  off: {logpath: /var/log/o.log, enabled: false}\n  mid.dle_1: {logpath: /var/log/m.log}\n"
	var checked []string
	cfg, err := Parse("moat.yaml", []byte(doc), Options{Env: rootEnv, CheckFilter: func(f Filter) error {
		checked = append(checked, f.Name)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range cfg.Jails {
		got = append(got, fmt.Sprintf("%s@%d", j.Name, j.Line))
	}
	if want := []string{"zeta@2", "alpha@3", "mid.dle_1@5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("jails = %v, want %v", got, want)
	}
	if want := []string{"zeta", "alpha", "mid.dle_1"}; !reflect.DeepEqual(checked, want) {
		t.Errorf("CheckFilter called for %v, want the enabled jails %v", checked, want)
	}
}

func TestEmbeddedConfigs(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		jails []string
	}{
		{"default", DefaultYAML, []string{"sshd"}},
		{"example", ExampleYAML, []string{"sshd", "nginx-http-auth", "nginx-limit-req", "nginx-botsearch", "proxy", "scanners"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(tc.name+".yaml", tc.data, Options{Env: rootEnv, CheckFilter: checkFilter})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, j := range cfg.Jails {
				names = append(names, j.Name)
			}
			if !reflect.DeepEqual(names, tc.jails) {
				t.Errorf("jails = %v, want %v", names, tc.jails)
			}
		})
	}
	t.Run("default is fail2ban's", func(t *testing.T) {
		cfg, err := Default(Options{Env: rootEnv})
		if err != nil {
			t.Fatal(err)
		}
		j := cfg.Jails[0]
		if cfg.File != "(embedded default)" || cfg.Firewall.Backend != "auto" || j.Filter.Name != "sshd" ||
			!reflect.DeepEqual(j.LogPath, []string{"/var/log/auth.log"}) ||
			j.MaxRetry != 5 || j.FindTime != 10*time.Minute || j.BanTime != 10*time.Minute {
			t.Errorf("default = %+v", cfg)
		}
	})
	t.Run("example escalates", func(t *testing.T) {
		cfg, err := Parse("example.yaml", ExampleYAML, Options{Env: rootEnv})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range cfg.Jails {
			if !j.Increment.Enabled || len(j.IgnoreIP) == 0 || len(j.Ports) == 0 {
				t.Errorf("jail %s = %+v, want escalation, ignoreip and ports", j.Name, j)
			}
		}
	})
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"10m", 10 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"1d", 24 * time.Hour, false},
		{"1w", 7 * 24 * time.Hour, false},
		{"1w2d", 9 * 24 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, false},
		{"250ms", 250 * time.Millisecond, false},
		{"0", 0, false},
		{" 2h ", 2 * time.Hour, false},
		{"600", 0, true},
		{"", 0, true},
		{"-1h", 0, true},
		{"10x", 0, true},
		{"d", 0, true},
		{"1..5d", 0, true},
		{"1h 30m", 0, true},
		{"99999999999w", 0, true},
		{"106751d1h", 2562025 * time.Hour, false},
		{"106752d", 0, true},
		{"2562047h1d", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"maxretries", "maxretry"},
		{"ban_time", "bantime"},
		{"bantime.increment", "bantime_increment"},
		{"BanTime", "bantime"},
		{"logpaths", "logpath"},
		{"port", "ports"},
		{"ignore_ip", "ignoreip"},
		{"findtim", "findtime"},
		{"ipv6prefix", "ipv6_prefix"},
		{"action", ""},
		{"x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := suggest(tc.in, jailKeys); got != tc.want {
				t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range badCases {
		f.Add([]byte(tc.yaml))
	}
	f.Add(DefaultYAML)
	f.Add(ExampleYAML)
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("jails: &j\n  x: *j\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, Options{Env: rootEnv, CheckFilter: checkFilter})
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one", cfg, err)
		}
		if err != nil {
			for _, line := range errorLines(t, err) {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("error %q does not name the file", line)
				}
			}
			return
		}
		if len(cfg.Jails) == 0 && cfg.Fail2ban == "" && cfg.Proxy == nil {
			t.Fatal("a valid config has no jails and no fail2ban directory or proxy to bring them")
		}
		for _, j := range cfg.Jails {
			// Only the proxy's jail may go without a log: the proxy feeds it.
			noLog := len(j.LogPath) == 0 && len(j.Containers) == 0 && !j.Journal && !(cfg.Proxy != nil && j.Name == "proxy")
			if j.Journal != (j.Backend == BackendSystemd || j.Backend == BackendAuto && len(j.LogPath) == 0) {
				t.Fatalf("jail %s: backend %q with logpath %q reads the journal: %v", j.Name, j.Backend, j.LogPath, j.Journal)
			}
			if again, err := journal.ParseMatch(j.JournalMatch.String()); err != nil || again.String() != j.JournalMatch.String() {
				t.Fatalf("jail %s: journalmatch %q is written %q, which reads back as %q, %v", j.Name, j.JournalMatch, j.JournalMatch.String(), again, err)
			}
			if j.MaxRetry < 1 || j.FindTime <= 0 || j.BanTime == 0 || noLog || j.IPv6Prefix < 16 || j.IPv6Prefix > 128 {
				t.Fatalf("invalid jail accepted: %+v", j)
			}
		}
	})
}

func BenchmarkParseExample(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("example.yaml", ExampleYAML, Options{Env: rootEnv}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseFail2banDir(t *testing.T) {
	tests := []struct {
		name, yaml string
		opt        string
		want       string
		jails      int
	}{
		{"key, no jails", "fail2ban: /etc/fail2ban\n", "", "/etc/fail2ban", 0},
		{"key and jails", "fail2ban: /etc/fail2ban\njails:\n  web:\n    logpath: /var/log/web.log\n", "", "/etc/fail2ban", 1},
		{"option, empty settings", "firewall: {backend: none}\n", "/srv/f2b", "/srv/f2b", 0},
		{"option wins", "fail2ban: /etc/fail2ban\n", "/srv/f2b", "/srv/f2b", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("moat.yaml", []byte(tc.yaml), Options{Env: rootEnv, Fail2ban: tc.opt})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg.Fail2ban != tc.want || len(cfg.Jails) != tc.jails {
				t.Errorf("Fail2ban = %q with %d jails, want %q with %d", cfg.Fail2ban, len(cfg.Jails), tc.want, tc.jails)
			}
		})
	}
	if _, err := Parse("moat.yaml", []byte("fail2ban: etc/fail2ban\n"), Options{Env: rootEnv}); err == nil || !strings.Contains(err.Error(), "moat.yaml:1: fail2ban") {
		t.Errorf("a relative fail2ban dir: %v, want an error at moat.yaml:1", err)
	}
	if _, err := Parse("moat.yaml", []byte("firewall: {backend: none}\n"), Options{Env: rootEnv}); err == nil {
		t.Errorf("no jails and no fail2ban dir: want an error")
	}
}
