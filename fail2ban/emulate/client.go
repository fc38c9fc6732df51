package emulate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/jail/control"
)

// Client speaks fail2ban-client's common forms, with its output layout
// (moat client):
//
//	status [JAIL]
//	set JAIL banip ADDR...
//	set JAIL unbanip [--report-absent] ADDR...
//	unban --all | ADDR...
//	banned [ADDR...]
//	get JAIL banned [ADDR...]
//
// Each goes to the daemon through the control API, at the socket -s names
// or else the one socket returns. fs holds the caller's own flags (moat's
// --socket), which args may set with fail2ban-client's -s and -c; ctx
// bounds the whole command. A NOK answer is an *ExitError.
func Client(ctx context.Context, fs *flag.FlagSet, args []string, std IO, socket func() string) error {
	s := fs.String("s", "", "control socket (fail2ban-client's -s)")
	fs.String("c", "", "fail2ban configuration directory (accepted and ignored)")
	fs.SetOutput(std.Stderr)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	path := socket()
	if *s != "" {
		path = *s
	}
	c := &f2bClient{c: control.NewClient(path), out: std.Stdout}
	a := fs.Args()
	switch {
	case len(a) == 0:
		return fmt.Errorf("%w: client needs a command: status, set, unban, banned, get", ErrUsage)
	case a[0] == "status" && len(a) <= 2:
		return c.status(ctx, a[1:])
	case a[0] == "set" && len(a) >= 4 && a[2] == "banip":
		return c.banip(ctx, a[1], a[3:])
	case a[0] == "set" && len(a) >= 4 && a[2] == "unbanip":
		return c.unbanip(ctx, a[1], a[3:])
	case a[0] == "unban" && len(a) >= 2:
		return c.unban(ctx, a[1:])
	case a[0] == "banned":
		return c.banned(ctx, a[1:])
	case a[0] == "get" && len(a) >= 3 && a[2] == "banned":
		return c.getBanned(ctx, a[1], a[3:])
	}
	return fmt.Errorf("%w: client: unsupported command %q (moat speaks status, set JAIL banip|unbanip, unban, banned, get JAIL banned)", ErrUsage, strings.Join(a, " "))
}

type f2bClient struct {
	c   *control.Client
	out io.Writer
}

// nok turns the daemon's refusal into fail2ban-client's NOK exit.
func nok(err error) error {
	var api *control.APIError
	if errors.As(err, &api) {
		if api.Status == http.StatusNotFound && strings.Contains(api.Message, "jail") {
			return &ExitError{255, api.Message}
		}
		return &ExitError{255, api.Error()}
	}
	return err
}

func (c *f2bClient) status(ctx context.Context, a []string) error {
	name := ""
	if len(a) == 1 {
		name = a[0]
	}
	sts, err := c.c.Status(ctx, name)
	if err != nil {
		if name != "" {
			var api *control.APIError
			if errors.As(err, &api) && api.Status == http.StatusNotFound {
				return &ExitError{255, fmt.Sprintf("Sorry but the jail '%s' does not exist", name)}
			}
		}
		return err
	}
	if name == "" {
		names := make([]string, len(sts))
		for i, s := range sts {
			names[i] = s.Jail
		}
		fmt.Fprintf(c.out, "Status\n|- Number of jail:\t%d\n`- Jail list:\t%s\n", len(sts), strings.Join(names, ", "))
		return nil
	}
	for _, s := range sts {
		WriteJailStatus(c.out, s)
	}
	return nil
}

// jailBans is the set of banned prefixes of one jail, as formatted strings.
func (c *f2bClient) jailBans(ctx context.Context, name string) (map[string]bool, []jail.Ban, error) {
	bans, err := c.c.Bans(ctx, name)
	if err != nil {
		var api *control.APIError
		if errors.As(err, &api) && api.Status == http.StatusNotFound {
			return nil, nil, &ExitError{255, fmt.Sprintf("Sorry but the jail '%s' does not exist", name)}
		}
		return nil, nil, err
	}
	set := map[string]bool{}
	for _, b := range bans {
		set[control.FormatPrefix(b.Prefix)] = true
	}
	return set, bans, nil
}

// banip bans each address not banned yet and prints how many it banned.
// An address the daemon finds already banned (an IPv6 address inside the
// jail's banned /64) does not count, as fail2ban does not count an address
// banned already.
func (c *f2bClient) banip(ctx context.Context, name string, addrs []string) error {
	have, _, err := c.jailBans(ctx, name)
	if err != nil {
		return err
	}
	n := 0
	for _, a := range addrs {
		if p, err := netaddr.ParsePrefix(a); err == nil && have[control.FormatPrefix(p)] {
			continue
		}
		b, err := c.c.Ban(ctx, name, a, 0)
		if err != nil {
			return nok(err)
		}
		if b.Previous == nil {
			n++
		}
		have[control.FormatPrefix(b.Prefix)] = true
	}
	fmt.Fprintln(c.out, n)
	return nil
}

// unbanip lifts each address's ban in the jail and prints how many it lifted.
func (c *f2bClient) unbanip(ctx context.Context, name string, addrs []string) error {
	report := false
	if len(addrs) > 0 && addrs[0] == "--report-absent" {
		report, addrs = true, addrs[1:]
	}
	if _, _, err := c.jailBans(ctx, name); err != nil {
		return err
	}
	n := 0
	var absent []string
	for _, a := range addrs {
		lifted, err := c.c.Unban(ctx, a, name)
		var api *control.APIError
		switch {
		case errors.As(err, &api) && api.Status == http.StatusNotFound:
			absent = append(absent, a)
		case err != nil:
			return nok(err)
		default:
			n += len(lifted)
		}
	}
	if report && len(absent) > 0 {
		return &ExitError{255, "not banned: " + pyList(absent)}
	}
	fmt.Fprintln(c.out, n)
	return nil
}

// unban lifts bans in every jail: all of them, or those of the addresses.
func (c *f2bClient) unban(ctx context.Context, a []string) error {
	if len(a) == 1 && a[0] == "--all" {
		n, err := c.c.UnbanAll(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.out, n)
		return nil
	}
	n := 0
	for _, addr := range a {
		lifted, err := c.c.Unban(ctx, addr, "")
		var api *control.APIError
		switch {
		case errors.As(err, &api) && api.Status == http.StatusNotFound:
		case err != nil:
			return nok(err)
		default:
			n += len(lifted)
		}
	}
	fmt.Fprintln(c.out, n)
	return nil
}

// banned prints every jail's bans as a Python list of dicts, or, given
// addresses, the jails each is banned in.
func (c *f2bClient) banned(ctx context.Context, addrs []string) error {
	sts, err := c.c.Status(ctx, "")
	if err != nil {
		return err
	}
	bans, err := c.c.Bans(ctx, "")
	if err != nil {
		return err
	}
	byJail := map[string][]string{}
	for _, b := range bans {
		byJail[b.Jail] = append(byJail[b.Jail], control.FormatPrefix(b.Prefix))
	}
	var parts []string
	if len(addrs) == 0 {
		for _, s := range sts {
			parts = append(parts, "{"+pyRepr(s.Jail)+": "+pyList(byJail[s.Jail])+"}")
		}
	} else {
		for _, a := range addrs {
			var in []string
			for _, s := range sts {
				for _, b := range byJail[s.Jail] {
					if b == a {
						in = append(in, s.Jail)
					}
				}
			}
			parts = append(parts, pyList(in))
		}
	}
	fmt.Fprintln(c.out, "["+strings.Join(parts, ", ")+"]")
	return nil
}

// getBanned prints a jail's bans as a Python list, or, given addresses, 1 or
// 0 for each.
func (c *f2bClient) getBanned(ctx context.Context, name string, addrs []string) error {
	have, bans, err := c.jailBans(ctx, name)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		list := make([]string, len(bans))
		for i, b := range bans {
			list[i] = control.FormatPrefix(b.Prefix)
		}
		fmt.Fprintln(c.out, pyList(list))
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "0"
		if have[a] {
			out[i] = "1"
		}
	}
	if len(out) == 1 {
		fmt.Fprintln(c.out, out[0])
	} else {
		fmt.Fprintln(c.out, "["+strings.Join(out, ", ")+"]")
	}
	return nil
}

// WriteJailStatus prints one jail's status in fail2ban-client's layout,
// with one line of moat's own under the filter's when failures were
// skipped for being older than findtime (fail2ban drops them unsaid).
func WriteJailStatus(w io.Writer, s jail.Status) {
	banned := make([]string, len(s.Banned))
	for i, p := range s.Banned {
		banned[i] = control.FormatPrefix(p)
	}
	fmt.Fprintf(w, "Status for the jail: %s\n", s.Jail)
	fmt.Fprintf(w, "|- Filter\n")
	fmt.Fprintf(w, "|  |- Currently failed:\t%d\n", s.CurrentlyFailed)
	fmt.Fprintf(w, "|  |- Total failed:\t%d\n", s.TotalFailed)
	if s.TooOld > 0 {
		fmt.Fprintf(w, "|  |- Older than findtime, skipped:\t%d\n", s.TooOld)
	}
	fmt.Fprintf(w, "|  `- File list:\t%s\n", strings.Join(s.Files, " "))
	fmt.Fprintf(w, "`- Actions\n")
	fmt.Fprintf(w, "   |- Currently banned:\t%d\n", s.CurrentlyBanned)
	fmt.Fprintf(w, "   |- Total banned:\t%d\n", s.TotalBanned)
	fmt.Fprintf(w, "   `- Banned IP list:\t%s\n", strings.Join(banned, " "))
}
