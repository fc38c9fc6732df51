package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/internal/jsonerr"
	"github.com/moatproj/moat/proxy"
)

// moat audit reads Docker's files — the data root, daemon.json, the
// service unit and its drop-ins, the socket's owner and mode — and reports
// how the host departs from common hardening advice. It never talks to the
// Docker socket. Reading (auditHost) and judging (the *Findings functions,
// which take parsed values) are apart, so each check is tested on literals
// and the whole command on fixture trees.

// The default places of what the audit reads, below --root.
const (
	defaultDockerRoot   = "/var/lib/docker"
	defaultDaemonConfig = "/etc/docker/daemon.json"
	defaultDockerSocket = "/var/run/docker.sock"
	defaultGroupFile    = "/etc/group"
)

// defaultUnitDirs are systemd's unit directories, most important first: a
// docker.service in an earlier one hides later ones, and a drop-in of the
// same name in an earlier one replaces a later one's.
var defaultUnitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// severity orders findings: high first.
type severity int

const (
	sevHigh severity = iota
	sevMedium
	sevLow
	sevInfo
)

var severityNames = [...]string{"high", "medium", "low", "info"}

func (s severity) String() string { return severityNames[s] }

func (s severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// finding is one departure from the advice: ID names the check (stable,
// for scripts), Subject what it is about (a container's name, a setting, a
// file), Message what is wrong and Fix what to do, one line each.
type finding struct {
	ID       string   `json:"id"`
	Severity severity `json:"severity"`
	Subject  string   `json:"subject"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix"`
}

// auditOptions says where the audit reads. Empty fields take their default
// below root.
type auditOptions struct {
	root         string
	dockerRoot   string
	daemonConfig string
	socket       string
	unitDirs     []string
	groupFile    string
	// moatConfig is moat's configuration, whose proxy upstreams tell which
	// published ports are behind the proxy; "" reads the system file below
	// root when it exists, and audits without a proxy otherwise.
	moatConfig string
	env        configs.Env
}

func (o auditOptions) under(p string) string {
	if o.root == "" {
		return p
	}
	return filepath.Join(o.root, p)
}

// display shows a path as the host has it: without root in front.
func (o auditOptions) display(p string) string {
	if o.root == "" {
		return p
	}
	if rel, err := filepath.Rel(o.root, p); err == nil && filepath.IsLocal(rel) {
		return "/" + filepath.ToSlash(rel)
	}
	return p
}

// auditReport is what an audit found, and the inputs it could not read
// (each error names its file); findings are sorted.
type auditReport struct {
	findings   []finding
	problems   []error
	containers int
	// accepted counts the findings left out by --accept.
	accepted int
}

func (r *auditReport) add(f ...finding) { r.findings = append(r.findings, f...) }

func (r *auditReport) problem(err error) { r.problems = append(r.problems, err) }

func (r *auditReport) highs() int {
	n := 0
	for _, f := range r.findings {
		if f.Severity == sevHigh {
			n++
		}
	}
	return n
}

func cmdAudit(args []string, io stdio) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var o auditOptions
	fs.StringVar(&o.dockerRoot, "docker-root", "", "Docker's data root (default daemon.json's data-root, else "+defaultDockerRoot+")")
	fs.StringVar(&o.daemonConfig, "daemon-config", "", "the Docker daemon's configuration (default "+defaultDaemonConfig+"; a missing file means Docker's defaults)")
	fs.StringVar(&o.socket, "docker-socket", "", "the socket to check (default the unix:// hosts of daemon.json and the unit, else "+defaultDockerSocket+")")
	unitDirs := fs.String("unit-dirs", "", "comma-separated systemd unit directories, most important first (default "+strings.Join(defaultUnitDirs, ",")+")")
	fs.StringVar(&o.groupFile, "group-file", "", "the group database naming the socket's group (default "+defaultGroupFile+")")
	fs.StringVar(&o.moatConfig, "config", "", "moat's configuration, for the proxy's upstreams (default "+configs.SystemPath+" when it exists)")
	fs.StringVar(&o.root, "root", "", "read the host's files below this directory (a mounted host filesystem); explicit paths are taken as given")
	var accept acceptList
	fs.Var(&accept, "accept", "leave out findings you have accepted: ID, ID:SUBJECT or *:SUBJECT (repeatable), such as container-cap-add:moat")
	asJSON := fs.Bool("json", false, "print the findings as a JSON array of {id, severity, subject, message, fix}")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: audit takes no arguments, got %q", errUsage, pos)
	}
	if *unitDirs != "" {
		o.unitDirs = strings.Split(*unitDirs, ",")
	}
	o.env = envFrom(io)

	rep := auditHost(o)
	for _, a := range accept.apply(&rep) {
		fmt.Fprintf(io.stderr, "moat: audit: --accept %s matched no finding\n", a)
	}
	if *asJSON {
		out := rep.findings
		if out == nil {
			out = []finding{}
		}
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(io.stdout, "%s\n", data); err != nil {
			return err
		}
	} else if err := printFindings(io, rep); err != nil {
		return err
	}
	for _, p := range rep.problems {
		fmt.Fprintf(io.stderr, "moat: audit: %v\n", p)
	}
	switch {
	case len(rep.problems) > 0:
		return fmt.Errorf("audit incomplete: %d input(s) could not be read", len(rep.problems))
	case rep.highs() > 0:
		return fmt.Errorf("audit: %d high-severity finding(s)", rep.highs())
	}
	return nil
}

func printFindings(io stdio, rep auditReport) error {
	var counts [len(severityNames)]int
	for _, f := range rep.findings {
		counts[f.Severity]++
	}
	if len(rep.findings) > 0 {
		tw := tabwriter.NewWriter(io.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tID\tSUBJECT\tFINDING\tFIX")
		for _, f := range rep.findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.ID, f.Subject, f.Message, f.Fix)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(io.stdout)
	}
	accepted := ""
	if rep.accepted > 0 {
		accepted = fmt.Sprintf("; %d accepted", rep.accepted)
	}
	_, err := fmt.Fprintf(io.stdout, "%d finding(s): %d high, %d medium, %d low, %d info; %d container(s) read%s\n",
		len(rep.findings), counts[sevHigh], counts[sevMedium], counts[sevLow], counts[sevInfo], rep.containers, accepted)
	return err
}

// acceptList is the --accept flag: findings the operator has accepted, as
// ID (every subject), ID:SUBJECT, or *:SUBJECT (every finding of a
// subject, such as moat's own container).
type acceptList []string

func (a *acceptList) String() string { return strings.Join(*a, ",") }

func (a *acceptList) Set(v string) error {
	if id, _, _ := strings.Cut(v, ":"); id == "" {
		return fmt.Errorf("want ID or ID:SUBJECT, got %q", v)
	}
	*a = append(*a, v)
	return nil
}

// apply removes the accepted findings from rep and returns the entries
// that matched none (likely typos).
func (a acceptList) apply(rep *auditReport) []string {
	used := make([]bool, len(a))
	kept := rep.findings[:0]
	for _, f := range rep.findings {
		hit := false
		for i, e := range a {
			id, subject, bySubject := strings.Cut(e, ":")
			if (id == f.ID || id == "*") && (!bySubject || subject == f.Subject) {
				used[i], hit = true, true
			}
		}
		if hit {
			rep.accepted++
			continue
		}
		kept = append(kept, f)
	}
	rep.findings = kept
	var unused []string
	for i, e := range a {
		if !used[i] {
			unused = append(unused, e)
		}
	}
	return unused
}

// auditHost reads everything the audit looks at and judges it. It never
// fails as a whole: an input it cannot read is a problem in the report,
// and the checks that need it are left out; a container whose files cannot
// be read is a finding.
func auditHost(o auditOptions) auditReport {
	var rep auditReport

	// daemon.json. A missing file means Docker's defaults, which are judged
	// too; an unreadable or garbled one leaves the daemon's settings unknown.
	dcPath := o.daemonConfig
	if dcPath == "" {
		dcPath = o.under(defaultDaemonConfig)
	}
	var dc daemonConfig
	dcKnown := true
	switch data, err := os.ReadFile(dcPath); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		rep.problem(fmt.Errorf("read daemon config: %w", err))
		dcKnown = false
	default:
		if dc, err = parseDaemonConfig(data); err != nil {
			rep.problem(fmt.Errorf("daemon config %s: %w", dcPath, err))
			dcKnown = false
		}
	}

	// The service unit and its drop-ins.
	dirs := o.unitDirs
	if dirs == nil {
		for _, d := range defaultUnitDirs {
			dirs = append(dirs, o.under(d))
		}
	}
	exec, err := readDockerUnit(dirs)
	if err != nil {
		rep.problem(err)
	}
	exec.file = o.display(exec.file)
	if dcKnown {
		rep.add(daemonFindings(dc)...)
	}
	rep.add(apiFindings(dc, exec)...)

	// The sockets: the explicit one, else the unix:// hosts, else the default.
	var sockets []string
	if o.socket != "" {
		sockets = []string{o.socket}
	} else {
		for _, h := range append(slices.Clone(dc.Hosts), exec.hosts()...) {
			if p, ok := strings.CutPrefix(h, "unix://"); ok && p != "" && !slices.Contains(sockets, o.under(p)) {
				sockets = append(sockets, o.under(p))
			}
		}
		if len(sockets) == 0 {
			sockets = []string{o.under(defaultDockerSocket)}
		}
	}
	groupPath := o.groupFile
	if groupPath == "" {
		groupPath = o.under(defaultGroupFile)
	}
	groups, err := readGroups(groupPath)
	if err != nil {
		rep.problem(err)
	}
	for _, s := range sockets {
		fi, err := os.Stat(s)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rep.add(finding{ID: "docker-socket-missing", Severity: sevInfo, Subject: o.display(s),
				Message: "no Docker socket here, so its owner and mode were not checked (Docker stopped, or listening elsewhere)",
				Fix:     "run the audit while Docker runs, or name the socket with --docker-socket"})
			continue
		case err != nil:
			rep.problem(fmt.Errorf("stat docker socket: %w", err))
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			rep.problem(fmt.Errorf("stat docker socket %s: no owner information", s))
			continue
		}
		rep.add(socketFindings(o.display(s), fi.Mode().Perm(), int(st.Uid), int(st.Gid), dc.Group, groups)...)
	}

	// moat's proxy, whose upstreams say which published ports it fronts.
	ups, err := proxyUpstreams(o)
	if err != nil {
		rep.problem(err)
	}

	// The containers.
	root := o.dockerRoot
	if root == "" {
		root = o.under(defaultDockerRoot)
		if dc.DataRoot != "" {
			root = o.under(dc.DataRoot)
		}
	}
	cs, bad, err := readContainers(root, o.display)
	if err != nil {
		rep.problem(err)
	}
	rep.containers = len(cs) + len(bad)
	rep.add(bad...)
	for _, c := range cs {
		rep.add(containerFindings(c, dc, ups)...)
	}
	if dcKnown {
		rep.add(contentTrustFindings(dc)...)
	}
	sortFindings(rep.findings)
	return rep
}

func sortFindings(fs []finding) {
	slices.SortStableFunc(fs, func(a, b finding) int {
		if a.Severity != b.Severity {
			return int(a.Severity) - int(b.Severity)
		}
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}

// daemonConfig holds the keys of daemon.json that the audit reads; a nil
// pointer is a key left out, which takes Docker's default.
type daemonConfig struct {
	Hosts                []string `json:"hosts"`
	TLS                  *bool    `json:"tls"`
	TLSVerify            *bool    `json:"tlsverify"`
	UserlandProxy        *bool    `json:"userland-proxy"`
	IPTables             *bool    `json:"iptables"`
	ICC                  *bool    `json:"icc"`
	LiveRestore          *bool    `json:"live-restore"`
	IP                   string   `json:"ip"`
	DataRoot             string   `json:"data-root"`
	Group                string   `json:"group"`
	NoNewPrivileges      bool     `json:"no-new-privileges"`
	UsernsRemap          string   `json:"userns-remap"`
	AuthorizationPlugins []string `json:"authorization-plugins"`
	// ContentTrust is Mirantis Container Runtime's daemon-side signature
	// enforcement; Moby and Docker CE refuse the key.
	ContentTrust *struct {
		Mode string `json:"mode"`
	} `json:"content-trust"`
}

// parseDaemonConfig decodes daemon.json. Keys the audit does not read are
// ignored; a syntax or type error names the line and column.
func parseDaemonConfig(data []byte) (daemonConfig, error) {
	var dc daemonConfig
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(data)) == 0 {
		return dc, nil // dockerd takes an empty file as no settings
	}
	if err := json.Unmarshal(data, &dc); err != nil {
		return dc, jsonerr.Describe(data, err)
	}
	return dc, nil
}

func isFalse(b *bool) bool { return b != nil && !*b }
func isTrue(b *bool) bool  { return b != nil && *b }

// daemonFindings judges daemon.json's settings (Docker's defaults for the
// keys it leaves out).
func daemonFindings(dc daemonConfig) []finding {
	var out []finding
	if isFalse(dc.IPTables) {
		out = append(out, finding{ID: "daemon-iptables-off", Severity: sevHigh, Subject: "daemon.json iptables",
			Message: "Docker writes no firewall rules: no isolation between networks and no NAT, so published ports depend on rules you keep by hand (moat's bans still hold: its own table drops banned clients before any NAT)",
			Fix:     `remove "iptables": false from daemon.json (or set it true) and restart Docker`})
	}
	if !isFalse(dc.ICC) {
		out = append(out, finding{ID: "daemon-icc", Severity: sevMedium, Subject: "daemon.json icc",
			Message: "containers on the default bridge reach each other on every port (icc is on, the default)",
			Fix:     `set "icc": false in daemon.json; give containers that must talk a user-defined network`})
	}
	if !isFalse(dc.UserlandProxy) {
		out = append(out, finding{ID: "daemon-userland-proxy", Severity: sevLow, Subject: "daemon.json userland-proxy",
			Message: "docker-proxy relays some connections to published ports, and containers then log the gateway's address instead of the client's, which a jail would ban",
			Fix:     `set "userland-proxy": false in daemon.json`})
	}
	if !isTrue(dc.LiveRestore) {
		out = append(out, finding{ID: "daemon-live-restore", Severity: sevLow, Subject: "daemon.json live-restore",
			Message: "restarting or upgrading Docker stops every container",
			Fix:     `set "live-restore": true in daemon.json`})
	}
	return out
}

// contentTrustFindings says honestly what can be known of image signature
// enforcement: DOCKER_CONTENT_TRUST is read by the docker CLI only, and
// Moby/Docker CE has no daemon setting for it; Mirantis Container Runtime
// has "content-trust": {"mode": "enforced"}; an authorization plugin may
// enforce it, which the audit cannot see.
func contentTrustFindings(dc daemonConfig) []finding {
	if dc.ContentTrust != nil && dc.ContentTrust.Mode == "enforced" {
		return nil
	}
	msg := "the daemon runs unsigned images: DOCKER_CONTENT_TRUST is a client setting that only the docker CLI reads, and Docker CE has no daemon-side enforcement"
	if len(dc.AuthorizationPlugins) > 0 {
		msg += fmt.Sprintf(" (authorization plugins %s are configured; the audit cannot tell whether they check signatures)", strings.Join(dc.AuthorizationPlugins, ", "))
	}
	return []finding{{ID: "content-trust-not-enforced", Severity: sevInfo, Subject: "daemon.json content-trust",
		Message: msg,
		Fix:     "set DOCKER_CONTENT_TRUST=1 wherever images are pulled and run (shell profiles, CI, compose runners), or enforce signatures in the daemon (an authorization plugin, or MCR's content-trust)"}}
}

// unitExec is the effective ExecStart of docker.service with the file it
// came from (empty when there is no unit).
type unitExec struct {
	file string
	args []string
}

// hosts returns the -H/--host values of the command line.
func (u unitExec) hosts() []string {
	var hs []string
	for i := 0; i < len(u.args); i++ {
		a := u.args[i]
		switch {
		case a == "-H" || a == "--host":
			if i+1 < len(u.args) {
				hs = append(hs, u.args[i+1])
				i++
			}
		case strings.HasPrefix(a, "--host="):
			hs = append(hs, strings.TrimPrefix(a, "--host="))
		case strings.HasPrefix(a, "-H="):
			hs = append(hs, strings.TrimPrefix(a, "-H="))
		case strings.HasPrefix(a, "-H") && !strings.HasPrefix(a, "--"):
			hs = append(hs, strings.TrimPrefix(a, "-H"))
		}
	}
	return hs
}

// boolFlag reports whether the command line turns a boolean flag such as
// --tlsverify on.
func (u unitExec) boolFlag(name string) bool {
	on := false
	for _, a := range u.args {
		switch {
		case a == name:
			on = true
		case strings.HasPrefix(a, name+"="):
			on, _ = strconv.ParseBool(strings.TrimPrefix(a, name+"="))
		}
	}
	return on
}

// readDockerUnit finds docker.service in dirs (most important first) and
// applies its drop-ins (docker.service.d/*.conf, a name in an earlier
// directory hiding the same name in a later one, applied in name order) as
// systemd does: an empty ExecStart= clears the list. A missing unit is
// no unit; an unreadable file is an error naming it.
func readDockerUnit(dirs []string) (unitExec, error) {
	var files []string
	for _, d := range dirs {
		p := filepath.Join(d, "docker.service")
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
			break
		}
	}
	dropins := map[string]string{}
	for _, d := range dirs {
		matches, _ := filepath.Glob(filepath.Join(d, "docker.service.d", "*.conf"))
		for _, m := range matches {
			if _, ok := dropins[filepath.Base(m)]; !ok {
				dropins[filepath.Base(m)] = m
			}
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		files = append(files, dropins[n])
	}
	var cur unitExec
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return cur, fmt.Errorf("read systemd unit: %w", err)
		}
		for _, v := range unitExecStarts(string(data)) {
			if strings.TrimSpace(v) == "" {
				cur = unitExec{}
				continue
			}
			cur = unitExec{file: f, args: splitCommand(v)}
		}
	}
	return cur, nil
}

// unitExecStarts returns the values of the ExecStart= lines of a unit's
// [Service] section, in order, with continuation lines joined.
func unitExecStarts(text string) []string {
	var out []string
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var pending strings.Builder
	cont := false
	for sc.Scan() {
		line := sc.Text()
		if cont {
			t := strings.TrimSpace(line)
			if strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
				continue // comments inside a continued line are skipped
			}
			if s, ok := strings.CutSuffix(line, `\`); ok {
				pending.WriteString(" " + s)
				continue
			}
			pending.WriteString(" " + line)
			cont = false
			out = append(out, pending.String())
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";"):
			continue
		case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
			section = t
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok || section != "[Service]" || strings.TrimSpace(k) != "ExecStart" {
			continue
		}
		v = strings.TrimSpace(v)
		if s, ok := strings.CutSuffix(v, `\`); ok {
			pending.Reset()
			pending.WriteString(s)
			cont = true
			continue
		}
		out = append(out, v)
	}
	if cont {
		out = append(out, pending.String())
	}
	return out
}

// splitCommand splits an ExecStart value into words as systemd does for
// the common cases: whitespace separates, single and double quotes group,
// a backslash escapes the next character; the executable's prefixes
// (-, @, +, !, :) are dropped.
func splitCommand(s string) []string {
	var words []string
	var w strings.Builder
	in := false
	var quote rune
	esc := false
	for _, r := range s {
		switch {
		case esc:
			w.WriteRune(r)
			esc = false
		case r == '\\':
			esc, in = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	if len(words) > 0 {
		words[0] = strings.TrimLeft(words[0], "-@+!:")
	}
	return words
}

// apiFindings reports the Docker API on TCP, from daemon.json's hosts and
// the unit's -H flags. Anyone who reaches the API is root on the host;
// with tlsverify only holders of a client certificate the CA signed can.
func apiFindings(dc daemonConfig, exec unitExec) []finding {
	verify := isTrue(dc.TLSVerify) || exec.boolFlag("--tlsverify")
	tls := verify || isTrue(dc.TLS) || exec.boolFlag("--tls")
	var out []finding
	report := func(subject, host string) {
		f := finding{ID: "docker-api-tcp", Subject: subject}
		switch {
		case verify:
			f.Severity = sevMedium
			f.Message = fmt.Sprintf("the Docker API listens on %s with client-certificate checks (tlsverify); every holder of a certificate from that CA is root on the host", host)
			f.Fix = "serve the API on the unix socket only, or keep the CA for this daemon alone and bind to a management address"
		case tls:
			f.Severity = sevHigh
			f.Message = fmt.Sprintf("the Docker API listens on %s with TLS but no client-certificate check (tlsverify off): whoever connects is root on the host", host)
			f.Fix = `set "tlsverify": true with a CA of your own, or serve the API on the unix socket only`
		default:
			f.Severity = sevHigh
			f.Message = fmt.Sprintf("the Docker API listens on %s without TLS: whoever connects is root on the host", host)
			f.Fix = "serve the API on the unix socket only (remove the tcp:// host), or reach it over SSH (DOCKER_HOST=ssh://…)"
		}
		out = append(out, f)
	}
	for _, h := range dc.Hosts {
		if isTCP(h) {
			report("daemon.json hosts", h)
		}
	}
	for _, h := range exec.hosts() {
		if isTCP(h) {
			report(exec.file+" ExecStart", h)
		}
	}
	return out
}

// isTCP reports whether a dockerd -H value listens on TCP: tcp://… or a
// bare host:port, which dockerd reads as TCP.
func isTCP(h string) bool {
	h = strings.ToLower(strings.TrimSpace(h))
	if strings.HasPrefix(h, "tcp://") {
		return true
	}
	return h != "" && !strings.Contains(h, "://") && strings.Contains(h, ":")
}

// readGroups reads a group(5) file into name → gid. A missing file is an
// empty database.
func readGroups(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read group file: %w", err)
	}
	return parseGroups(string(data)), nil
}

func parseGroups(text string) map[string]int {
	groups := map[string]int{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if gid, err := strconv.Atoi(f[2]); err == nil {
			if _, seen := groups[f[0]]; !seen {
				groups[f[0]] = gid
			}
		}
	}
	return groups
}

// socketFindings judges a Docker socket's owner and mode against what
// dockerd sets: root, the group of daemon.json's "group" (docker by
// default; root when that group does not exist), mode 0660. Connecting
// needs write permission, so world-writable is root for every local user.
func socketFindings(path string, perm fs.FileMode, uid, gid int, groupSetting string, groups map[string]int) []finding {
	var out []finding
	switch {
	case perm&0o002 != 0:
		out = append(out, finding{ID: "docker-socket-mode", Severity: sevHigh, Subject: path,
			Message: fmt.Sprintf("the Docker socket is world-writable (%04o): every local user and process is root on the host", perm),
			Fix:     "chmod 0660 " + path + ` and find what changed it (a unit's SocketMode, a script, a container start)`})
	case perm&^0o660 != 0:
		out = append(out, finding{ID: "docker-socket-mode", Severity: sevMedium, Subject: path,
			Message: fmt.Sprintf("the Docker socket's mode is %04o, not dockerd's 0660", perm),
			Fix:     "chmod 0660 " + path + " and find what changed it"})
	}
	want, wantName := 0, "root"
	name := groupSetting
	if name == "" {
		name = "docker"
	}
	if g, ok := groups[name]; ok {
		want, wantName = g, name
	} else if n, err := strconv.Atoi(name); err == nil {
		want, wantName = n, name
	}
	if uid != 0 || gid != want {
		owner := strconv.Itoa(uid)
		if uid == 0 {
			owner = "root"
		}
		got := owner + ":" + groupLabel(gid, groups)
		out = append(out, finding{ID: "docker-socket-owner", Severity: sevMedium, Subject: path,
			Message: fmt.Sprintf("the Docker socket is owned by %s, not root:%s: whoever may write to it is root on the host", got, wantName),
			Fix:     fmt.Sprintf("chown root:%s %s, and keep the %s group to administrators", wantName, path, wantName)})
	}
	return out
}

func groupLabel(gid int, groups map[string]int) string {
	var names []string
	for n, g := range groups {
		if g == gid {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return strconv.Itoa(gid)
	}
	slices.Sort(names)
	return names[0]
}

// proxyTarget is where moat's proxy sends requests.
type proxyTarget struct {
	host string
	port int
}

// proxyUpstreams returns the upstreams of moat's proxy: from o.moatConfig,
// else the system file below root when it exists; none without a proxy.
func proxyUpstreams(o auditOptions) ([]proxyTarget, error) {
	path := o.moatConfig
	if path == "" {
		path = o.under(configs.SystemPath)
		if _, err := os.Stat(path); err != nil {
			return nil, nil
		}
	}
	cfg, err := configs.Load(path, configs.Options{Env: o.env})
	if err != nil {
		return nil, fmt.Errorf("moat config: %w", err)
	}
	if cfg.Proxy == nil {
		return nil, nil
	}
	var ups []proxyTarget
	for _, r := range cfg.Proxy.Routes {
		for _, s := range r.Upstreams {
			u, err := proxy.ParseUpstream(s)
			if err != nil {
				return nil, fmt.Errorf("moat config %s: %w", path, err)
			}
			port, _ := strconv.Atoi(u.Port())
			if port == 0 {
				port = 80
				if u.Scheme == "https" {
					port = 443
				}
			}
			ups = append(ups, proxyTarget{host: u.Hostname(), port: port})
		}
	}
	if ups == nil {
		ups = []proxyTarget{} // a proxy without routes still fronts nothing
	}
	return ups, nil
}

// container is what the audit reads of one container: config.v2.json and
// hostconfig.json, with the field names moby writes.
type container struct {
	ID   string
	Cfg  containerConfig
	Host hostConfig
}

type containerConfig struct {
	ID    string
	Name  string
	State struct {
		Running    bool
		Restarting bool
		Paused     bool
	}
	// Config is the container's configuration merged with its image's,
	// so an empty User means the image runs as root too.
	Config struct {
		User         string
		Image        string
		Labels       map[string]string
		ExposedPorts map[string]struct{}
	}
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress         string
			GlobalIPv6Address string
		}
	}
}

type hostConfig struct {
	Privileged      bool
	CapAdd          []string
	Memory          int64
	PidsLimit       *int64
	PortBindings    map[string][]portBinding
	PublishAllPorts bool
	NetworkMode     string
	ReadonlyRootfs  bool
	SecurityOpt     []string
	UsernsMode      string
}

type portBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// name is the container's name without moby's leading slash, else its
// short id.
func (c container) name() string {
	if n := strings.TrimPrefix(c.Cfg.Name, "/"); n != "" {
		return n
	}
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}

// subject names the container, with its state when it is not running (a
// stopped container with a restart policy runs again at the next boot).
func (c container) subject() string {
	if c.Cfg.State.Running {
		return c.name()
	}
	return c.name() + " (stopped)"
}

// parseContainer decodes a container's config.v2.json and hostconfig.json.
// An error names the file that is wrong.
func parseContainer(id string, configV2, hostconfig []byte) (container, error) {
	c := container{ID: id}
	if err := json.Unmarshal(configV2, &c.Cfg); err != nil {
		return c, fmt.Errorf("config.v2.json: %w", jsonerr.Describe(configV2, err))
	}
	if err := json.Unmarshal(hostconfig, &c.Host); err != nil {
		return c, fmt.Errorf("hostconfig.json: %w", jsonerr.Describe(hostconfig, err))
	}
	return c, nil
}

// readContainers reads every container below root/containers. A container
// whose files cannot be read or decoded becomes a container-unreadable
// finding (show turns its directory into the path to print); the error is
// for a data root that cannot be listed.
func readContainers(root string, show func(string) string) ([]container, []finding, error) {
	dir := filepath.Join(root, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, rerr := os.Stat(root); rerr == nil {
				return nil, nil, nil // a data root without containers yet
			}
			return nil, nil, fmt.Errorf("read docker root: %s does not exist (is Docker installed here? --docker-root names its data root)", root)
		}
		return nil, nil, fmt.Errorf("read docker root: %w", err)
	}
	var cs []container
	var bad []finding
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		cdir := filepath.Join(dir, id)
		c, err := readContainer(cdir, id)
		if err != nil {
			subject := id
			if len(subject) > 12 {
				subject = subject[:12]
			}
			bad = append(bad, finding{ID: "container-unreadable", Severity: sevMedium, Subject: subject,
				Message: fmt.Sprintf("%s: %v; this container was not audited", show(cdir), err),
				Fix:     "inspect it with docker inspect; remove it if Docker cannot load it either"})
			continue
		}
		cs = append(cs, c)
	}
	return cs, bad, nil
}

func readContainer(dir, id string) (container, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, "config.v2.json"))
	if err != nil {
		return container{}, err
	}
	host, err := os.ReadFile(filepath.Join(dir, "hostconfig.json"))
	if err != nil {
		return container{}, err
	}
	return parseContainer(id, cfg, host)
}

// dangerousCaps are capabilities that amount to root on the host, or to
// control of its network, from inside a container.
var dangerousCaps = []string{"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF"}

// containerFindings judges one container. dc gives the daemon's defaults
// (the default bind address, no-new-privileges, user namespaces); ups are
// the proxy's upstreams, nil when there is no proxy.
func containerFindings(c container, dc daemonConfig, ups []proxyTarget) []finding {
	var out []finding
	subj := c.subject()
	add := func(id string, sev severity, msg, fix string) {
		out = append(out, finding{ID: id, Severity: sev, Subject: subj, Message: msg, Fix: fix})
	}
	h := c.Host
	if h.Privileged {
		add("container-privileged", sevHigh,
			"runs privileged: every capability and device, no seccomp or AppArmor; root in it is root on the host",
			"drop --privileged (privileged: true); add only the capabilities and devices it needs")
	}
	if user := strings.TrimSpace(c.Cfg.Config.User); isRootUser(user) {
		sev, msg := sevMedium, "runs as root (no USER in the image or the run)"
		if user != "" {
			msg = fmt.Sprintf("runs as root (user %q)", user)
		}
		if dc.UsernsRemap != "" && h.UsernsMode != "host" {
			sev, msg = sevLow, msg+"; userns-remap maps it to an unprivileged host user"
		}
		add("container-root", sev, msg, "run as an unprivileged user: --user 1000:1000 (user: in compose) or USER in the Dockerfile")
	}
	if len(h.CapAdd) > 0 {
		sev := sevMedium
		caps := make([]string, 0, len(h.CapAdd))
		for _, cp := range h.CapAdd {
			n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(cp)), "CAP_")
			caps = append(caps, n)
			if slices.Contains(dangerousCaps, n) {
				sev = sevHigh
			}
		}
		msg := "adds capabilities " + strings.Join(caps, ", ")
		if sev == sevHigh {
			msg += " (each of ALL, SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH, BPF reaches the host or its network)"
		}
		add("container-cap-add", sev, msg, "drop the --cap-add (cap_add:) entries it does not need; start from --cap-drop ALL")
	}
	if h.Memory <= 0 {
		add("container-no-memory-limit", sevLow, "has no memory limit: it can push the host into swapping or the OOM killer",
			"set --memory (mem_limit: or deploy.resources.limits.memory in compose)")
	}
	if h.PidsLimit == nil || *h.PidsLimit <= 0 {
		add("container-no-pids-limit", sevLow, "has no pids limit: a fork bomb in it exhausts the host's processes",
			"set --pids-limit (pids_limit: in compose), such as 256")
	}
	for _, opt := range h.SecurityOpt {
		o := strings.ToLower(strings.ReplaceAll(opt, ":", "="))
		if o == "seccomp=unconfined" || o == "apparmor=unconfined" || o == "label=disable" || o == "systempaths=unconfined" {
			add("container-unconfined", sevMedium, fmt.Sprintf("runs with security option %q, which turns a confinement off", opt),
				"remove the --security-opt "+opt)
		}
	}
	if !dc.NoNewPrivileges && !noNewPrivileges(h.SecurityOpt) {
		add("container-new-privileges", sevLow,
			"may gain privileges through setuid and file-capability binaries (no-new-privileges is off)",
			`add --security-opt no-new-privileges:true (security_opt: in compose), or "no-new-privileges": true in daemon.json`)
	}
	if !h.ReadonlyRootfs {
		add("container-rootfs-writable", sevInfo,
			"its root filesystem is writable: an intruder can change its programs and hide there",
			"run with --read-only (read_only: true in compose) and a tmpfs or volume for the paths it writes")
	}
	if h.NetworkMode == "host" {
		add("container-host-network", sevLow,
			"shares the host's network: every port it listens on is on the host's addresses, with no published-port mapping to restrict",
			"use a bridge network and publish only the ports it serves, unless it must see the host's network (as moat does)")
	}
	out = append(out, portFindings(c, subj, dc, ups)...)
	return out
}

// isRootUser reports whether a container's User runs as root: empty (the
// image's default, root), or a user part of 0 or root.
func isRootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "" || name == "0" || name == "root"
}

// noNewPrivileges reports whether security options turn no-new-privileges
// on ("no-new-privileges", with :true or =true, as moby accepts).
func noNewPrivileges(opts []string) bool {
	on := false
	for _, o := range opts {
		k, v, hasV := strings.Cut(strings.ReplaceAll(o, "=", ":"), ":")
		if k != "no-new-privileges" {
			continue
		}
		on = !hasV
		if hasV {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}

// portFindings reports ports published on every address. dc.IP is the
// daemon's default bind address for a binding without one.
func portFindings(c container, subj string, dc daemonConfig, ups []proxyTarget) []finding {
	h := c.Host
	if h.NetworkMode == "host" {
		return nil // bindings are ignored on the host network
	}
	bindings := h.PortBindings
	if h.PublishAllPorts {
		// -P publishes every exposed port that has no binding of its own
		// on a port Docker picks, on the default address.
		bindings = maps.Clone(bindings)
		if bindings == nil {
			bindings = map[string][]portBinding{}
		}
		for k := range c.Cfg.Config.ExposedPorts {
			if len(bindings[k]) == 0 {
				bindings[k] = []portBinding{{}}
			}
		}
	}
	var out []finding
	keys := make([]string, 0, len(bindings))
	for k := range bindings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cport, proto, _ := strings.Cut(k, "/")
		if proto == "" {
			proto = "tcp"
		}
		for _, b := range bindings[k] {
			ip := b.HostIP
			if ip == "" {
				ip = dc.IP
			}
			if !allAddresses(ip) {
				continue
			}
			hostPort := b.HostPort
			if hostPort == "" {
				hostPort = "chosen by Docker"
			}
			where := fmt.Sprintf("port %s/%s is published on all addresses (host port %s)", cport, proto, hostPort)
			fix := fmt.Sprintf("publish on loopback (-p 127.0.0.1:%s:%s, or \"ip\": \"127.0.0.1\" in daemon.json) and reach it through moat's proxy", b.HostPort, cport)
			var msg string
			switch {
			case ups == nil:
				msg = where + ": reachable from every network the host is on"
			case proto == "tcp" && behindProxy(c, cport, b.HostPort, ups):
				msg = where + ": moat's proxy forwards to it, and clients can go around the proxy, its TLS and its rate limits"
			default:
				msg = where + ", not behind moat's proxy: no TLS or rate limit of moat's applies to it"
			}
			out = append(out, finding{ID: "container-port-all-addresses", Severity: sevMedium, Subject: subj, Message: msg, Fix: fix})
		}
	}
	return out
}

// allAddresses reports whether a bind address is every address: empty
// (Docker's default), 0.0.0.0 or ::.
func allAddresses(ip string) bool {
	ip = strings.Trim(ip, "[]")
	if ip == "" {
		return true
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsUnspecified()
}

// behindProxy reports whether an upstream of the proxy is this binding:
// the host port on any host address, or the container's own address and
// port.
func behindProxy(c container, cport, hostPort string, ups []proxyTarget) bool {
	hp, _ := strconv.Atoi(hostPort)
	cp, _ := strconv.Atoi(cport)
	var addrs []string
	for _, n := range c.Cfg.NetworkSettings.Networks {
		addrs = append(addrs, n.IPAddress, n.GlobalIPv6Address)
	}
	for _, u := range ups {
		if slices.Contains(addrs, u.host) && u.host != "" {
			if u.port == cp {
				return true
			}
			continue
		}
		if hp != 0 && u.port == hp {
			return true
		}
	}
	return false
}
