// Package emulate reproduces fail2ban's command-line tools: fail2ban-regex's
// and fail2ban-client's arguments and output, byte for byte, and Python's
// formatting of values (repr of strings, lists and dicts, floats of times,
// decoded log lines) as fail2ban prints them. cmd/moat's `moat regex` and
// `moat client` are thin calls into it, so that operators' scripts written
// for fail2ban keep working.
//
// It owns the emulation and nothing else. It must not decide bans nor touch
// the firewall: fail2ban-regex's matching is the filters package's, and
// fail2ban-client's commands go to the daemon through the control API's
// client (jail/control), which decides. It must not import the proxy, a
// firewall backend (firewall/nftables, firewall/none), the log sources, or
// serve anything (no net/http server): it reads files, writes to the
// writers it is given and asks the daemon over its socket.
package emulate

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// IO is what a command reads and writes: the process's streams and
// environment in moat, buffers and a map in tests.
type IO struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// ErrUsage marks an error caused by the command line itself: moat exits
// with code 2 for it, as for its own usage errors.
var ErrUsage = errors.New("usage")

// ExitError carries an exit code other than 1, with the message to print on
// standard output (fail2ban-client prints a NOK answer there and exits 255).
type ExitError struct {
	Code int
	// Msg is printed on standard output (fail2ban-client's NOK answer);
	// Log, when set, on standard error (what fail2ban-client only logs).
	Msg, Log string
}

func (e *ExitError) Error() string {
	if e.Msg == "" {
		return e.Log
	}
	return e.Msg
}

// parseOptions parses options that may stand before, between or after the
// positional arguments, as fail2ban-regex's optparse takes them, and
// returns the positionals.
func parseOptions(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		case fs.NArg() == 0:
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
