package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	goio "io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/fail2ban/emulate"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// it comes from the module's build information.
var version = ""

// stdio is what a subcommand reads and writes: the process's streams and
// environment in main, buffers and a map in tests.
type stdio struct {
	stdout, stderr goio.Writer
	getenv         func(string) string
	// stderrIsTerminal selects the text log handler (unless
	// --log-format or $MOAT_LOG_FORMAT says).
	stderrIsTerminal bool
	// stdoutWidth is the width of the terminal on standard output, 0 when
	// it is not one.
	stdoutWidth int
}

func newIO() stdio {
	return stdio{
		stdout:           os.Stdout,
		stderr:           os.Stderr,
		getenv:           os.Getenv,
		stderrIsTerminal: isTerminal(os.Stderr),
		stdoutWidth:      terminalWidth(os.Stdout),
	}
}

// errUsage marks an error caused by the command line itself (exit code 2).
var errUsage = errors.New("usage")

// command documents one subcommand: its synopsis, what it does, an
// example, and which global flags it takes. run dispatches on the name.
type command struct {
	name     string
	synopsis string // after "moat NAME"
	summary  string // one line, for the general help
	about    string // more, for the command's help; may be empty
	example  string // one or more lines
	globals  []string
}

// The global flags: given before the subcommand they are passed to it, so
// `moat --socket P status` is `moat status --socket P`.
const (
	gSocket   = "socket"
	gConfig   = "config"
	gFail2ban = "fail2ban"
)

var globalFlags = []struct{ name, arg, usage string }{
	{gSocket, "PATH", "the daemon's control socket (default $MOAT_SOCKET, else /run/moat/moat.sock for root,\n                   $XDG_RUNTIME_DIR/moat/moat.sock otherwise)"},
	{gConfig, "FILE", "moat's configuration (default /etc/moat/moat.yaml, else the embedded default)"},
	{gFail2ban, "DIR", "also take the enabled jails of a fail2ban configuration (such as /etc/fail2ban)"},
}

var commands = []command{
	{name: "run", synopsis: "[--config FILE] [--fail2ban DIR] [--log-format text|json]", summary: "run the daemon",
		about:   "Logs are text when standard error is a terminal and JSON otherwise, unless --log-format\n(or $MOAT_LOG_FORMAT) says; $MOAT_LOG_LEVEL=debug|warn|error sets the level.",
		example: "moat run --config /etc/moat/moat.yaml --log-format json", globals: []string{gConfig, gFail2ban}},
	{name: "check", synopsis: "[--config FILE] [--fail2ban DIR [--json]]", summary: "validate the configuration and print the effective jails",
		example: "moat check --config /etc/moat/moat.yaml", globals: []string{gConfig, gFail2ban}},
	{name: "status", synopsis: "[JAIL] [--socket PATH]", summary: "counters and banned addresses, per jail",
		example: "moat status sshd", globals: []string{gSocket}},
	{name: "bans", synopsis: "[--jail J] [--json] [--socket PATH]", summary: "list active bans",
		example: "moat bans --jail sshd --json", globals: []string{gSocket}},
	{name: "ban", synopsis: "ADDR --jail J [--for DURATION] [--force] [--socket PATH]", summary: "ban an address or prefix in a jail",
		about:   "Without --for the jail's bantime applies; --for -1 bans without end.",
		example: "moat ban 192.0.2.7 --jail sshd --for 12h\nmoat ban 198.51.100.0/24 --jail sshd", globals: []string{gSocket}},
	{name: "unban", synopsis: "ADDR [--jail J] | --all [--socket PATH]", summary: "lift a ban, or all of them",
		example: "moat unban 192.0.2.7\nmoat unban --all", globals: []string{gSocket}},
	{name: "client", synopsis: "[-s PATH] status [JAIL] | set JAIL banip|unbanip ADDR... |\n                unban --all|ADDR... | banned [ADDR...] | get JAIL banned [ADDR...]",
		summary: "fail2ban-client's common forms, with its output",
		example: "moat client status sshd\nmoat client set sshd banip 192.0.2.7", globals: []string{gSocket}},
	{name: "regex", synopsis: "[OPTIONS] LOG FILTER [IGNOREREGEX]", summary: "test a filter as fail2ban-regex does",
		about:   "OPTIONS are fail2ban-regex's: -c DIR, -d PATTERN, -L N, -r, -o OUT, -v, --print-all-matched,\n--print-all-missed, --print-all-ignored, --print-no-missed, --print-no-ignored.",
		example: "moat regex /var/log/auth.log sshd\nmoat regex -o ip /var/log/auth.log 'sshd[mode=aggressive]'"},
	{name: "audit", synopsis: "[--docker-root DIR] [--daemon-config FILE] [--accept ID[:SUBJECT]] [--json] ...",
		summary: "check the Docker host against hardening advice",
		example: "moat audit\nmoat audit --accept container-cap-add:moat --json", globals: []string{gConfig}},
	{name: "firewall", synopsis: "remove [--config FILE] [--socket PATH]", summary: "delete moat's nftables table (with the daemon stopped)",
		about:   "The daemon leaves its table (table inet moat, or firewall.table) in the kernel when it stops,\nso bans hold across restarts; this removes it. It is refused while the daemon runs.",
		example: "moat firewall remove", globals: []string{gConfig, gSocket}},
	{name: "version", summary: "print moat's version", example: "moat version"},
	{name: "help", synopsis: "[COMMAND]", summary: "this help, or a command's flags and an example", example: "moat help ban"},
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// generalUsage is `moat help`: every command, the global flags.
func generalUsage() string {
	var b strings.Builder
	b.WriteString("moat guards a Docker host: logs → jails → nftables bans.\n\nUsage: moat [GLOBAL FLAGS] COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nGlobal flags, before or after the command (each where the command takes it):\n")
	for _, g := range globalFlags {
		fmt.Fprintf(&b, "  --%-14s %s\n", g.name+" "+g.arg, g.usage)
	}
	b.WriteString("\nmoat help COMMAND (or moat COMMAND --help) shows a command's flags and an example.\n")
	return b.String()
}

// commandUsage is a command's help: synopsis, what it does, its flags
// (when fs is not nil) and an example.
func commandUsage(c command, fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: moat %s %s\n\n%s.\n", c.name, c.synopsis, upperFirst(c.summary))
	if c.about != "" {
		fmt.Fprintf(&b, "%s\n", c.about)
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			b.WriteString("\nFlags:\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
		}
	}
	b.WriteString("\nExample:\n")
	for line := range strings.SplitSeq(c.example, "\n") {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// isHelp says whether an argument asks for help.
func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// hoistGlobals takes the global flags standing before the subcommand and
// returns the subcommand, its arguments with those flags put in front, and
// the names of the flags given.
func hoistGlobals(args []string) (cmd string, rest []string, given []string, err error) {
	var lead []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		a := args[0]
		if isHelp(a) || a == "--version" || a == "-version" {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		known := slices.ContainsFunc(globalFlags, func(g struct{ name, arg, usage string }) bool { return g.name == name })
		if !known {
			return "", nil, nil, fmt.Errorf("%w: unknown flag %s before the command (global flags: --socket, --config, --fail2ban; see moat help)", errUsage, a)
		}
		n := 1
		if !hasValue {
			if len(args) < 2 {
				return "", nil, nil, fmt.Errorf("%w: flag %s needs a value", errUsage, a)
			}
			n = 2
		}
		lead = append(lead, args[:n]...)
		given = append(given, name)
		args = args[n:]
	}
	if len(args) == 0 {
		if len(lead) > 0 {
			return "", nil, nil, fmt.Errorf("%w: no command after %s (see moat help)", errUsage, strings.Join(lead, " "))
		}
		return "", nil, nil, nil
	}
	return args[0], append(lead, args[1:]...), given, nil
}

// run is the whole command line: it returns the process's exit code.
func run(ctx context.Context, args []string, io stdio) int {
	return exitCode(dispatch(ctx, args, io), io)
}

func dispatch(ctx context.Context, args []string, io stdio) error {
	cmd, rest, given, err := hoistGlobals(args)
	if err != nil {
		return err
	}
	if cmd == "" {
		fmt.Fprint(io.stderr, generalUsage())
		return errShown
	}
	if c, ok := lookupCommand(cmd); ok {
		for _, g := range given {
			if !slices.Contains(c.globals, g) {
				return fmt.Errorf("%w: --%s does not apply to %s (see moat help %s)", errUsage, g, cmd, cmd)
			}
		}
		// regex and client parse their arguments in fail2ban/emulate, as
		// fail2ban's tools do; their help is moat's.
		if (cmd == "regex" || cmd == "client") && slices.ContainsFunc(rest, isHelp) {
			fmt.Fprint(io.stdout, commandUsage(c, nil))
			return nil
		}
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, io)
	case "check":
		return cmdCheck(rest, io)
	case "status":
		return cmdStatus(ctx, rest, io)
	case "bans":
		return cmdBans(ctx, rest, io)
	case "ban":
		return cmdBan(ctx, rest, io)
	case "unban":
		return cmdUnban(ctx, rest, io)
	case "regex":
		return cmdRegex(rest, io)
	case "client":
		return cmdClient(ctx, rest, io)
	case "audit":
		return cmdAudit(rest, io)
	case "firewall":
		return cmdFirewall(ctx, rest, io)
	case "version", "--version", "-version":
		if len(rest) > 0 && !slices.ContainsFunc(rest, isHelp) {
			return fmt.Errorf("%w: version takes no arguments", errUsage)
		}
		if len(rest) > 0 {
			c, _ := lookupCommand("version")
			fmt.Fprint(io.stdout, commandUsage(c, nil))
			return nil
		}
		fmt.Fprintf(io.stdout, "moat %s\n", moatVersion())
		return nil
	case "help", "-h", "--help", "-help":
		return cmdHelp(ctx, rest, io)
	}
	return fmt.Errorf("%w: unknown command %q (see moat help)", errUsage, cmd)
}

// cmdHelp is `moat help [COMMAND]`: a command's help is what COMMAND
// --help prints.
func cmdHelp(ctx context.Context, args []string, io stdio) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(io.stdout, generalUsage())
		return nil
	case len(args) > 1:
		return fmt.Errorf("%w: help takes one command, got %q", errUsage, args)
	}
	if _, ok := lookupCommand(args[0]); !ok || args[0] == "help" {
		if ok {
			fmt.Fprint(io.stdout, generalUsage())
			return nil
		}
		return fmt.Errorf("%w: no command %q (see moat help)", errUsage, args[0])
	}
	return dispatch(ctx, []string{args[0], "--help"}, io)
}

// errShown is an error already printed: exit 2, nothing more said.
var errShown = errors.New("usage shown")

func exitCode(err error, io stdio) int {
	var exit *emulate.ExitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errShown):
		return 2
	case errors.As(err, &exit):
		// fail2ban-client prints a NOK answer on standard output, and
		// only logs some errors (on standard error).
		if exit.Msg != "" {
			fmt.Fprintln(io.stdout, exit.Msg)
		}
		if exit.Log != "" {
			fmt.Fprintf(io.stderr, "moat: %s\n", exit.Log)
		}
		return exit.Code
	case errors.Is(err, errUsage), errors.Is(err, emulate.ErrUsage):
		fmt.Fprintf(io.stderr, "moat: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	default:
		fmt.Fprintf(io.stderr, "moat: %v\n", err)
		return 1
	}
}

func moatVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// parseArgs parses flags that may stand before, between or after the
// positional arguments (`moat ban 192.0.2.7 --jail sshd`), and returns the
// positionals. -h or --help prints the command's help on standard output
// and returns flag.ErrHelp (exit 0); a bad flag is a usage error naming the
// command.
func parseArgs(fs *flag.FlagSet, args []string, io stdio) ([]string, error) {
	fs.SetOutput(goio.Discard) // the errors are returned, the help printed below
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				if c, ok := lookupCommand(fs.Name()); ok {
					fmt.Fprint(io.stdout, commandUsage(c, fs))
				}
				return nil, err
			}
			msg := err.Error()
			if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
				msg = "unknown flag " + f
			}
			return nil, fmt.Errorf("%w: %s: %s (see moat help %s)", errUsage, fs.Name(), msg, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// socketFlag adds --socket to a subcommand and returns a func that resolves
// it: the flag, then $MOAT_SOCKET, then the default for this user.
func socketFlag(fs *flag.FlagSet, io stdio) func() string {
	s := fs.String("socket", "", "control socket of the daemon (default $MOAT_SOCKET or the config's default)")
	return func() string {
		if *s != "" {
			return *s
		}
		if v := io.getenv("MOAT_SOCKET"); v != "" {
			return v
		}
		return configs.DefaultSocket(envFrom(io))
	}
}

// envFrom is configs.EnvFromOS with the environment of io (so tests control it).
func envFrom(io stdio) configs.Env {
	env := configs.EnvFromOS()
	env.XDGStateHome = io.getenv("XDG_STATE_HOME")
	env.XDGRuntimeDir = io.getenv("XDG_RUNTIME_DIR")
	if h := io.getenv("HOME"); h != "" {
		env.Home = h
	}
	return env
}
