package configs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/proxy/proxyconfig"
	"github.com/moatproj/moat/sources/docker"

	"github.com/moatproj/moat/sources/journal"
)

// Defaults applied to every jail unless defaults: or the jail sets them
// (fail2ban's own defaults).
const (
	DefaultMaxRetry   = 5
	DefaultFindTime   = 10 * time.Minute
	DefaultBanTime    = 10 * time.Minute
	DefaultIPv6Prefix = 128
	DefaultTable      = "moat"
	DefaultCheck      = time.Second
	DefaultDockerRoot = "/var/lib/docker"
)

// maxSocketPath is the longest path a unix socket can be bound to on Linux
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

var (
	topKeys       = []string{"state_dir", "socket", "firewall", "metrics", "proxy", "docker", "fail2ban", "defaults", "jails"}
	dockerKeys    = []string{"root"}
	firewallKeys  = []string{"backend", "table", "check"}
	metricsKeys   = []string{"listen"}
	jailKeys      = []string{"enabled", "filter", "logpath", "containers", "maxretry", "findtime", "bantime", "bantime_increment", "ignoreip", "ignoreself", "ports", "ipv6_prefix", "backend", "journalmatch"}
	incrementKeys = []string{"enabled", "factor", "maxtime", "multipliers", "rndtime"}
	filterKeys    = []string{"failregex", "ignoreregex"}

	jailNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
	tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)
	// filterRE accepts a name or path, optionally followed by [options].
	filterRE = regexp.MustCompile(`^[^\[\]\s][^\[\]]*(\[[^\[\]]*\])?$`)
)

// Wants shared by several fields, so that messages stay the same wherever
// the setting appears.
const (
	wantDuration   = "a duration such as 10m, 1h30m or 1d"
	wantBanTime    = "a duration such as 10m, 1h or 1d, or -1 for no end"
	wantBool       = "true or false"
	wantStateDir   = "an absolute path such as /var/lib/moat"
	wantSocket     = "an absolute path such as /run/moat/moat.sock"
	wantLogPath    = "an absolute path or glob such as /var/log/auth.log, or a list of them"
	wantContainers = "container names such as web or app-*, label selectors such as label:com.example.role=frontend, or id:PREFIX, as a list"
	wantIgnoreIP   = "addresses or CIDR prefixes such as 192.0.2.7, 198.51.100.0/24 or 2001:db8::/64, as a list or separated by spaces or commas"
	wantPort       = "ports 1-65535, ranges such as 8000-8100, or service names such as ssh, as a list or separated by commas"
	wantJailName   = "1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit"
	wantTableName  = "1 to 32 letters, digits or '_', starting with a letter"
	wantBackend    = "auto, nftables or none"
	wantFilterName = "a built-in filter name such as sshd, a name with options such as sshd[mode=aggressive], or a path to a filter.d file"
	wantRegex      = "a regex, or a list of regexes"
	wantLogBackend = "auto, polling, pyinotify or systemd"
)

// Parse reads one configuration from data, strictly: unknown keys, repeated
// keys, values of the wrong type or out of range, and trailing YAML
// documents are errors. name is the file name used in messages. The
// defaults that depend on the user (state directory, socket, firewall
// backend) come from opts.Env. opts.CheckFilter, when set, is called for the
// filter of every enabled jail that is otherwise valid. A jail with
// backend: auto reads the journal when opts.LogExists finds none of its
// logpath patterns (without LogExists, every pattern counts as existing:
// Parse itself reads no files).
//
// On failure the error is an errors.Join of one or more *Error, sorted by
// line (unwrap it with interface{ Unwrap() []error } to print each). Parse does no I/O of its own and is safe for concurrent use.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	d := &decoder{file: name, disabled: map[string]bool{}}
	cfg := d.parse(data, opts)
	if err := d.err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(d.warns, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	cfg.Warnings = d.warns
	return cfg, nil
}

// decoder gathers the errors of one Parse.
type decoder struct {
	file string
	errs []*Error
	// disabled is the jails written with enabled: false.
	disabled map[string]bool
	// warns are problems that do not stop the configuration.
	warns []*Error
}

func (d *decoder) fail(line int, field, value, problem, want string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Value: value, Problem: problem, Want: want})
}

func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document decodes exactly one YAML document and returns its root node, or
// nil after recording why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.fail(1, "", "", "the file is empty", "settings with at least one jail under jails:")
			return nil
		}
		d.syntax(err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
		return nil
	default:
		d.fail(next.Line, "", "", "a second YAML document starts here", "one document: remove the --- line and what follows, or merge the two")
		return nil
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		d.fail(1, "", "", "the file is empty", "settings with at least one jail under jails:")
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) syntax(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.fail(line, "", "", m[2], "valid YAML")
		return
	}
	d.fail(0, "", "", strings.TrimPrefix(msg, "yaml: "), "valid YAML")
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// shape names a node whose kind is not what was wanted.
func shape(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "got a mapping"
	case yaml.SequenceNode:
		return "got a list"
	case yaml.DocumentNode:
		return "got a document"
	}
	return "got an alias"
}

// mapping walks the key/value pairs of n, checking that n is a mapping (null
// counts as empty), that each key is written once and, when keys is not
// nil, that each key is one of them. It calls fn for each good pair.
func (d *decoder) mapping(n *yaml.Node, field, want string, keys []string, fn func(k string, key, val *yaml.Node)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.wrongKind(n, field, "a mapping", want)
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := resolve(n.Content[i]), n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			d.fail(key.Line, field, "", "has a key that is not plain text", "keys such as maxretry:")
			continue
		}
		if key.Tag == "!!merge" {
			d.fail(key.Line, field, key.Value, "merge keys are not supported", "shared settings under defaults:")
			continue
		}
		k := key.Value
		if first, ok := seen[k]; ok {
			d.fail(key.Line, field, k, fmt.Sprintf("is set twice, first on line %d", first), "each key once")
			continue
		}
		seen[k] = key.Line
		if keys != nil && !slices.Contains(keys, k) {
			w := "one of " + strings.Join(keys, ", ")
			if s := suggest(k, keys); s != "" {
				w = "did you mean " + s + "?"
			} else if why, ok := fail2banOnly[k]; ok && slices.Contains(keys, "logpath") {
				d.fail(key.Line, field, k, "is a fail2ban setting that moat does not use", why)
				continue
			}
			d.fail(key.Line, field, k, "is not a known key", w)
			continue
		}
		fn(k, key, val)
	}
}

// fail2banOnly explains the jail settings of fail2ban that have no
// counterpart in moat, for people bringing a jail.local over.
var fail2banOnly = map[string]string{
	"action":    "nothing: moat bans through its nftables sets; see firewall:",
	"banaction": "nothing: moat bans through its nftables sets; see firewall:",
	"chain":     "nothing: moat's drop rule sits in its own table; see firewall:",
	"protocol":  "nothing: bans cover TCP and UDP; use ports: to narrow them",
	"usedns":    "nothing: moat never resolves host names in logs",
	"port":      "ports:",
}

// wrong records a value of the wrong kind or an empty one, where a scalar
// is wanted.
func (d *decoder) wrong(n *yaml.Node, field, want string) {
	d.wrongKind(n, field, "a single value", want)
}

// wrongKind records a value that is not of kind expect ("a mapping").
func (d *decoder) wrongKind(n *yaml.Node, field, expect, want string) {
	switch {
	case isNull(n):
		d.fail(n.Line, field, "", "is empty", want)
	case n.Kind == yaml.ScalarNode:
		d.fail(n.Line, field, n.Value, "is not "+expect, want)
	default:
		d.fail(n.Line, field, "", shape(n), want)
	}
}

// scalar returns the text of a non-empty scalar.
func (d *decoder) scalar(n *yaml.Node, field, want string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.wrong(n, field, want)
		return "", false
	}
	if strings.TrimSpace(n.Value) == "" {
		d.fail(n.Line, field, "", "is empty", want)
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.wrong(n, field, wantBool)
		return false, false
	}
	if n.Tag != "!!bool" {
		want := wantBool
		switch strings.ToLower(n.Value) {
		case "yes", "on", "y":
			want = "did you mean true?"
		case "no", "off", "n":
			want = "did you mean false?"
		}
		d.fail(n.Line, field, n.Value, "is not true or false", want)
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.fail(n.Line, field, n.Value, "is not true or false", wantBool)
		return false, false
	}
	return b, true
}

// integer reads a whole number in [lo, hi].
func (d *decoder) integer(n *yaml.Node, field string, lo, hi int, want string) (int, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.wrong(n, field, want)
		return 0, false
	}
	if n.Tag != "!!int" {
		if _, err := strconv.Atoi(strings.TrimSpace(n.Value)); err == nil {
			d.fail(n.Line, field, n.Value, "is quoted, so it is text", want+", without quotes")
			return 0, false
		}
		d.fail(n.Line, field, n.Value, "is not a whole number", want)
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < int64(lo) || v > int64(hi) {
		d.fail(n.Line, field, n.Value, "is out of range", want)
		return 0, false
	}
	return int(v), true
}

// number reads a number (whole or not) greater than zero.
func (d *decoder) number(n *yaml.Node, field, want string) (float64, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.wrong(n, field, want)
		return 0, false
	}
	var v float64
	if (n.Tag != "!!int" && n.Tag != "!!float") || n.Decode(&v) != nil {
		d.fail(n.Line, field, n.Value, "is not a number", want)
		return 0, false
	}
	if !(v > 0) || v > 1e9 {
		d.fail(n.Line, field, n.Value, "is out of range", want)
		return 0, false
	}
	return v, true
}

// duration reads a duration; noEnd allows -1 (returned as -1ns); positive
// requires more than zero.
func (d *decoder) duration(n *yaml.Node, field string, noEnd, positive bool, want string) (time.Duration, bool) {
	s, ok := d.scalar(n, field, want)
	if !ok {
		return 0, false
	}
	n = resolve(n)
	s = strings.TrimSpace(s)
	if s == "-1" && noEnd {
		return -1, true
	}
	v, err := ParseDuration(s)
	switch {
	case errors.Is(err, errNoUnit):
		d.fail(n.Line, field, s, "has no unit", want)
		return 0, false
	case err != nil:
		d.fail(n.Line, field, s, "is not a duration", want)
		return 0, false
	case v == 0 && positive:
		d.fail(n.Line, field, s, "is zero", want)
		return 0, false
	}
	return v, true
}

// items returns the scalars of a list, or the scalar itself, each with its
// node for its line. Null and empty lists give none.
func (d *decoder) items(n *yaml.Node, field, want string) []*yaml.Node {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, c := range n.Content {
			c = resolve(c)
			if c.Kind != yaml.ScalarNode || isNull(c) {
				d.wrong(c, field, want)
				continue
			}
			out = append(out, c)
		}
		return out
	}
	d.wrong(n, field, want)
	return nil
}

// words splits a scalar on commas and white space.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// absPath reads an absolute path.
func (d *decoder) absPath(n *yaml.Node, field, want string) (string, bool) {
	s, ok := d.scalar(n, field, want)
	if !ok {
		return "", false
	}
	if !filepath.IsAbs(s) {
		d.fail(resolve(n).Line, field, s, "is not an absolute path", want)
		return "", false
	}
	return filepath.Clean(s), true
}

// opt is a setting that may or may not be written, with its line.
type opt[T any] struct {
	v    T
	set  bool
	line int
}

func (o *opt[T]) put(v T, n *yaml.Node) { *o = opt[T]{v: v, set: true, line: resolve(n).Line} }

// or returns o when it is set, else def.
func (o opt[T]) or(def opt[T]) opt[T] {
	if o.set {
		return o
	}
	return def
}

// get returns the value, or fallback when unset.
func (o opt[T]) get(fallback T) T {
	if o.set {
		return o.v
	}
	return fallback
}

// spec is what one jail (or defaults:) writes.
type spec struct {
	enabled    opt[bool]
	filter     opt[Filter]
	filterBad  bool
	logpath    opt[[]string]
	logpathBad bool
	containers opt[[]string]
	// bad is set when the jail's body is not a mapping at all.
	bad         bool
	maxretry    opt[int]
	findtime    opt[time.Duration]
	bantime     opt[time.Duration]
	incEnabled  opt[bool]
	factor      opt[float64]
	maxtime     opt[time.Duration]
	multipliers opt[[]float64]
	rndtime     opt[time.Duration]
	ignoreip    opt[[]netip.Prefix]
	ignoreself  opt[bool]
	ports       opt[[]firewall.PortRange]
	ipv6prefix  opt[int]
	backend     opt[string]
	journal     opt[JournalMatch]
}

// over returns s with every unset setting taken from def.
func (s spec) over(def spec) spec {
	s.enabled = s.enabled.or(def.enabled)
	if !s.filter.set && !s.filterBad {
		s.filter, s.filterBad = def.filter, def.filterBad
	}
	if !s.logpath.set && !s.logpathBad {
		s.logpath, s.logpathBad = def.logpath, def.logpathBad
	}
	s.containers = s.containers.or(def.containers)
	s.maxretry = s.maxretry.or(def.maxretry)
	s.findtime = s.findtime.or(def.findtime)
	s.bantime = s.bantime.or(def.bantime)
	s.incEnabled = s.incEnabled.or(def.incEnabled)
	s.factor = s.factor.or(def.factor)
	s.maxtime = s.maxtime.or(def.maxtime)
	s.multipliers = s.multipliers.or(def.multipliers)
	s.rndtime = s.rndtime.or(def.rndtime)
	s.ignoreip = s.ignoreip.or(def.ignoreip)
	s.ignoreself = s.ignoreself.or(def.ignoreself)
	s.ports = s.ports.or(def.ports)
	s.ipv6prefix = s.ipv6prefix.or(def.ipv6prefix)
	s.backend = s.backend.or(def.backend)
	s.journal = s.journal.or(def.journal)
	return s
}

func (d *decoder) spec(n *yaml.Node, field string) spec {
	var s spec
	if r := resolve(n); !isNull(r) && r.Kind != yaml.MappingNode {
		s.bad = true
	}
	d.mapping(n, field, "a mapping of jail settings such as logpath: and maxretry:", jailKeys, func(k string, key, val *yaml.Node) {
		f := join(field, k)
		switch k {
		case "enabled":
			if v, ok := d.boolean(val, f); ok {
				s.enabled.put(v, key)
			}
		case "filter":
			if v, ok := d.filter(val, f); ok {
				s.filter.put(v, key)
			} else {
				s.filterBad = true
			}
		case "logpath":
			if v, ok := d.logpath(val, f); ok {
				s.logpath.put(v, key)
			} else {
				s.logpathBad = true
			}
		case "containers":
			if v, ok := d.containers(val, f); ok {
				s.containers.put(v, key)
			} else {
				s.logpathBad = true
			}
		case "maxretry":
			if v, ok := d.integer(val, f, 1, 1<<20, "a whole number of at least 1, such as 5"); ok {
				s.maxretry.put(v, key)
			}
		case "findtime":
			if v, ok := d.duration(val, f, false, true, wantDuration); ok {
				s.findtime.put(v, key)
			}
		case "bantime":
			if v, ok := d.duration(val, f, true, true, wantBanTime); ok {
				s.bantime.put(v, key)
			}
		case "bantime_increment":
			d.increment(val, f, &s)
		case "ignoreip":
			if v, ok := d.ignoreIP(val, f); ok {
				s.ignoreip.put(v, key)
			}
		case "ignoreself":
			if v, ok := d.boolean(val, f); ok {
				s.ignoreself.put(v, key)
			}
		case "ports":
			if v, ok := d.ports(val, f); ok {
				s.ports.put(v, key)
			}
		case "ipv6_prefix":
			if v, ok := d.integer(val, f, 16, 128, "a prefix length from 16 to 128, such as 64"); ok {
				s.ipv6prefix.put(v, key)
			}
		case "backend":
			if v, ok := d.scalar(val, f, wantLogBackend); ok {
				if !slices.Contains(Backends, v) {
					want := wantLogBackend
					if sg := suggest(v, Backends); sg != "" {
						want = "did you mean " + sg + "?"
					}
					d.fail(resolve(val).Line, f, v, "is not a log backend", want)
				} else {
					s.backend.put(v, key)
				}
			}
		case "journalmatch":
			if v, ok := d.journalMatch(val, f); ok {
				s.journal.put(v, key)
			}
		}
	})
	return s
}

// journalMatch reads a journalmatch: one string in fail2ban's syntax, or a
// list of them (alternatives, as the lines of fail2ban's value).
func (d *decoder) journalMatch(n *yaml.Node, field string) (JournalMatch, bool) {
	n = resolve(n)
	if isNull(n) || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		d.fail(n.Line, field, "", "is empty", wantJournalMatch+"; or no journalmatch, to read every entry")
		return nil, false
	}
	var out JournalMatch
	good := true
	for _, c := range d.items(n, field, wantJournalMatch) {
		m, err := journal.ParseMatch(c.Value)
		if err == nil && len(m) == 0 {
			err = errors.New("is empty")
		}
		if err != nil {
			d.fail(c.Line, field, c.Value, err.Error(), wantJournalMatch)
			good = false
			continue
		}
		out = append(out, m...)
	}
	return out, good && len(out) > 0
}

func (d *decoder) increment(n *yaml.Node, field string, s *spec) {
	d.mapping(n, field, "a mapping such as {enabled: true, maxtime: 1w}", incrementKeys, func(k string, key, val *yaml.Node) {
		f := join(field, k)
		switch k {
		case "enabled":
			if v, ok := d.boolean(val, f); ok {
				s.incEnabled.put(v, key)
			}
		case "factor":
			if v, ok := d.number(val, f, "a number greater than 0, such as 1 or 1.5"); ok {
				s.factor.put(v, key)
			}
		case "maxtime":
			if v, ok := d.duration(val, f, false, false, wantDuration+", or 0 for no cap"); ok {
				s.maxtime.put(v, key)
			}
		case "rndtime":
			if v, ok := d.duration(val, f, false, false, wantDuration+", or 0 for none"); ok {
				s.rndtime.put(v, key)
			}
		case "multipliers":
			const want = "a list of numbers greater than 0, such as [1, 2, 4, 8]"
			val = resolve(val)
			switch {
			case val.Kind != yaml.SequenceNode:
				d.wrongKind(val, f, "a list", want)
				return
			case len(val.Content) == 0:
				d.fail(val.Line, f, "", "is an empty list", want)
				return
			}
			ms := make([]float64, 0, len(val.Content))
			good := true
			for _, c := range val.Content {
				v, ok := d.number(c, f, want)
				good = good && ok
				ms = append(ms, v)
			}
			if good {
				s.multipliers.put(ms, key)
			}
		}
	})
}

func (d *decoder) filter(n *yaml.Node, field string) (Filter, bool) {
	n = resolve(n)
	if n.Kind == yaml.MappingNode {
		var f Filter
		good := true
		d.mapping(n, field, "", filterKeys, func(k string, key, val *yaml.Node) {
			rs, ok := d.regexes(val, join(field, k))
			good = good && ok
			if k == "failregex" {
				f.FailRegex = rs
			} else {
				f.IgnoreRegex = rs
			}
		})
		if good && len(f.FailRegex) == 0 {
			d.fail(n.Line, join(field, "failregex"), "", "is missing", wantRegex)
			good = false
		}
		return f, good
	}
	s, ok := d.scalar(n, field, wantFilterName+", or a mapping with failregex:")
	if !ok {
		return Filter{}, false
	}
	if !filterRE.MatchString(s) {
		d.fail(n.Line, field, s, "is not a filter name or path", wantFilterName)
		return Filter{}, false
	}
	return Filter{Name: s}, true
}

func (d *decoder) regexes(n *yaml.Node, field string) ([]string, bool) {
	n = resolve(n)
	if isNull(n) {
		d.fail(n.Line, field, "", "is empty", wantRegex)
		return nil, false
	}
	var out []string
	good := true
	for _, c := range d.items(n, field, wantRegex) {
		if strings.TrimSpace(c.Value) == "" {
			d.fail(c.Line, field, "", "is empty", wantRegex)
			good = false
			continue
		}
		// A block scalar may hold one regex per line, as filter.d files do.
		for _, line := range strings.Split(c.Value, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
	}
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		d.fail(n.Line, field, "", "is an empty list", wantRegex)
		good = false
	}
	return out, good && len(out) > 0
}

func (d *decoder) logpath(n *yaml.Node, field string) ([]string, bool) {
	n = resolve(n)
	if isNull(n) || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		d.fail(n.Line, field, "", "is empty", wantLogPath)
		return nil, false
	}
	var out []string
	good := true
	for _, c := range d.items(n, field, wantLogPath) {
		s := strings.TrimSpace(c.Value)
		switch {
		case s == "":
			d.fail(c.Line, field, "", "is empty", wantLogPath)
			good = false
		case !filepath.IsAbs(s):
			d.fail(c.Line, field, s, "is not an absolute path", wantLogPath)
			good = false
		default:
			if _, err := filepath.Match(s, ""); err != nil {
				d.fail(c.Line, field, s, "is not a valid glob", wantLogPath)
				good = false
				continue
			}
			out = append(out, filepath.Clean(s))
		}
	}
	return out, good && len(out) > 0
}

func (d *decoder) containers(n *yaml.Node, field string) ([]string, bool) {
	n = resolve(n)
	if isNull(n) || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		d.fail(n.Line, field, "", "is empty", wantContainers)
		return nil, false
	}
	var out []string
	good := true
	for _, c := range d.items(n, field, wantContainers) {
		v := strings.TrimSpace(c.Value)
		if _, err := docker.ParseSelector(v); err != nil {
			d.fail(c.Line, field, v, "is not a container selector: "+err.Error(), wantContainers)
			good = false
			continue
		}
		out = append(out, v)
	}
	return out, good && len(out) > 0
}

func (d *decoder) ignoreIP(n *yaml.Node, field string) ([]netip.Prefix, bool) {
	out := []netip.Prefix{}
	good := true
	for _, c := range d.items(n, field, wantIgnoreIP) {
		for _, w := range words(c.Value) {
			p, err := netaddr.ParsePrefix(w)
			if err != nil {
				d.fail(c.Line, field, w, "is not an address or CIDR prefix", wantIgnoreIP)
				good = false
				continue
			}
			out = append(out, p)
		}
	}
	return out, good
}

// services are the service names accepted in ports:, as fail2ban's jails
// write them (port = ssh). moat reads no /etc/services: the list is fixed.
var services = map[string]uint16{
	"ftp": 21, "ssh": 22, "smtp": 25, "domain": 53, "http": 80, "pop3": 110,
	"imap": 143, "https": 443, "smtps": 465, "submission": 587, "imaps": 993,
	"pop3s": 995, "mysql": 3306, "postgresql": 5432,
}

func (d *decoder) ports(n *yaml.Node, field string) ([]firewall.PortRange, bool) {
	var out []firewall.PortRange
	good := true
	for _, c := range d.items(n, field, wantPort) {
		for _, w := range words(c.Value) {
			r, problem := parsePortRange(w)
			if problem != "" {
				d.fail(c.Line, field, w, problem, wantPort)
				good = false
				continue
			}
			out = append(out, r)
		}
	}
	return firewall.MergePorts(out), good
}

// parsePortRange reads "22", "8000-8100", "8000:8100" or a service name;
// on failure it says what is wrong.
func parsePortRange(s string) (firewall.PortRange, string) {
	if p, ok := services[strings.ToLower(s)]; ok {
		return firewall.PortRange{First: p, Last: p}, ""
	}
	first, last, isRange := strings.Cut(s, "-")
	if !isRange {
		first, last, isRange = strings.Cut(s, ":")
	}
	if !isRange {
		last = first
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(first), 10, 64)
	b, err2 := strconv.ParseUint(strings.TrimSpace(last), 10, 64)
	switch {
	case err1 != nil || err2 != nil:
		if isRange {
			return firewall.PortRange{}, "is not a port range"
		}
		return firewall.PortRange{}, "is not a port number or a known service name"
	case a < 1 || b < 1 || a > 65535 || b > 65535:
		return firewall.PortRange{}, "is out of range"
	case b < a:
		return firewall.PortRange{}, "ends before it starts"
	}
	return firewall.PortRange{First: uint16(a), Last: uint16(b)}, ""
}

// listenAddr checks a host:port to listen on: an IP literal, localhost, or
// an empty host (every address).
func listenAddr(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return false
	}
	if host == "" || host == "localhost" {
		return true
	}
	_, err = netip.ParseAddr(host)
	return err == nil
}

// DefaultStateDir is state_dir when the configuration does not set it:
// /var/lib/moat for root, else $XDG_STATE_HOME/moat, else
// ~/.local/state/moat; "" when none of these can be worked out.
func DefaultStateDir(env Env) string {
	switch {
	case env.Root:
		return "/var/lib/moat"
	case filepath.IsAbs(env.XDGStateHome):
		return filepath.Join(env.XDGStateHome, "moat")
	case filepath.IsAbs(env.Home):
		return filepath.Join(env.Home, ".local", "state", "moat")
	}
	return ""
}

// DefaultSocket is socket when the configuration sets neither it nor
// state_dir, and so where the CLI looks for the daemon by default:
// /run/moat/moat.sock for root, else $XDG_RUNTIME_DIR/moat/moat.sock, else
// moat.sock in DefaultStateDir. It is /run/moat/moat.sock when nothing else
// can be worked out.
func DefaultSocket(env Env) string {
	if s := socketFor(env, DefaultStateDir(env)); s != "" {
		return s
	}
	return "/run/moat/moat.sock"
}

func socketFor(env Env, stateDir string) string {
	switch {
	case env.Root:
		return "/run/moat/moat.sock"
	case filepath.IsAbs(env.XDGRuntimeDir):
		return filepath.Join(env.XDGRuntimeDir, "moat", "moat.sock")
	case stateDir != "":
		return filepath.Join(stateDir, "moat.sock")
	}
	return ""
}

// parse is Parse's body: the errors go to d.
func (d *decoder) parse(data []byte, opts Options) *Config {
	root := d.document(data)
	if root == nil {
		return nil
	}
	cfg := &Config{File: d.file}
	var (
		stateDir, socket, backend, table opt[string]
		check                            opt[time.Duration]
		defaults                         spec
		jailsKey, jailsNode              *yaml.Node
	)
	d.mapping(root, "", "a mapping of settings such as jails:", topKeys, func(k string, key, val *yaml.Node) {
		switch k {
		case "state_dir":
			if v, ok := d.absPath(val, k, wantStateDir); ok {
				stateDir.put(v, key)
			}
		case "socket":
			if v, ok := d.absPath(val, k, wantSocket); ok {
				if len(v) > maxSocketPath {
					d.fail(resolve(val).Line, k, v, fmt.Sprintf("is longer than the %d bytes a unix socket path may have", maxSocketPath), wantSocket)
				} else {
					socket.put(v, key)
				}
			}
		case "firewall":
			d.mapping(val, k, "a mapping such as {backend: auto}", firewallKeys, func(k2 string, key2, val2 *yaml.Node) {
				f := join(k, k2)
				switch k2 {
				case "backend":
					if v, ok := d.scalar(val2, f, wantBackend); ok {
						if backends := []string{"auto", "nftables", "none"}; !slices.Contains(backends, v) {
							want := wantBackend
							if s := suggest(v, backends); s != "" {
								want = "did you mean " + s + "?"
							}
							d.fail(resolve(val2).Line, f, v, "is not a firewall backend", want)
						} else {
							backend.put(v, key2)
						}
					}
				case "table":
					if v, ok := d.scalar(val2, f, wantTableName); ok {
						if !tableNameRE.MatchString(v) {
							d.fail(resolve(val2).Line, f, v, "is not a table name", wantTableName)
						} else {
							table.put(v, key2)
						}
					}
				case "check":
					if v, ok := d.duration(val2, f, false, true, "a duration such as 1s or 10s"); ok {
						check.put(v, key2)
					}
				}
			})
		case "metrics":
			d.mapping(val, k, "a mapping such as {listen: 127.0.0.1:9477}", metricsKeys, func(k2 string, key2, val2 *yaml.Node) {
				f := join(k, k2)
				val2 = resolve(val2)
				const want = "host:port such as 127.0.0.1:9477 or [::1]:9477, or empty for no metrics"
				if isNull(val2) || (val2.Kind == yaml.ScalarNode && val2.Value == "") {
					return
				}
				v, ok := d.scalar(val2, f, want)
				if !ok {
					return
				}
				if !listenAddr(v) {
					d.fail(val2.Line, f, v, "is not an address to listen on", want)
					return
				}
				cfg.Metrics.Listen = v
			})
		case "proxy":
			cfg.Proxy = d.proxySection(key, val)
		case "docker":
			d.mapping(val, k, "a mapping such as {root: /var/lib/docker}", dockerKeys, func(k2 string, key2, val2 *yaml.Node) {
				if v, ok := d.absPath(val2, join(k, k2), "an absolute path such as /var/lib/docker"); ok {
					cfg.Docker.Root = v
				}
			})
		case "fail2ban":
			if v, ok := d.absPath(val, k, "the absolute path of a fail2ban configuration directory such as /etc/fail2ban"); ok {
				cfg.Fail2ban = v
			}
		case "defaults":
			defaults = d.spec(val, k)
		case "jails":
			jailsKey, jailsNode = key, val
		}
	})

	env := opts.Env
	if stateDir.set {
		cfg.StateDir = stateDir.v
	} else if cfg.StateDir = DefaultStateDir(env); cfg.StateDir == "" {
		d.fail(0, "state_dir", "", "has no default: not root, and neither $XDG_STATE_HOME nor $HOME is an absolute path", "state_dir: set to a directory moat may write")
	}
	switch {
	case socket.set:
		cfg.Socket = socket.v
	case cfg.StateDir != "":
		cfg.Socket = socketFor(env, cfg.StateDir)
		if len(cfg.Socket) > maxSocketPath {
			d.fail(stateDir.line, "socket", cfg.Socket, fmt.Sprintf("(the default) is longer than the %d bytes a unix socket path may have", maxSocketPath), "socket: set to a shorter path")
		}
	}
	defBackend := "auto"
	if !env.Root {
		defBackend = "none"
	}
	cfg.Firewall = Firewall{
		Backend: backend.get(defBackend),
		Table:   table.get(DefaultTable),
		Check:   check.get(DefaultCheck),
	}

	if cfg.Docker.Root == "" {
		cfg.Docker.Root = DefaultDockerRoot
	}
	if opts.Fail2ban != "" {
		cfg.Fail2ban = opts.Fail2ban
	}
	// With a fail2ban directory or a proxy, the jails may all come from
	// there.
	if root.Kind == yaml.MappingNode && (jailsKey != nil || cfg.Fail2ban == "" && cfg.Proxy == nil) {
		d.jails(cfg, jailsKey, jailsNode, defaults, opts)
	}
	if cfg.Proxy != nil {
		cfg.Proxy.StateDir = cfg.StateDir
		d.proxyJail(cfg, defaults)
	}
	return cfg
}

// proxyJail adds the proxy's jail, with the defaults, when the jails do
// not configure it (a disabled one stays out: the proxy then bans nobody).
func (d *decoder) proxyJail(cfg *Config, defaults spec) {
	for _, j := range cfg.Jails {
		if j.Name == proxyconfig.DefaultJail {
			return
		}
	}
	if d.disabled[proxyconfig.DefaultJail] {
		return
	}
	j := Jail{Line: cfg.Proxy.Line}
	j.Name = proxyconfig.DefaultJail
	j.MaxRetry = defaults.maxretry.get(DefaultMaxRetry)
	j.FindTime = defaults.findtime.get(DefaultFindTime)
	j.BanTime = defaults.bantime.get(DefaultBanTime)
	j.Increment.Enabled = defaults.incEnabled.get(false)
	j.Increment.Factor = defaults.factor.get(1)
	j.Increment.MaxTime = defaults.maxtime.get(0)
	j.Increment.Multipliers = slices.Clone(defaults.multipliers.get(nil))
	j.Increment.RndTime = defaults.rndtime.get(0)
	j.IgnoreIP = slices.Clone(defaults.ignoreip.get(nil))
	j.IgnoreSelf = defaults.ignoreself.get(true)
	j.IPv6Prefix = defaults.ipv6prefix.get(proxyIPv6Prefix(cfg.Proxy))
	j.Ports = slices.Clone(defaults.ports.get(nil))
	cfg.Jails = append(cfg.Jails, j)
}

// proxyIPv6Prefix is the proxy jail's ipv6_prefix when neither it nor
// defaults: sets one: the prefix the proxy's limiters key clients by, so
// that a /64 limited as one client is banned as one.
func proxyIPv6Prefix(p *proxyconfig.Config) int {
	if p.IPv6Prefix != 0 {
		return p.IPv6Prefix
	}
	return proxyconfig.DefaultIPv6Prefix
}

func (d *decoder) jails(cfg *Config, key, n *yaml.Node, defaults spec, opts Options) {
	const want = "at least one jail, such as sshd: {logpath: /var/log/auth.log}"
	if key == nil {
		d.fail(1, "jails", "", "is missing", want)
		return
	}
	// With a fail2ban directory or a proxy, the jails may all come from
	// there.
	optional := cfg.Fail2ban != "" || cfg.Proxy != nil
	n = resolve(n)
	if isNull(n) || (n.Kind == yaml.MappingNode && len(n.Content) == 0) {
		if !optional {
			d.fail(key.Line, "jails", "", "is empty", want)
		}
		return
	}
	total := 0
	d.mapping(n, "jails", "a mapping from jail names to their settings", nil, func(name string, nameNode, val *yaml.Node) {
		total++
		field := join("jails", name)
		nameOK := jailNameRE.MatchString(name)
		if !nameOK {
			d.fail(nameNode.Line, "jails", name, "is not a valid jail name", wantJailName)
		}
		s := d.spec(val, field).over(defaults)
		j := Jail{Line: nameNode.Line}
		j.Name = name
		j.MaxRetry = s.maxretry.get(DefaultMaxRetry)
		j.FindTime = s.findtime.get(DefaultFindTime)
		j.BanTime = s.bantime.get(DefaultBanTime)
		j.Increment.Enabled = s.incEnabled.get(false)
		j.Increment.Factor = s.factor.get(1)
		j.Increment.MaxTime = s.maxtime.get(0)
		j.Increment.Multipliers = slices.Clone(s.multipliers.get(nil))
		j.Increment.RndTime = s.rndtime.get(0)
		j.IgnoreIP = slices.Clone(s.ignoreip.get(nil))
		j.IgnoreSelf = s.ignoreself.get(true)
		j.IPv6Prefix = s.ipv6prefix.get(DefaultIPv6Prefix)
		if cfg.Proxy != nil && name == proxyconfig.DefaultJail {
			j.IPv6Prefix = s.ipv6prefix.get(proxyIPv6Prefix(cfg.Proxy))
		}
		j.Ports = slices.Clone(s.ports.get(nil))
		j.LogPath = slices.Clone(s.logpath.get(nil))
		// The proxy's jail counts rate-limit rejections; a log is optional.
		proxyJail := cfg.Proxy != nil && name == proxyconfig.DefaultJail && !s.logpath.set && !s.containers.set
		if proxyJail && s.filter.set && !s.filterBad {
			d.fail(s.filter.line, join(field, "filter"), s.filter.v.Name, "is set without logpath", "logpath: the log the filter reads, such as the proxy's access_log")
		}
		if !proxyJail {
			d.source(&j, s, field, nameNode.Line, opts)
		}
		j.Containers = slices.Clone(s.containers.get(nil))
		filterLine := s.filter.line
		j.Filter = s.filter.get(Filter{Name: name})
		if !s.filter.set {
			filterLine = nameNode.Line
		}
		j.Filter.FailRegex = slices.Clone(j.Filter.FailRegex)
		j.Filter.IgnoreRegex = slices.Clone(j.Filter.IgnoreRegex)
		if proxyJail {
			j.Filter = Filter{}
		}
		if j.Journal {
			j.Filter.LogType = "journal"
		}
		if !s.enabled.get(true) {
			d.disabled[name] = true
			return
		}
		if opts.CheckFilter != nil && !s.filterBad && nameOK && !proxyJail {
			if err := opts.CheckFilter(j.Filter); err != nil {
				want := wantFilterName + ", or a mapping with failregex:"
				problem := "cannot be loaded: " + err.Error()
				if !s.filter.set {
					problem = "(the jail's name, used as its filter when filter: is not set) " + problem
				}
				d.fail(filterLine, join(field, "filter"), j.Filter.Name, problem, want)
				d.errs[len(d.errs)-1].Err = err
			}
		}
		cfg.Jails = append(cfg.Jails, j)
	})
	if total > 0 && len(cfg.Jails) == 0 && !optional {
		d.fail(key.Line, "jails", "", "are all disabled", "at least one jail without enabled: false")
	}
}

// source sets where jail j's lines come from (its backend, journal match
// and whether it reads the journal) from s, and checks that the settings
// agree: a jail reading files needs logpath or containers, a systemd jail
// reads no files, and only a jail that may read the journal has a
// journalmatch. line is the line of the jail's name.
func (d *decoder) source(j *Jail, s spec, field string, line int, opts Options) {
	j.Backend = s.backend.get("")
	j.JournalMatch = slices.Clone(s.journal.get(nil))
	j.Journal = UsesJournal(j.Backend, j.LogPath, opts.LogExists)
	backend := "backend: " + j.Backend
	if j.Backend == "" {
		backend = "no backend:"
	}
	switch j.Backend {
	case "", BackendPolling, BackendPyinotify:
		if !s.logpath.set && !s.containers.set && !s.logpathBad && !s.bad {
			d.fail(line, join(field, "logpath"), "", "is missing", wantLogPath+"; or containers:")
		}
		if s.journal.set {
			d.fail(s.journal.line, join(field, "journalmatch"), "", "is set, but with "+backend+" the jail reads files",
				"backend: systemd, or backend: auto to read the files when they exist and the journal otherwise; or no journalmatch")
		}
		return
	case BackendSystemd:
		if s.logpath.set {
			d.fail(s.logpath.line, join(field, "logpath"), "", "is set, but with backend: systemd the jail reads the journal, not files",
				"backend: auto, to read the files when they exist and the journal otherwise; or no logpath")
		}
	}
	if !s.journal.set && s.enabled.get(true) {
		d.warns = append(d.warns, &Error{File: d.file, Line: line, Field: field,
			Problem: "has " + backend + " and no journalmatch: when it reads the journal, its filter sees every entry",
			Want:    "journalmatch: such as _SYSTEMD_UNIT=ssh.service, to read one service's entries"})
	}
}
