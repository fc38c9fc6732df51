// Package fail2ban reads an existing fail2ban configuration directory
// (jail.conf, jail.d, jail.local, paths-*.conf) with fail2ban's precedence
// and interpolation, and turns its enabled jails into moat jails. It reads
// files only: it must not touch the network or the firewall, and it never
// resolves host names. Options moat does not carry out (mail actions,
// ignorecommand, usedns lookups) come back as warnings, so the daemon can
// report each once; the jail still runs. It loads each enabled jail's
// filter (from filter.d, then moat's built-ins) for its journalmatch.
package fail2ban

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail/jailconfig"

	"github.com/moatproj/moat/sources/journal"
)

// Options adjusts Load.
type Options struct {
	// IPv6Prefix is the prefix length IPv6 addresses are banned by in every
	// jail (fail2ban has no such setting); 0 means configs.DefaultIPv6Prefix.
	IPv6Prefix int
	// Version is what %(fail2ban_version)s expands to; empty means "1.0.2".
	Version string
	// LogExists says whether a logpath pattern names an existing file, for
	// the auto backend; nil means configs.LogExists.
	LogExists func(pattern string) bool
}

// Server defaults fail2ban applies when jail.conf leaves an option unset.
const (
	defaultMaxRetry = 3
	defaultFindTime = 600 * time.Second
	defaultBanTime  = 600 * time.Second
)

// Jail is one enabled jail's effective configuration: moat's settings
// (configs.Jail) plus the fail2ban options they were derived from.
//
// Where its lines come from is configs.Jail's: Backend is fail2ban's
// backend option without its [options] ("auto", "polling", "pyinotify",
// "gamin", "systemd"); LogPath is empty for systemd, whose jails fail2ban
// gives no log files; Journal is set for systemd, and for auto when no
// logpath pattern matches a file (where fail2ban's auto refuses to start
// the jail: it picks among the file backends only); JournalMatch is the
// jail's journalmatch when the jail or [DEFAULT] sets one (even empty:
// every entry), else its filter's, as fail2ban hands it to the server
// whatever the backend; Filter.LogType is "journal" or "file" accordingly,
// the logtype fail2ban gives the filter.
type Jail struct {
	configs.Jail
	// FilterName and FilterOptions split Filter.Name: "sshd[mode=normal]"
	// is "sshd" with {mode: normal}.
	FilterName    string
	FilterOptions map[string]string
	// Port is the port option as the ban action receives it ("ssh,2222");
	// Ports is its parsed form (nil: every port, as for *-allports actions).
	Port string
	// Protocol is fail2ban's protocol option; moat's bans cover TCP and UDP.
	Protocol string
	// BanAction is the banaction option; moat carries it out with nftables.
	BanAction string
	// File is the file whose [name] section first defined the jail; Line
	// (in configs.Jail) is that section header's line.
	File string
	// EnabledAt is where the jail was enabled: "file:line" of the
	// enabled = true that applies.
	EnabledAt string
}

// Warning is one option moat reads but does not carry out, or a value it
// skipped; the jail still runs.
type Warning struct {
	Jail   string
	Option string
	Value  string
	Reason string
}

// String is the warning as one log line: "jail J: option = value: reason".
func (w Warning) String() string {
	return fmt.Sprintf("jail %s: %s = %s: %s", w.Jail, w.Option, w.Value, w.Reason)
}

// Result is what Load read.
type Result struct {
	// Dir is the configuration directory.
	Dir string
	// Files lists the files read, in the order they were merged.
	Files []string
	// Jails are the enabled jails in fail2ban's order (first appearance of
	// each section).
	Jails []Jail
	// Warnings list options not carried out, one per jail and option value.
	Warnings []Warning
}

// Load reads dir as fail2ban-client does: jail.conf, jail.d/*.conf
// (sorted), jail.local, jail.d/*.local (sorted), each with the files its
// [INCLUDES] name (jail.conf's paths-debian.conf, with .local overrides), and
// returns the enabled jails. Errors name the file and line. Load reads only
// files; it is safe to call concurrently.
func Load(dir string, opts Options) (*Result, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("read fail2ban config: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("read fail2ban config %s: not a directory", dir)
	}
	top := []string{filepath.Join(dir, "jail.conf")}
	confs, _ := filepath.Glob(filepath.Join(dir, "jail.d", "*.conf"))
	top = append(top, confs...)
	top = append(top, filepath.Join(dir, "jail.local"))
	locals, _ := filepath.Glob(filepath.Join(dir, "jail.d", "*.local"))
	top = append(top, locals...)
	var existing []string
	for _, f := range top {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			existing = append(existing, f)
		}
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("read fail2ban config %s: no jail.conf, jail.local or jail.d/*.conf: %w", dir, fs.ErrNotExist)
	}
	doc, files, err := readINI(existing)
	if err != nil {
		return nil, fmt.Errorf("read fail2ban config: %w", err)
	}
	version := opts.Version
	if version == "" {
		version = "1.0.2"
	}
	doc.setDefault("fail2ban_version", version)
	doc.setDefault("fail2ban_confpath", strings.TrimRight(dir, "/"))
	res := &Result{Dir: dir, Files: files}
	for _, name := range doc.Sections() {
		if name == "INCLUDES" || strings.HasPrefix(name, "KNOWN/") {
			continue
		}
		en, _, err := doc.get(name, "enabled")
		if err != nil {
			return nil, fmt.Errorf("read fail2ban config: %w", err)
		}
		if !asBool(en) {
			continue
		}
		j, warns, err := buildJail(doc, dir, name, opts)
		if err != nil {
			return nil, fmt.Errorf("read fail2ban config: jail %s: %w", name, err)
		}
		res.Jails = append(res.Jails, j)
		res.Warnings = append(res.Warnings, warns...)
	}
	return res, nil
}

// asBool is fail2ban's reading of a boolean.
func asBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "on", "true", "yes":
		return true
	}
	return false
}

// jailBuilder collects one jail's values and warnings.
type jailBuilder struct {
	doc   *document
	name  string
	warns []Warning
	err   error
}

func (b *jailBuilder) warn(opt, val, reason string) {
	b.warns = append(b.warns, Warning{Jail: b.name, Option: opt, Value: val, Reason: reason})
}

// get returns an option's interpolated value ("" when unset).
func (b *jailBuilder) get(opt string) (string, bool) {
	v, ok, err := b.doc.get(b.name, opt)
	if err != nil && b.err == nil {
		b.err = err
	}
	return v, ok
}

// fail records a bad value, naming where it was set.
func (b *jailBuilder) fail(opt, val, want string) {
	if b.err != nil {
		return
	}
	v, _ := b.doc.raw(b.name, opt)
	b.err = fmt.Errorf("%s:%d: %s = %q: want %s", v.file, v.line, opt, val, want)
}

func (b *jailBuilder) duration(opt string, def time.Duration) time.Duration {
	s, ok := b.get(opt)
	if !ok {
		return def
	}
	d, err := ParseDuration(s)
	if err != nil {
		b.fail(opt, s, "a time such as 600, 10m, 1h, 1d, 1w or -1")
		return def
	}
	return d
}

func buildJail(doc *document, dir, name string, opts Options) (Jail, []Warning, error) {
	b := &jailBuilder{doc: doc, name: name}
	sec := doc.Section(name)
	j := Jail{File: sec.File}
	if v, ok := doc.raw(name, "enabled"); ok {
		j.EnabledAt = fmt.Sprintf("%s:%d", v.file, v.line)
	}
	j.Name = name
	j.Line = sec.Line
	j.IPv6Prefix = opts.IPv6Prefix
	if j.IPv6Prefix == 0 {
		j.IPv6Prefix = configs.DefaultIPv6Prefix
	}

	// Filter.
	if f, _ := b.get("filter"); strings.TrimSpace(f) != "" {
		fname, fopts, err := parseSpec(strings.TrimSpace(f))
		if err != nil {
			b.fail("filter", f, "a filter name with options such as sshd[mode=normal]")
		}
		j.Filter = configs.Filter{Name: strings.TrimSpace(f)}
		j.FilterName, j.FilterOptions = fname, fopts
	} else {
		b.warn("filter", "", "no filter set: the jail finds no failures")
	}

	// Where the log comes from.
	b.source(&j, dir, opts)

	// Thresholds and times.
	j.MaxRetry = defaultMaxRetry
	if s, ok := b.get("maxretry"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.fail("maxretry", s, "a whole number of at least 1")
		}
		j.MaxRetry = n
	}
	j.FindTime = b.duration("findtime", defaultFindTime)
	if j.FindTime <= 0 && b.err == nil {
		b.fail("findtime", fmt.Sprint(j.FindTime), "a positive time")
	}
	j.BanTime = b.duration("bantime", defaultBanTime)
	if j.BanTime < 0 {
		j.BanTime = -time.Second
	}

	// Escalation.
	inc := jailconfig.Increment{Factor: 1}
	if s, ok := b.get("bantime.increment"); ok {
		inc.Enabled = asBool(s)
	}
	if s, ok := b.get("bantime.factor"); ok && strings.TrimSpace(s) != "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || f <= 0 {
			b.fail("bantime.factor", s, "a number greater than 0")
		}
		inc.Factor = f
	}
	if s, ok := b.get("bantime.multipliers"); ok && strings.TrimSpace(s) != "" {
		for _, w := range splitWords(s) {
			f, err := strconv.ParseFloat(w, 64)
			if err != nil || f < 0 {
				b.fail("bantime.multipliers", s, "numbers separated by spaces, such as 1 2 4 8 16")
				break
			}
			inc.Multipliers = append(inc.Multipliers, f)
		}
	}
	if s, ok := b.get("bantime.maxtime"); ok && strings.TrimSpace(s) != "" {
		inc.MaxTime = b.duration("bantime.maxtime", 0)
	}
	if s, ok := b.get("bantime.rndtime"); ok && strings.TrimSpace(s) != "" {
		inc.RndTime = b.duration("bantime.rndtime", 0)
	}
	if inc.Enabled {
		if s, ok := b.get("bantime.formula"); ok && strings.TrimSpace(s) != "" && len(inc.Multipliers) == 0 {
			b.warn("bantime.formula", s, "moat does not evaluate Python formulas: bans grow by doubling (set bantime.multipliers instead)")
		}
		if s, ok := b.get("bantime.overalljails"); ok && asBool(s) {
			b.warn("bantime.overalljails", s, "moat counts repeat bans per jail")
		}
	}
	j.Increment = inc

	// Who is never banned.
	j.IgnoreSelf = true
	if s, ok := b.get("ignoreself"); ok {
		j.IgnoreSelf = asBool(s)
	}
	if s, ok := b.get("ignoreip"); ok {
		j.IgnoreIP = b.ignoreIP(s)
	}
	if s, ok := b.get("ignorecommand"); ok && strings.TrimSpace(s) != "" {
		b.warn("ignorecommand", strings.TrimSpace(s), "moat runs no commands to decide whom to ignore")
	}
	if s, ok := b.get("usedns"); ok && strings.EqualFold(strings.TrimSpace(s), "yes") {
		b.warn("usedns", "yes", "moat does not resolve host names found in logs")
	}

	// How bans are enforced.
	j.Protocol, _ = b.get("protocol")
	j.Protocol = strings.TrimSpace(j.Protocol)
	ba, _ := b.get("banaction")
	j.BanAction = strings.TrimSpace(ba)
	j.Port, _ = b.get("port")
	j.Port = strings.TrimSpace(j.Port)
	allPorts := strings.HasSuffix(j.BanAction, "allports")
	if act, ok := b.get("action"); ok {
		actions, err := splitActions(act)
		if err != nil {
			b.fail("action", act, "actions such as iptables-multiport[port=ssh]")
		}
		baName, _, _ := parseSpec(j.BanAction)
		allName := ""
		if s, ok := b.get("banaction_allports"); ok {
			allName, _, _ = parseSpec(strings.TrimSpace(s))
		}
		bans := 0
		for _, a := range actions {
			an, aopts, err := parseSpec(a)
			if err != nil {
				b.fail("action", a, "an action such as iptables-multiport[port=ssh]")
				continue
			}
			if an == baName || an == allName || isBanAction(an) {
				bans++
				if p, ok := aopts["port"]; ok {
					j.Port = p
				}
				if strings.HasSuffix(an, "allports") {
					allPorts = true
				}
				continue
			}
			b.warn("action", an, "moat carries out bans with nftables only; this action is not run")
		}
		if bans == 0 && len(actions) > 0 {
			b.warn("action", strings.Join(actions, " "), "no firewall action: moat bans with nftables anyway")
		}
	}
	if !allPorts && j.Port != "" {
		ports, err := ParsePorts(j.Port)
		if err != nil {
			b.warn("port", j.Port, err.Error()+": the ban covers every port")
		}
		j.Ports = ports
	}

	// Filter settings moat takes from the filter file only.
	for _, opt := range []string{"failregex", "ignoreregex", "prefregex", "datepattern", "maxlines", "logtimezone"} {
		if v, ok := doc.own(name, opt); ok {
			b.warn(opt, v.text, "set in the jail section: moat reads it from the filter file only")
		}
	}
	return j, b.warns, b.err
}

// source sets where j's lines come from: its backend, log paths, whether
// it reads the journal, the journal match and the filter's logtype.
func (b *jailBuilder) source(j *Jail, dir string, opts Options) {
	j.Backend = configs.BackendAuto
	if v, ok := b.get("backend"); ok && strings.TrimSpace(v) != "" {
		raw := strings.TrimSpace(v)
		name, bopts, err := parseSpec(raw)
		name = strings.ToLower(name)
		switch {
		case err != nil || !slices.Contains(backends, name):
			b.fail("backend", raw, "auto, pyinotify, gamin, polling or systemd")
		case len(bopts) > 0:
			b.warn("backend", raw, "backend options are not carried out: moat reads the files, or the system's journal, itself")
		}
		j.Backend = name
	}
	if j.Backend != configs.BackendSystemd {
		if lp, ok := b.get("logpath"); ok {
			for _, l := range strings.Split(lp, "\n") {
				l = strings.TrimSpace(l)
				if i := strings.LastIndexAny(l, " \t"); i >= 0 && (l[i+1:] == "head" || l[i+1:] == "tail") {
					l = strings.TrimSpace(l[:i])
				}
				if l != "" {
					j.LogPath = append(j.LogPath, l)
				}
			}
		}
		if len(j.LogPath) == 0 && j.Backend != configs.BackendAuto {
			b.warn("logpath", "", "no logpath set: the jail has no log to follow")
		}
	}
	exists := opts.LogExists
	if exists == nil {
		exists = configs.LogExists
	}
	j.Journal = configs.UsesJournal(j.Backend, j.LogPath, exists)
	j.Filter.LogType = "file"
	if j.Journal {
		j.Filter.LogType = "journal"
	}

	// The journal match: the jail's (or [DEFAULT]'s) when set, even empty,
	// else the filter's; fail2ban hands it over whatever the backend.
	match, own := b.get("journalmatch")
	where := ""
	if !own && j.Filter.Name != "" {
		loader := &filters.Loader{Dirs: []string{filepath.Join(dir, "filter.d")}}
		f, err := loader.LoadLogType(j.Filter.Name, j.Filter.LogType)
		if err != nil {
			return // the caller compiles the filter and reports why it cannot
		}
		if match, err = f.JournalMatch(); err != nil && b.err == nil {
			b.err = fmt.Errorf("filter %s: %w", j.Filter.Name, err)
			return
		}
		where = " (from filter " + j.Filter.Name + ")"
	}
	m, err := journal.ParseMatch(match)
	switch {
	case err != nil && own:
		b.fail("journalmatch", match, "FIELD=value matches such as _SYSTEMD_UNIT=sshd.service, with + between alternatives (this one "+err.Error()+")")
	case err != nil && b.err == nil:
		b.err = fmt.Errorf("journalmatch = %q%s: %w", match, where, err)
	}
	j.JournalMatch = m
}

// backends are the backend names fail2ban 1.0 knows.
var backends = []string{"auto", "pyinotify", "gamin", "polling", "systemd"}

// ignoreIP reads ignoreip: addresses and CIDR prefixes separated by spaces
// or commas, and file:PATH entries naming a file of them ('#' comments).
func (b *jailBuilder) ignoreIP(s string) []netip.Prefix {
	var out []netip.Prefix
	var add func(words []string, depth int)
	add = func(words []string, depth int) {
		for _, w := range words {
			if path, ok := strings.CutPrefix(w, "file:"); ok {
				data, err := os.ReadFile(path)
				if err != nil || depth > 0 {
					b.warn("ignoreip", w, fmt.Sprintf("read ignore list: %v", err))
					continue
				}
				var fw []string
				for _, line := range strings.Split(string(data), "\n") {
					line, _, _ = strings.Cut(line, "#")
					fw = append(fw, splitWords(line)...)
				}
				add(fw, depth+1)
				continue
			}
			p, err := netaddr.ParsePrefix(w)
			if err != nil {
				b.warn("ignoreip", w, "not an address or CIDR prefix: moat does not resolve host names, the entry is skipped")
				continue
			}
			out = append(out, p)
		}
	}
	add(splitWords(s), 0)
	return out
}

// banActionPrefixes name fail2ban actions that block addresses in a
// firewall; moat carries them out with nftables.
var banActionPrefixes = []string{"iptables", "ip6tables", "nftables", "firewallcmd", "ufw", "shorewall", "ipset", "route", "pf", "ipfw", "bsd-ipfw", "npf", "apf", "hostsdeny"}

func isBanAction(name string) bool {
	for _, p := range banActionPrefixes {
		if name == p || strings.HasPrefix(name, p+"-") {
			return true
		}
	}
	return false
}

// parseSpec splits "name[k=v, k2="v 2"]" into its name and options
// (fail2ban's extractOptions); values may be quoted with ' or ".
// "name[a=1][b=2]" is read as one option list.
func parseSpec(s string) (string, map[string]string, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, '[')
	if i < 0 {
		if s == "" {
			return "", nil, errors.New("empty name")
		}
		return s, nil, nil
	}
	name := strings.TrimSpace(s[:i])
	if name == "" {
		return "", nil, errors.New("empty name")
	}
	rest := strings.TrimSpace(s[i:])
	if !strings.HasSuffix(rest, "]") {
		return "", nil, fmt.Errorf("options %q: want [key=value, ...]", rest)
	}
	body := rest[1 : len(rest)-1]
	opts := map[string]string{}
	for p := 0; p < len(body); {
		for p < len(body) && (body[p] == ' ' || body[p] == '\t' || body[p] == '\n' || body[p] == ',') {
			p++
		}
		if p >= len(body) {
			break
		}
		if body[p] == ']' { // "][" between option groups
			q := strings.IndexByte(body[p:], '[')
			if q < 0 {
				return "", nil, fmt.Errorf("options %q: want [key=value, ...]", rest)
			}
			p += q + 1
			continue
		}
		eq := strings.IndexByte(body[p:], '=')
		if eq < 0 {
			return "", nil, fmt.Errorf("options %q: %q has no '='", rest, body[p:])
		}
		key := strings.TrimSpace(body[p : p+eq])
		p += eq + 1
		var val string
		if p < len(body) && (body[p] == '"' || body[p] == '\'') {
			q := strings.IndexByte(body[p+1:], body[p])
			if q < 0 {
				return "", nil, fmt.Errorf("options %q: unterminated quote", rest)
			}
			val = body[p+1 : p+1+q]
			p += q + 2
		} else {
			e := strings.IndexAny(body[p:], ",]")
			if e < 0 {
				e = len(body) - p
			}
			val = strings.TrimSpace(body[p : p+e])
			p += e
		}
		if key == "" {
			return "", nil, fmt.Errorf("options %q: empty key", rest)
		}
		opts[key] = strings.TrimSpace(val)
	}
	return name, opts, nil
}

// splitActions splits an action value into single actions: names with
// optional [options], separated by whitespace or newlines; brackets and
// quotes inside options are respected.
func splitActions(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		for i < len(s) && strings.ContainsRune(" \t\n\r", rune(s[i])) {
			i++
		}
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && !strings.ContainsRune(" \t\n\r[", rune(s[i])) {
			i++
		}
		// Options may follow after spaces.
		j := i
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		for j < len(s) && s[j] == '[' {
			var quote byte
			k := j + 1
			for ; k < len(s); k++ {
				c := s[k]
				if quote != 0 {
					if c == quote {
						quote = 0
					}
					continue
				}
				if c == '"' || c == '\'' {
					quote = c
				} else if c == ']' {
					break
				}
			}
			if k >= len(s) {
				return nil, fmt.Errorf("action %q: unterminated [", s[start:])
			}
			i = k + 1
			j = i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
		}
		out = append(out, s[start:i])
	}
	return out, nil
}
