package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/configs/fail2ban"
	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/proxy"
	"github.com/moatproj/moat/sources/docker"
)

func cmdCheck(args []string, io stdio) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default /etc/moat/moat.yaml, else the embedded default)")
	f2bDir := fs.String("fail2ban", "", "also take the enabled jails of this fail2ban configuration directory (such as /etc/fail2ban)")
	asJSON := fs.Bool("json", false, "with --fail2ban: print the effective fail2ban jails as JSON")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: check takes no arguments, got %q", errUsage, pos)
	}
	if *asJSON && *f2bDir == "" {
		return fmt.Errorf("%w: --json goes with --fail2ban DIR", errUsage)
	}
	cfg, f2b, err := loadConfig(*path, *f2bDir, io)
	if err != nil {
		printConfigError(io, err)
		return errors.New("configuration is not valid")
	}
	if *asJSON {
		data, err := f2b.JSON()
		if err == nil {
			data, err = withFilterFiles(data, f2b, cfg.Fail2ban)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(io.stdout, "%s\n", data)
		return err
	}
	fmt.Fprintf(io.stdout, "%s: ok\n", cfg.File)
	for _, w := range cfg.Warnings {
		fmt.Fprintf(io.stdout, "  warning: %s\n", w)
	}
	if f2b != nil {
		fmt.Fprintf(io.stdout, "fail2ban: %s\n", cfg.Fail2ban)
		for _, w := range f2b.Warnings {
			fmt.Fprintf(io.stdout, "  not carried out: %s\n", w)
		}
	}
	fmt.Fprintf(io.stdout, "state_dir %s, socket %s, firewall %s (table %s)\n",
		cfg.StateDir, cfg.Socket, cfg.Firewall.Backend, cfg.Firewall.Table)
	if p := cfg.Proxy; p != nil {
		fmt.Fprintf(io.stdout, "proxy: http %q, https %q, tls %s, %d route(s), rate-limit rejections count in jail %s\n",
			p.HTTP, p.HTTPS, p.TLS.Mode, len(p.Routes), proxy.DefaultJail)
		for _, r := range p.Routes {
			hosts := strings.Join(r.Hosts, ",")
			if hosts == "" {
				hosts = "*"
			}
			path := r.Path
			if path == "" {
				path = "/"
			}
			limit := "no limit"
			if r.Limit != nil {
				limit = fmt.Sprintf("%g/s burst %d", r.Limit.Rate, r.Limit.Burst)
			}
			fmt.Fprintf(io.stdout, "  %s%s -> %s (%s)\n", hosts, path, strings.Join(r.Upstreams, " "), limit)
		}
	}
	fmt.Fprintln(io.stdout)
	tw := tabwriter.NewWriter(io.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JAIL\tFILTER\tMAXRETRY\tFINDTIME\tBANTIME\tPORTS\tBACKEND\tLOGPATH")
	for _, j := range cfg.Jails {
		logs := slices.Clone(j.LogPath)
		for _, c := range j.Containers {
			logs = append(logs, "container:"+c)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", j.Name, filterLabel(j.Filter), j.MaxRetry,
			j.FindTime, banTimeLabel(j.BanTime), portsLabel(j.Ports), backendLabel(j), strings.Join(logs, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printJournal(io, cfg)
	printContainers(io, cfg)
	return nil
}

// backendLabel says where a jail's lines come from: its backend as
// written, and with auto what it was worked out to.
func backendLabel(j configs.Jail) string {
	switch {
	case j.Backend == configs.BackendAuto && j.Journal:
		return "auto: journal"
	case j.Backend == configs.BackendAuto:
		return "auto: files"
	case j.Backend != "":
		return j.Backend
	case j.Journal:
		return "journal"
	case len(j.LogPath) == 0 && len(j.Containers) == 0:
		return "-"
	}
	return "files"
}

// printJournal lists the jails that read the systemd journal, each with
// the entries it reads and, for auto, why.
func printJournal(io stdio, cfg *configs.Config) {
	header := false
	for _, j := range cfg.Jails {
		if !j.Journal {
			continue
		}
		if !header {
			fmt.Fprintf(io.stdout, "\njournal:\n")
			header = true
		}
		match := j.JournalMatch.String()
		if match == "" {
			match = "every entry (no journalmatch)"
		}
		why := ""
		if j.Backend == configs.BackendAuto && len(j.LogPath) > 0 {
			why = " (backend auto: no file matches " + strings.Join(j.LogPath, " ") + ")"
		}
		fmt.Fprintf(io.stdout, "  %s: %s%s\n", j.Name, match, why)
	}
}

// printContainers says which containers the jails' selectors pick now in
// Docker's data root, and which of them moat cannot read and why.
func printContainers(io stdio, cfg *configs.Config) {
	var any bool
	for _, j := range cfg.Jails {
		any = any || len(j.Containers) > 0
	}
	if !any {
		return
	}
	cs, errs := docker.Scan(cfg.Docker.Root)
	fmt.Fprintf(io.stdout, "\ncontainers in %s:\n", cfg.Docker.Root)
	for _, err := range errs {
		fmt.Fprintf(io.stdout, "  unreadable: %v\n", err)
	}
	for _, j := range cfg.Jails {
		sels, err := docker.ParseSelectors(j.Containers)
		if err != nil || len(sels) == 0 {
			continue
		}
		var picked []string
		for _, c := range cs {
			if !docker.MatchAny(sels, c) {
				continue
			}
			if p := docker.DriverProblem(c); p != "" {
				picked = append(picked, c.Name+" (not readable: "+p+")")
			} else {
				picked = append(picked, c.Name)
			}
		}
		if len(picked) == 0 {
			picked = []string{"none yet (followed when they appear)"}
		}
		fmt.Fprintf(io.stdout, "  %s: %s\n", j.Name, strings.Join(picked, "; "))
	}
}

// printConfigError prints each configuration error on a line of its own.
func printConfigError(io stdio, err error) {
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		for _, e := range multi.Unwrap() {
			fmt.Fprintln(io.stderr, e)
		}
		return
	}
	fmt.Fprintln(io.stderr, err)
}

// loadConfig loads and validates a configuration, loading every jail's
// filter so that a filter that does not exist is an error of the file. With
// a fail2ban directory (the --fail2ban flag or the fail2ban: key), the
// enabled jails of its jail.conf, jail.local and jail.d join the file's
// (without a file, the directory is the whole configuration: the embedded
// default brings its settings but not its jail); their filters come from
// its filter.d, then moat's built-ins. A jail of both is an error naming
// both places. The fail2ban result is nil without such a directory.
func loadConfig(path, fail2banDir string, io stdio) (*configs.Config, *fail2ban.Result, error) {
	cfg, err := configs.Load(path, configs.Options{
		Env:         envFrom(io),
		CheckFilter: func(f configs.Filter) error { _, err := buildFilter(f, ""); return err },
		Fail2ban:    fail2banDir,
	})
	if err == nil && cfg.Proxy != nil {
		if perr := proxy.Check(*cfg.Proxy); perr != nil {
			return nil, nil, errors.Join(&configs.Error{File: cfg.File, Line: cfg.Proxy.Line, Field: "proxy", Problem: perr.Error(), Err: perr})
		}
	}
	if err != nil || cfg.Fail2ban == "" {
		return cfg, nil, err
	}
	res, err := fail2ban.Load(cfg.Fail2ban, fail2ban.Options{})
	if err != nil {
		return nil, nil, err
	}
	filterDir := filepath.Join(cfg.Fail2ban, "filter.d")
	var errs []error
	for _, j := range res.Jails {
		if i := slices.IndexFunc(cfg.Jails, func(c configs.Jail) bool { return c.Name == j.Name }); i >= 0 {
			errs = append(errs, bothPlaces(cfg, cfg.Jails[i], j))
			continue
		}
		jc := j.Jail
		jc.Filter.Dirs = []string{filterDir}
		if _, err := buildFilter(jc.Filter, jc.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: jail %s: filter %s: %w", j.File, j.Name, jc.Filter.Name, err))
			continue
		}
		cfg.Jails = append(cfg.Jails, jc)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if len(cfg.Jails) == 0 {
		return nil, nil, fmt.Errorf("%s: no enabled jail here or in %s: nothing to guard", cfg.File, cfg.Fail2ban)
	}
	return cfg, res, nil
}

// bothPlaces is the error for a jail of the YAML file that the fail2ban
// directory enables too: it names both and the ways out.
func bothPlaces(cfg *configs.Config, y configs.Jail, f fail2ban.Jail) error {
	where := fmt.Sprintf("%s:%d [%s]", f.File, f.Line, f.Name)
	if f.EnabledAt != "" && !strings.HasPrefix(f.EnabledAt, f.File+":") {
		where += ", enabled in " + f.EnabledAt
	}
	return &configs.Error{File: cfg.File, Line: y.Line, Field: "jails." + y.Name,
		Problem: fmt.Sprintf("is also a jail of the fail2ban directory %s (%s)", cfg.Fail2ban, where),
		Want: fmt.Sprintf("one jail of each name: rename this one, or disable one of the two (enabled: false here, or enabled = false in [%s] of %s)",
			f.Name, filepath.Join(cfg.Fail2ban, "jail.local"))}
}

// buildFilter compiles a jail's filter: a name, a path or inline regexes;
// a named filter gets the logtype of the jail's source (see
// filters.Loader.LoadLogType).
func buildFilter(f configs.Filter, jailName string) (*filters.Filter, error) {
	loader := &filters.Loader{Dirs: f.Dirs}
	if f.Name != "" {
		return loader.LoadLogType(f.Name, f.LogType)
	}
	return loader.Inline(jailName, f.FailRegex, f.IgnoreRegex)
}

// filterLabel names a jail's filter and, for a named one, the file (or
// "built-in NAME") filters.Resolve finds for it: what the daemon will run.
func filterLabel(f configs.Filter) string {
	if f.Name != "" {
		return f.Name + " (" + filterSource(f) + ")"
	}
	if len(f.FailRegex) == 0 {
		return "(proxy: 429s)"
	}
	return fmt.Sprintf("(inline, %d failregex)", len(f.FailRegex))
}

func banTimeLabel(d time.Duration) string {
	if d < 0 {
		return "never ends"
	}
	return d.String()
}

func portsLabel(ps []firewall.PortRange) string {
	if len(ps) == 0 {
		return "all"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		if p.First == p.Last {
			s[i] = fmt.Sprint(p.First)
		} else {
			s[i] = fmt.Sprintf("%d-%d", p.First, p.Last)
		}
	}
	return strings.Join(s, ",")
}
