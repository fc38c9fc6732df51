package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
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
	stdout, stderr io.Writer
	getenv         func(string) string
	// stderrIsTerminal selects the text log handler.
	stderrIsTerminal bool
}

func newIO() stdio {
	fi, err := os.Stderr.Stat()
	return stdio{
		stdout:           os.Stdout,
		stderr:           os.Stderr,
		getenv:           os.Getenv,
		stderrIsTerminal: err == nil && fi.Mode()&os.ModeCharDevice != 0,
	}
}

// errUsage marks an error caused by the command line itself (exit code 2).
var errUsage = errors.New("usage")

const usage = `moat guards a Docker host: logs → jails → nftables bans.

Usage:
  moat run     [--config FILE] [--fail2ban DIR]            run the daemon
  moat check   [--config FILE] [--fail2ban DIR [--json]]   validate and print the effective jails
  moat status  [JAIL]                          counters and banned addresses, per jail
  moat bans    [--jail J] [--json]             list active bans
  moat ban     ADDR --jail J [--for DURATION] [--force]
  moat unban   ADDR [--jail J] | --all
  moat client  fail2ban-client's forms: status [JAIL] | set JAIL banip|unbanip ADDR... |
               unban --all|ADDR... | banned [ADDR...] | get JAIL banned [ADDR...]
  moat regex   [OPTIONS] LOG FILTER [IGNOREREGEX]  test a filter as fail2ban-regex does
  moat audit   [--docker-root DIR] [--daemon-config FILE] [--json]  check Docker against hardening advice
  moat version

The CLI finds the daemon through --socket PATH, $MOAT_SOCKET, or the default
(/run/moat/moat.sock for root; $XDG_RUNTIME_DIR/moat/moat.sock otherwise).
`

// run is the whole command line: it returns the process's exit code.
func run(ctx context.Context, args []string, io stdio) int {
	if len(args) == 0 {
		fmt.Fprint(io.stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, io)
	case "check":
		err = cmdCheck(rest, io)
	case "status":
		err = cmdStatus(ctx, rest, io)
	case "bans":
		err = cmdBans(ctx, rest, io)
	case "ban":
		err = cmdBan(ctx, rest, io)
	case "unban":
		err = cmdUnban(ctx, rest, io)
	case "regex":
		err = cmdRegex(rest, io)
	case "client":
		err = cmdClient(ctx, rest, io)
	case "audit":
		err = cmdAudit(rest, io)
	case "version", "--version", "-version":
		fmt.Fprintf(io.stdout, "moat %s\n", moatVersion())
	case "help", "-h", "--help", "-help":
		fmt.Fprint(io.stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q (see moat help)", errUsage, cmd)
	}
	var exit *emulate.ExitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &exit):
		// fail2ban-client prints a NOK answer on standard output.
		fmt.Fprintln(io.stdout, exit.Msg)
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
// positionals.
func parseArgs(fs *flag.FlagSet, args []string, io stdio) ([]string, error) {
	fs.SetOutput(io.stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
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
