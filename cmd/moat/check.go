package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/firewall"
)

func cmdCheck(args []string, io stdio) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default /etc/moat/moat.yaml, else the embedded default)")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: check takes no arguments, got %q", errUsage, pos)
	}
	cfg, err := loadConfig(*path, io)
	if err != nil {
		printConfigError(io, err)
		return errors.New("configuration is not valid")
	}
	fmt.Fprintf(io.stdout, "%s: ok\n", cfg.File)
	fmt.Fprintf(io.stdout, "state_dir %s, socket %s, firewall %s (table %s)\n\n",
		cfg.StateDir, cfg.Socket, cfg.Firewall.Backend, cfg.Firewall.Table)
	tw := tabwriter.NewWriter(io.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JAIL\tFILTER\tMAXRETRY\tFINDTIME\tBANTIME\tPORTS\tLOGPATH")
	for _, j := range cfg.Jails {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", j.Name, filterLabel(j.Filter), j.MaxRetry,
			j.FindTime, banTimeLabel(j.BanTime), portsLabel(j.Ports), strings.Join(j.LogPath, " "))
	}
	return tw.Flush()
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
// filter so that a filter that does not exist is an error of the file.
func loadConfig(path string, io stdio) (*configs.Config, error) {
	return configs.Load(path, configs.Options{
		Env:         envFrom(io),
		CheckFilter: func(f configs.Filter) error { _, err := buildFilter(f, ""); return err },
	})
}

// buildFilter compiles a jail's filter: a name, a path or inline regexes.
func buildFilter(f configs.Filter, jailName string) (*filters.Filter, error) {
	loader := &filters.Loader{}
	if f.Name != "" {
		return loader.Load(f.Name)
	}
	return loader.Inline(jailName, f.FailRegex, f.IgnoreRegex)
}

func filterLabel(f configs.Filter) string {
	if f.Name != "" {
		return f.Name
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
