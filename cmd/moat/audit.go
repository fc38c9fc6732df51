package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moatproj/moat/audit"
	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/proxy"
)

// moat audit: the flags, moat's own configuration (for the proxy's
// upstreams) and the printing. The audit itself, which reads Docker's files
// and judges them, is package audit.

func cmdAudit(args []string, io stdio) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var o audit.Options
	fs.StringVar(&o.DockerRoot, "docker-root", "", "Docker's data root (default daemon.json's data-root, else "+audit.DefaultDockerRoot+")")
	fs.StringVar(&o.DaemonConfig, "daemon-config", "", "the Docker daemon's configuration (default "+audit.DefaultDaemonConfig+"; a missing file means Docker's defaults)")
	fs.StringVar(&o.Socket, "docker-socket", "", "the socket to check (default the unix:// hosts of daemon.json and the unit, else "+audit.DefaultDockerSocket+")")
	unitDirs := fs.String("unit-dirs", "", "comma-separated systemd unit directories, most important first (default "+strings.Join(audit.DefaultUnitDirs, ",")+")")
	fs.StringVar(&o.GroupFile, "group-file", "", "the group database naming the socket's group (default "+audit.DefaultGroupFile+")")
	moatConfig := fs.String("config", "", "moat's configuration, for the proxy's upstreams (default "+configs.SystemPath+" when it exists)")
	fs.StringVar(&o.Root, "root", "", "read the host's files below this directory (a mounted host filesystem); explicit paths are taken as given")
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
		o.UnitDirs = strings.Split(*unitDirs, ",")
	}
	env := envFrom(io)
	o.Upstreams = func() ([]audit.Upstream, error) { return proxyUpstreams(o, *moatConfig, env) }

	rep := audit.Host(o)
	if rep.NotInstalled != "" {
		// Nothing about Docker to report: no findings, and no warning
		// about --accept entries that had nothing to match.
		if *asJSON {
			fmt.Fprintln(io.stdout, "[]")
			fmt.Fprintf(io.stderr, "moat: audit: %s; nothing to audit\n", rep.NotInstalled)
			return nil
		}
		for _, l := range wrap(rep.NotInstalled+"; nothing to audit.", auditWidth(io)) {
			fmt.Fprintln(io.stdout, l)
		}
		return nil
	}
	for _, a := range rep.Accept(accept) {
		fmt.Fprintf(io.stderr, "moat: audit: --accept %s matched no finding\n", a)
	}
	if *asJSON {
		out := rep.Findings
		if out == nil {
			out = []audit.Finding{}
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
	for _, p := range rep.Problems {
		fmt.Fprintf(io.stderr, "moat: audit: %v\n", p)
	}
	switch {
	case len(rep.Problems) > 0:
		return fmt.Errorf("audit incomplete: %d input(s) could not be read", len(rep.Problems))
	case rep.Highs() > 0:
		return fmt.Errorf("audit: %d high-severity finding(s)", rep.Highs())
	}
	return nil
}

// auditMaxWidth is the widest the findings are printed: they fit a
// 100-column terminal, and a narrower one when standard output is one.
const auditMaxWidth = 100

func auditWidth(io stdio) int {
	if w := io.stdoutWidth; w >= 40 && w < auditMaxWidth {
		return w
	}
	return auditMaxWidth
}

// printFindings prints one finding per block: severity, id and subject on
// the first line, then the message and the fix, wrapped and indented.
func printFindings(io stdio, rep audit.Report) error {
	var counts [audit.Info + 1]int
	idWidth := len("ID")
	for _, f := range rep.Findings {
		counts[f.Severity]++
		idWidth = max(idWidth, len(f.ID))
	}
	width := auditWidth(io)
	const indent = len("SEVERITY") + 2
	if len(rep.Findings) > 0 {
		// The subject's column follows the longest id; on a narrow
		// terminal the subject goes below, indented as the message.
		head := func(sev, id, subject string) {
			col := indent + idWidth + 2
			first := fmt.Sprintf("%-*s%-*s  ", indent, sev, idWidth, id)
			if width-col < 20 {
				fmt.Fprintln(io.stdout, strings.TrimRight(first, " "))
				col, first = indent, strings.Repeat(" ", indent)
			}
			for i, l := range wrap(subject, width-col) {
				if i > 0 {
					first = strings.Repeat(" ", col)
				}
				fmt.Fprintln(io.stdout, first+l)
			}
		}
		head("SEVERITY", "ID", "SUBJECT")
		pad := strings.Repeat(" ", indent)
		for _, f := range rep.Findings {
			head(f.Severity.String(), f.ID, f.Subject)
			for _, l := range wrap(f.Message, width-indent) {
				fmt.Fprintln(io.stdout, pad+l)
			}
			for i, l := range wrap("fix: "+f.Fix, width-indent-5) {
				if i > 0 {
					l = "     " + l
				}
				fmt.Fprintln(io.stdout, pad+l)
			}
		}
		fmt.Fprintln(io.stdout)
	}
	accepted := ""
	if rep.Accepted > 0 {
		accepted = fmt.Sprintf("; %d accepted", rep.Accepted)
	}
	_, err := fmt.Fprintf(io.stdout, "%d finding(s): %d high, %d medium, %d low, %d info; %d container(s) read%s\n",
		len(rep.Findings), counts[audit.High], counts[audit.Medium], counts[audit.Low], counts[audit.Info], rep.Containers, accepted)
	return err
}

// wrap breaks text into lines of at most width bytes at spaces, and a word
// longer than width (a path, a container id) into pieces.
func wrap(text string, width int) []string {
	width = max(width, 10)
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		for len(w) > width {
			if line != "" {
				lines = append(lines, line)
				line = ""
			}
			lines = append(lines, w[:width])
			w = w[width:]
		}
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" || lines == nil {
		lines = append(lines, line)
	}
	return lines
}

// acceptList is the --accept flag: findings the operator has accepted, as
// ID (every subject), ID:SUBJECT, or *:SUBJECT (every finding of a
// subject, such as moat's own container); audit.Report.Accept applies it.
type acceptList []string

func (a *acceptList) String() string { return strings.Join(*a, ",") }

func (a *acceptList) Set(v string) error {
	if id, _, _ := strings.Cut(v, ":"); id == "" {
		return fmt.Errorf("want ID or ID:SUBJECT, got %q", v)
	}
	*a = append(*a, v)
	return nil
}

// proxyUpstreams returns the upstreams of moat's proxy: from path, else
// the system file below the audit's root when it exists; none without a
// proxy.
func proxyUpstreams(o audit.Options, path string, env configs.Env) ([]audit.Upstream, error) {
	if path == "" {
		path = o.Under(configs.SystemPath)
		if _, err := os.Stat(path); err != nil {
			return nil, nil
		}
	}
	cfg, err := configs.Load(path, configs.Options{Env: env})
	if err != nil {
		return nil, fmt.Errorf("moat config: %w", err)
	}
	if cfg.Proxy == nil {
		return nil, nil
	}
	var ups []audit.Upstream
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
			ups = append(ups, audit.Upstream{Host: u.Hostname(), Port: port})
		}
	}
	if ups == nil {
		ups = []audit.Upstream{} // a proxy without routes still fronts nothing
	}
	return ups, nil
}
