package main

import (
	"context"
	"flag"
	"time"

	"github.com/moatproj/moat/fail2ban/emulate"
)

// cmdRegex is `moat regex [OPTIONS] LOG FILTER [IGNOREREGEX]`,
// fail2ban-regex's command line (see fail2ban/emulate).
func cmdRegex(args []string, io stdio) error {
	return emulate.Regex(args, io.emulate(), time.Now)
}

// cmdClient is `moat client`, fail2ban-client's common forms (see
// fail2ban/emulate), with moat's --socket beside fail2ban-client's -s.
func cmdClient(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	socket := socketFlag(fs, io)
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	return emulate.Client(ctx, fs, args, io.emulate(), socket)
}

// emulate is io as fail2ban/emulate takes it.
func (io stdio) emulate() emulate.IO {
	return emulate.IO{Stdout: io.stdout, Stderr: io.stderr, Getenv: io.getenv}
}
