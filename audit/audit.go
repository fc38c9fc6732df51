// Package audit judges a Docker host against common hardening advice: the
// daemon's settings (daemon.json), the API's listeners (daemon.json and the
// docker.service unit with its drop-ins), the Docker socket's owner and mode
// (with /etc/group), and every container's privileges, limits and published
// ports (Docker's data root, read through sources/docker, its one reader).
// It owns the findings: their ids, severities, subjects, messages and fixes,
// and their order.
//
// It only reads files, below a root directory when the host's filesystem is
// mounted elsewhere: it never talks to the Docker daemon or its socket, never
// runs a program, and never changes anything on the host. It does not read
// moat's own configuration (the caller passes the proxy's upstreams) nor
// print: cmd/moat's audit command holds the flags and the output.
//
// Reading (Host) and judging (the *Findings functions, which take parsed
// values) are apart, so each check is tested on literals and the whole
// command on the fixture trees under testdata.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
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

	"github.com/moatproj/moat/internal/jsonerr"
	"github.com/moatproj/moat/sources/docker"
)

// The default places of what the audit reads, below Options.Root.
const (
	DefaultDockerRoot   = "/var/lib/docker"
	DefaultDaemonConfig = "/etc/docker/daemon.json"
	DefaultDockerSocket = "/var/run/docker.sock"
	DefaultGroupFile    = "/etc/group"
)

// DefaultUnitDirs are systemd's unit directories, most important first: a
// docker.service in an earlier one hides later ones, and a drop-in of the
// same name in an earlier one replaces a later one's.
var DefaultUnitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// Severity orders findings: high first.
type Severity int

// The severities, most severe first.
const (
	High Severity = iota
	Medium
	Low
	Info
)

var severityNames = [...]string{"high", "medium", "low", "info"}

func (s Severity) String() string { return severityNames[s] }

// MarshalJSON writes a severity as its name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity from its name, so that the JSON of a
// report decodes back into findings.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	i := slices.Index(severityNames[:], name)
	if i < 0 {
		return fmt.Errorf("severity %q is not one of %q", name, severityNames)
	}
	*s = Severity(i)
	return nil
}

// Finding is one departure from the advice: ID names the check (stable,
// for scripts), Subject what it is about (a container's name, a setting, a
// file), Message what is wrong and Fix what to do, one line each.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Subject  string   `json:"subject"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix"`
}

// Options says where the audit reads. Empty paths take their default below
// Root.
type Options struct {
	// Root is where the host's filesystem is (a mounted host tree); "" is /.
	// Explicit paths below are taken as given.
	Root         string
	DockerRoot   string // default daemon.json's data-root, else DefaultDockerRoot
	DaemonConfig string // a missing file means Docker's defaults
	// Socket is the socket to check; default the unix:// hosts of
	// daemon.json and the unit, else DefaultDockerSocket.
	Socket    string
	UnitDirs  []string // most important first
	GroupFile string
	// Upstreams returns where moat's proxy sends requests, which tells
	// which published ports are behind the proxy: nil when there is no
	// proxy (nil Upstreams too), empty for a proxy without routes. Host
	// calls it once; its error is a problem of the report.
	Upstreams func() ([]Upstream, error)
}

// Upstream is where moat's proxy sends requests: a host (a name or an
// address) and a port.
type Upstream struct {
	Host string
	Port int
}

// Under is p below Root, where the host has it.
func (o Options) Under(p string) string {
	if o.Root == "" {
		return p
	}
	return filepath.Join(o.Root, p)
}

// display shows a path as the host has it: without root in front.
func (o Options) display(p string) string {
	if o.Root == "" {
		return p
	}
	if rel, err := filepath.Rel(o.Root, p); err == nil && filepath.IsLocal(rel) {
		return "/" + filepath.ToSlash(rel)
	}
	return p
}

// Report is what an audit found, and the inputs it could not read (each
// error names its file).
type Report struct {
	// Findings are sorted: by severity, then subject, id and message.
	Findings []Finding
	Problems []error
	// Containers counts the containers read, audited or not.
	Containers int
	// Accepted counts the findings Accept left out.
	Accepted int
	// NotInstalled, when not empty, says that Docker is not installed and
	// names the places looked at, none of which exists (see Host); the
	// report then holds nothing else.
	NotInstalled string
}

func (r *Report) add(f ...Finding) { r.Findings = append(r.Findings, f...) }

func (r *Report) problem(err error) { r.Problems = append(r.Problems, err) }

// Highs counts the high-severity findings.
func (r *Report) Highs() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == High {
			n++
		}
	}
	return n
}

// Accept leaves out the findings an operator has accepted, each entry an ID
// (every subject), ID:SUBJECT, or *:SUBJECT (every finding of a subject,
// such as moat's own container), and counts them in Accepted. It returns
// the entries that matched no finding (likely typos).
func (r *Report) Accept(entries []string) (unused []string) {
	used := make([]bool, len(entries))
	kept := r.Findings[:0]
	for _, f := range r.Findings {
		hit := false
		for i, e := range entries {
			id, subject, bySubject := strings.Cut(e, ":")
			if (id == f.ID || id == "*") && (!bySubject || subject == f.Subject) {
				used[i], hit = true, true
			}
		}
		if hit {
			r.Accepted++
			continue
		}
		kept = append(kept, f)
	}
	r.Findings = kept
	for i, e := range entries {
		if !used[i] {
			unused = append(unused, e)
		}
	}
	return unused
}

// Host reads everything the audit looks at and judges it. It never
// fails as a whole: an input it cannot read is a problem in the report,
// and the checks that need it are left out; a container whose files cannot
// be read is a finding.
func Host(o Options) Report {
	var rep Report

	// daemon.json. A missing file means Docker's defaults, which are judged
	// too; an unreadable or garbled one leaves the daemon's settings unknown.
	dcPath := o.DaemonConfig
	if dcPath == "" {
		dcPath = o.Under(DefaultDaemonConfig)
	}
	dirs := o.UnitDirs
	if dirs == nil {
		for _, d := range DefaultUnitDirs {
			dirs = append(dirs, o.Under(d))
		}
	}
	if rep.NotInstalled = o.absent(dcPath, dirs); rep.NotInstalled != "" {
		return rep
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
	if o.Socket != "" {
		sockets = []string{o.Socket}
	} else {
		for _, h := range append(slices.Clone(dc.Hosts), exec.hosts()...) {
			if p, ok := strings.CutPrefix(h, "unix://"); ok && p != "" && !slices.Contains(sockets, o.Under(p)) {
				sockets = append(sockets, o.Under(p))
			}
		}
		if len(sockets) == 0 {
			sockets = []string{o.Under(DefaultDockerSocket)}
		}
	}
	groupPath := o.GroupFile
	if groupPath == "" {
		groupPath = o.Under(DefaultGroupFile)
	}
	groups, err := readGroups(groupPath)
	if err != nil {
		rep.problem(err)
	}
	for _, s := range sockets {
		fi, err := os.Stat(s)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rep.add(Finding{ID: "docker-socket-missing", Severity: Info, Subject: o.display(s),
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
	var ups []Upstream
	if o.Upstreams != nil {
		if ups, err = o.Upstreams(); err != nil {
			rep.problem(err)
		}
	}

	// The containers.
	root := o.DockerRoot
	if root == "" {
		root = o.Under(DefaultDockerRoot)
		if dc.DataRoot != "" {
			root = o.Under(dc.DataRoot)
		}
	}
	cs, bad, err := readContainers(root, o.display)
	if err != nil {
		rep.problem(err)
	}
	rep.Containers = len(cs) + len(bad)
	rep.add(bad...)
	for _, c := range cs {
		rep.add(containerFindings(c, dc, ups)...)
	}
	if dcKnown {
		rep.add(contentTrustFindings(dc)...)
	}
	sortFindings(rep.Findings)
	return rep
}

// absent says where Docker would leave a trace when none exists, "" when
// one does. Docker counts as installed when any of these exists:
// daemon.json, a docker.service or docker.socket unit (or a
// docker.service.d drop-in directory), the socket, the data root. Without
// daemon.json and a unit, the socket and the data root are at their
// defaults (or the explicit paths).
func (o Options) absent(daemonConfig string, unitDirs []string) string {
	socket := o.Socket
	if socket == "" {
		socket = o.Under(DefaultDockerSocket)
	}
	root := o.DockerRoot
	if root == "" {
		root = o.Under(DefaultDockerRoot)
	}
	places := []string{daemonConfig, socket, root}
	shownDirs := make([]string, len(unitDirs))
	for i, d := range unitDirs {
		places = append(places, filepath.Join(d, "docker.service"), filepath.Join(d, "docker.service.d"), filepath.Join(d, "docker.socket"))
		shownDirs[i] = o.display(d)
	}
	for _, p := range places {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return "" // there, or there but unreadable: Docker may be
		}
	}
	return fmt.Sprintf("Docker is not installed here: no daemon.json (%s), no docker.service or docker.socket unit (in %s), no socket (%s), no data root (%s)",
		o.display(daemonConfig), strings.Join(shownDirs, ", "), o.display(socket), o.display(root))
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
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
func daemonFindings(dc daemonConfig) []Finding {
	var out []Finding
	if isFalse(dc.IPTables) {
		out = append(out, Finding{ID: "daemon-iptables-off", Severity: High, Subject: "daemon.json iptables",
			Message: "Docker writes no firewall rules: no isolation between networks and no NAT, so published ports depend on rules you keep by hand (moat's bans still hold: its own table drops banned clients before any NAT)",
			Fix:     `remove "iptables": false from daemon.json (or set it true) and restart Docker`})
	}
	if !isFalse(dc.ICC) {
		out = append(out, Finding{ID: "daemon-icc", Severity: Medium, Subject: "daemon.json icc",
			Message: "containers on the default bridge reach each other on every port (icc is on, the default)",
			Fix:     `set "icc": false in daemon.json; give containers that must talk a user-defined network`})
	}
	if !isFalse(dc.UserlandProxy) {
		out = append(out, Finding{ID: "daemon-userland-proxy", Severity: Low, Subject: "daemon.json userland-proxy",
			Message: "docker-proxy relays some connections to published ports, and containers then log the gateway's address instead of the client's, which a jail would ban",
			Fix:     `set "userland-proxy": false in daemon.json`})
	}
	if !isTrue(dc.LiveRestore) {
		out = append(out, Finding{ID: "daemon-live-restore", Severity: Low, Subject: "daemon.json live-restore",
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
func contentTrustFindings(dc daemonConfig) []Finding {
	if dc.ContentTrust != nil && dc.ContentTrust.Mode == "enforced" {
		return nil
	}
	msg := "the daemon runs unsigned images: DOCKER_CONTENT_TRUST is a client setting that only the docker CLI reads, and Docker CE has no daemon-side enforcement"
	if len(dc.AuthorizationPlugins) > 0 {
		msg += fmt.Sprintf(" (authorization plugins %s are configured; the audit cannot tell whether they check signatures)", strings.Join(dc.AuthorizationPlugins, ", "))
	}
	return []Finding{{ID: "content-trust-not-enforced", Severity: Info, Subject: "daemon.json content-trust",
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
func apiFindings(dc daemonConfig, exec unitExec) []Finding {
	verify := isTrue(dc.TLSVerify) || exec.boolFlag("--tlsverify")
	tls := verify || isTrue(dc.TLS) || exec.boolFlag("--tls")
	var out []Finding
	report := func(subject, host string) {
		f := Finding{ID: "docker-api-tcp", Subject: subject}
		switch {
		case verify:
			f.Severity = Medium
			f.Message = fmt.Sprintf("the Docker API listens on %s with client-certificate checks (tlsverify); every holder of a certificate from that CA is root on the host", host)
			f.Fix = "serve the API on the unix socket only, or keep the CA for this daemon alone and bind to a management address"
		case tls:
			f.Severity = High
			f.Message = fmt.Sprintf("the Docker API listens on %s with TLS but no client-certificate check (tlsverify off): whoever connects is root on the host", host)
			f.Fix = `set "tlsverify": true with a CA of your own, or serve the API on the unix socket only`
		default:
			f.Severity = High
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
func socketFindings(path string, perm fs.FileMode, uid, gid int, groupSetting string, groups map[string]int) []Finding {
	var out []Finding
	switch {
	case perm&0o002 != 0:
		out = append(out, Finding{ID: "docker-socket-mode", Severity: High, Subject: path,
			Message: fmt.Sprintf("the Docker socket is world-writable (%04o): every local user and process is root on the host", perm),
			Fix:     "chmod 0660 " + path + ` and find what changed it (a unit's SocketMode, a script, a container start)`})
	case perm&^0o660 != 0:
		out = append(out, Finding{ID: "docker-socket-mode", Severity: Medium, Subject: path,
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
		out = append(out, Finding{ID: "docker-socket-owner", Severity: Medium, Subject: path,
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

// name is a container's name, else its short id.
func name(c docker.Container) string {
	if c.Name != "" {
		return c.Name
	}
	return shortID(c.ID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// subject names the container, with its state when it is not running (a
// stopped container with a restart policy runs again at the next boot).
func subject(c docker.Container) string {
	if c.Running {
		return name(c)
	}
	return name(c) + " (stopped)"
}

// readContainers reads every container below root/containers through
// sources/docker. A container whose files cannot be read or decoded becomes
// a container-unreadable finding (show turns its directory into the path to
// print); the error is for a data root that cannot be listed.
func readContainers(root string, show func(string) string) ([]docker.Container, []Finding, error) {
	cs, errs := docker.Scan(root)
	var bad []Finding
	for _, err := range errs {
		var ce *docker.ContainerError
		if !errors.As(err, &ce) {
			return nil, nil, dataRootError(root, err)
		}
		why := ce.Err
		if ce.Decoding {
			why = fmt.Errorf("%s: %w", ce.File, ce.Err)
		}
		bad = append(bad, Finding{ID: "container-unreadable", Severity: Medium, Subject: shortID(ce.ID),
			Message: fmt.Sprintf("%s: %v; this container was not audited", show(ce.Dir), why),
			Fix:     "inspect it with docker inspect; remove it if Docker cannot load it either"})
	}
	return cs, bad, nil
}

// dataRootError says why root/containers could not be listed; nil for a
// data root without containers yet.
func dataRootError(root string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		if _, rerr := os.Stat(root); rerr == nil {
			return nil
		}
		return fmt.Errorf("read docker root: %s does not exist (is Docker installed here? --docker-root names its data root)", root)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe // as os.ReadDir has it, without Scan's words
	}
	return fmt.Errorf("read docker root: %w", err)
}

// dangerousCaps are capabilities that amount to root on the host, or to
// control of its network, from inside a container.
var dangerousCaps = []string{"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH", "BPF"}

// containerFindings judges one container. dc gives the daemon's defaults
// (the default bind address, no-new-privileges, user namespaces); ups are
// the proxy's upstreams, nil when there is no proxy.
func containerFindings(c docker.Container, dc daemonConfig, ups []Upstream) []Finding {
	var out []Finding
	subj := subject(c)
	add := func(id string, sev Severity, msg, fix string) {
		out = append(out, Finding{ID: id, Severity: sev, Subject: subj, Message: msg, Fix: fix})
	}
	h := c.Host
	if h.Privileged {
		add("container-privileged", High,
			"runs privileged: every capability and device, no seccomp or AppArmor; root in it is root on the host",
			"drop --privileged (privileged: true); add only the capabilities and devices it needs")
	}
	if user := strings.TrimSpace(c.User); isRootUser(user) {
		sev, msg := Medium, "runs as root (no USER in the image or the run)"
		if user != "" {
			msg = fmt.Sprintf("runs as root (user %q)", user)
		}
		if dc.UsernsRemap != "" && h.UsernsMode != "host" {
			sev, msg = Low, msg+"; userns-remap maps it to an unprivileged host user"
		}
		add("container-root", sev, msg, "run as an unprivileged user: --user 1000:1000 (user: in compose) or USER in the Dockerfile")
	}
	if len(h.CapAdd) > 0 {
		sev := Medium
		caps := make([]string, 0, len(h.CapAdd))
		for _, cp := range h.CapAdd {
			n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(cp)), "CAP_")
			caps = append(caps, n)
			if slices.Contains(dangerousCaps, n) {
				sev = High
			}
		}
		msg := "adds capabilities " + strings.Join(caps, ", ")
		if sev == High {
			msg += " (each of ALL, SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH, BPF reaches the host or its network)"
		}
		add("container-cap-add", sev, msg, "drop the --cap-add (cap_add:) entries it does not need; start from --cap-drop ALL")
	}
	if h.Memory <= 0 {
		add("container-no-memory-limit", Low, "has no memory limit: it can push the host into swapping or the OOM killer",
			"set --memory (mem_limit: or deploy.resources.limits.memory in compose)")
	}
	if h.PidsLimit == nil || *h.PidsLimit <= 0 {
		add("container-no-pids-limit", Low, "has no pids limit: a fork bomb in it exhausts the host's processes",
			"set --pids-limit (pids_limit: in compose), such as 256")
	}
	for _, opt := range h.SecurityOpt {
		o := strings.ToLower(strings.ReplaceAll(opt, ":", "="))
		if o == "seccomp=unconfined" || o == "apparmor=unconfined" || o == "label=disable" || o == "systempaths=unconfined" {
			add("container-unconfined", Medium, fmt.Sprintf("runs with security option %q, which turns a confinement off", opt),
				"remove the --security-opt "+opt)
		}
	}
	if !dc.NoNewPrivileges && !noNewPrivileges(h.SecurityOpt) {
		add("container-new-privileges", Low,
			"may gain privileges through setuid and file-capability binaries (no-new-privileges is off)",
			`add --security-opt no-new-privileges:true (security_opt: in compose), or "no-new-privileges": true in daemon.json`)
	}
	if !h.ReadonlyRootfs {
		add("container-rootfs-writable", Info,
			"its root filesystem is writable: an intruder can change its programs and hide there",
			"run with --read-only (read_only: true in compose) and a tmpfs or volume for the paths it writes")
	}
	if h.NetworkMode == "host" {
		add("container-host-network", Low,
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
func portFindings(c docker.Container, subj string, dc daemonConfig, ups []Upstream) []Finding {
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
			bindings = map[string][]docker.PortBinding{}
		}
		for _, k := range c.ExposedPorts {
			if len(bindings[k]) == 0 {
				bindings[k] = []docker.PortBinding{{}}
			}
		}
	}
	var out []Finding
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
			out = append(out, Finding{ID: "container-port-all-addresses", Severity: Medium, Subject: subj, Message: msg, Fix: fix})
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
func behindProxy(c docker.Container, cport, hostPort string, ups []Upstream) bool {
	hp, _ := strconv.Atoi(hostPort)
	cp, _ := strconv.Atoi(cport)
	var addrs []string
	for _, n := range c.Networks {
		addrs = append(addrs, n.IPAddress, n.GlobalIPv6Address)
	}
	for _, u := range ups {
		if slices.Contains(addrs, u.Host) && u.Host != "" {
			if u.Port == cp {
				return true
			}
			continue
		}
		if hp != 0 && u.Port == hp {
			return true
		}
	}
	return false
}
