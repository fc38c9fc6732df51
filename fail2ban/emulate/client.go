package emulate

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/jail/control"
)

// ClientHelp is what `moat client help` prints.
const ClientHelp = `moat client speaks fail2ban-client's forms, with its output and exit codes:

  ping [TIMEOUT]                   Server replied: pong
  version                          the daemon's version
  status [JAIL]
  reload [--restart] [--unban] [JAIL | --all]
                                   read the configuration again and apply it, as
                                   SIGHUP does; naming a JAIL reloads every jail
                                   (the JAIL must be in the new configuration).
                                   --unban then lifts the bans of JAIL, or of
                                   every jail; --restart is a plain reload
  get JAIL bantime|findtime|maxretry|ignoreip|logpath
  get JAIL banip [SEP | --with-time]
  get JAIL banned [ADDR...]
  set JAIL addignoreip ADDR...     change the running jail's ignore list until
  set JAIL delignoreip ADDR        the next reload or restart, as in fail2ban;
                                   an address added is never banned after, and
                                   its ban active now stays until it ends
  set JAIL banip ADDR...
  set JAIL unbanip [--report-absent] ADDR...
  unban --all | ADDR...
  banned [ADDR...]

ADDR is an address or a CIDR prefix (moat takes no host names). -s SOCKET
names the control socket; -c DIR is accepted and ignored.
`

// Client speaks fail2ban-client's common forms (ClientHelp lists them),
// with its output layout (moat client).
//
// Each goes to the daemon through the control API, at the socket -s names
// or else the one socket returns. fs holds the caller's own flags (moat's
// --socket), which args may set with fail2ban-client's -s and -c; ctx
// bounds the whole command. A NOK answer is an *ExitError.
func Client(ctx context.Context, fs *flag.FlagSet, args []string, std IO, socket func() string) error {
	s := fs.String("s", "", "control socket (fail2ban-client's -s)")
	fs.String("c", "", "fail2ban configuration directory (accepted and ignored)")
	fs.SetOutput(std.Stderr)
	fs.Usage = func() { fmt.Fprint(std.Stderr, ClientHelp) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
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
		return fmt.Errorf("%w: client needs a command (see moat client help)", ErrUsage)
	case a[0] == "help" && len(a) == 1:
		fmt.Fprint(std.Stdout, ClientHelp)
		return nil
	case a[0] == "ping" && len(a) <= 2:
		return c.ping(ctx, a[1:])
	case a[0] == "version":
		return c.version(ctx)
	case a[0] == "reload":
		return c.reload(ctx, a[1:])
	case a[0] == "status" && len(a) <= 2:
		return c.status(ctx, a[1:])
	case (a[0] == "get" || a[0] == "set") && len(a) == 2:
		return errInvalid
	case a[0] == "set" && len(a) >= 4 && a[2] == "banip":
		return c.banip(ctx, a[1], a[3:])
	case a[0] == "set" && len(a) >= 4 && a[2] == "unbanip":
		return c.unbanip(ctx, a[1], a[3:])
	case a[0] == "set" && len(a) >= 3 && a[2] == "addignoreip":
		return c.addIgnoreIP(ctx, a[1], a[3:])
	case a[0] == "set" && len(a) >= 3 && a[2] == "delignoreip":
		return c.delIgnoreIP(ctx, a[1], a[3:])
	case a[0] == "unban" && len(a) >= 2:
		return c.unban(ctx, a[1:])
	case a[0] == "banned":
		return c.banned(ctx, a[1:])
	case a[0] == "get" && len(a) >= 3 && a[2] == "banned":
		return c.getBanned(ctx, a[1], a[3:])
	case a[0] == "get" && len(a) >= 3 && a[2] == "banip":
		return c.getBanIP(ctx, a[1], a[3:])
	case a[0] == "get" && len(a) >= 3 && slices.Contains(getSettings, a[2]):
		return c.get(ctx, a[1], a[2])
	}
	return fmt.Errorf("%w: client: unsupported command %q (see moat client help)", ErrUsage, strings.Join(a, " "))
}

// errInvalid is fail2ban-client's answer to a command missing its
// arguments.
var errInvalid = &ExitError{Code: 255, Msg: "Sorry but the command is invalid"}

// getSettings are the jail settings `get JAIL X` reads.
var getSettings = []string{"bantime", "findtime", "maxretry", "ignoreip", "logpath"}

type f2bClient struct {
	c   *control.Client
	out io.Writer
}

// nok turns the daemon's refusal into fail2ban-client's NOK exit.
func nok(err error) error {
	var api *control.APIError
	if errors.As(err, &api) {
		if api.Status == http.StatusNotFound && strings.Contains(api.Message, "jail") {
			return &ExitError{Code: 255, Msg: api.Message}
		}
		return &ExitError{Code: 255, Msg: api.Error()}
	}
	return err
}

// noJail is fail2ban-client's answer for an unknown jail.
func noJail(name string) error {
	return &ExitError{Code: 255, Msg: fmt.Sprintf("Sorry but the jail '%s' does not exist", name)}
}

// jailErr turns the daemon's unknown-jail answer into fail2ban-client's;
// other errors pass as they are.
func jailErr(err error, name string) error {
	var api *control.APIError
	if errors.As(err, &api) && api.Status == http.StatusNotFound && strings.HasPrefix(api.Message, "unknown jail") {
		return noJail(name)
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
		return jailErr(err, name)
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
		return nil, nil, jailErr(err, name)
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
		return &ExitError{Code: 255, Msg: "not banned: " + pyList(absent)}
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

// ping asks the daemon for its version, within TIMEOUT seconds if given.
func (c *f2bClient) ping(ctx context.Context, a []string) error {
	if len(a) == 1 {
		secs, err := strconv.ParseFloat(a[0], 64)
		if err != nil || secs <= 0 || secs > 1e6 {
			// fail2ban-client logs this and exits 255.
			return &ExitError{Code: 255, Log: fmt.Sprintf("ping: timeout %q: want seconds, such as 1 or 0.5", a[0])}
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(secs*float64(time.Second)))
		defer cancel()
	}
	if _, err := c.c.Version(ctx); err != nil {
		return err
	}
	fmt.Fprintln(c.out, "Server replied: pong")
	return nil
}

// version prints the daemon's version, as fail2ban-client prints the
// server's.
func (c *f2bClient) version(ctx context.Context) error {
	v, err := c.c.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, v)
	return nil
}

// reload takes fail2ban-client's options before the jail: --restart (a
// plain reload here), --unban, then JAIL or --all or nothing.
func (c *f2bClient) reload(ctx context.Context, a []string) error {
	unban := false
	for len(a) > 0 && (a[0] == "--restart" || a[0] == "--unban") {
		unban = unban || a[0] == "--unban"
		a = a[1:]
	}
	if len(a) > 1 {
		// fail2ban-client logs this and exits 255.
		return &ExitError{Code: 255, Log: "unexpected argument(s) for reload: " + pyList(a)}
	}
	name := ""
	if len(a) == 1 && a[0] != "--all" {
		name = a[0]
	}
	if _, _, err := c.c.Reload(ctx, name, unban); err != nil {
		// fail2ban-client reads the configuration itself, says on
		// standard error what is wrong with it, and exits 255.
		return &ExitError{Code: 255, Log: "reload: " + err.Error()}
	}
	fmt.Fprintln(c.out, "OK")
	return nil
}

// get prints one of a jail's settings.
func (c *f2bClient) get(ctx context.Context, name, what string) error {
	if what == "logpath" {
		sts, err := c.c.Status(ctx, name)
		if err != nil {
			return jailErr(err, name)
		}
		var files []string
		for _, s := range sts {
			files = append(files, s.Files...)
		}
		writeTree(c.out, "No file is currently monitored", "Current monitored log file(s):", files)
		return nil
	}
	cfg, err := c.c.JailConfig(ctx, name)
	if err != nil {
		return jailErr(err, name)
	}
	switch what {
	case "bantime":
		fmt.Fprintln(c.out, seconds(cfg.BanTime))
	case "findtime":
		fmt.Fprintln(c.out, seconds(cfg.FindTime))
	case "maxretry":
		fmt.Fprintln(c.out, cfg.MaxRetry)
	case "ignoreip":
		writeIgnoreIP(c.out, cfg.IgnoreIP)
	}
	return nil
}

// seconds is d in whole seconds, -1 for no end (a negative ban time).
func seconds(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64(d / time.Second)
}

// writeTree prints a list as fail2ban-client does: the header, then one
// entry a line behind "|- " and the last behind "`- "; empty prints only
// when there is none.
func writeTree(w io.Writer, empty, header string, list []string) {
	if len(list) == 0 {
		fmt.Fprintln(w, empty)
		return
	}
	fmt.Fprintln(w, header)
	for i, s := range list {
		branch := "|- "
		if i == len(list)-1 {
			branch = "`- "
		}
		fmt.Fprintln(w, branch+s)
	}
}

// writeIgnoreIP prints an ignore list in fail2ban's order: the networks as
// listed, then the single addresses.
func writeIgnoreIP(w io.Writer, ps []netip.Prefix) {
	list := make([]string, 0, len(ps))
	for _, single := range []bool{false, true} {
		for _, p := range ps {
			if p.IsSingleIP() == single {
				list = append(list, control.FormatPrefix(p))
			}
		}
	}
	writeTree(w, "No IP address/network is ignored", "These IP addresses/networks are ignored:", list)
}

// addIgnoreIP adds addresses to a running jail's ignore list (none: it
// only prints the list).
func (c *f2bClient) addIgnoreIP(ctx context.Context, name string, addrs []string) error {
	var list []netip.Prefix
	if len(addrs) == 0 {
		cfg, err := c.c.JailConfig(ctx, name)
		if err != nil {
			return jailErr(err, name)
		}
		list = cfg.IgnoreIP
	} else {
		var err error
		if list, err = c.c.AddIgnoreIP(ctx, name, addrs...); err != nil {
			return nok(jailErr(err, name))
		}
	}
	writeIgnoreIP(c.out, list)
	return nil
}

// delIgnoreIP removes the first address from a running jail's ignore
// list; fail2ban-client reads no more.
func (c *f2bClient) delIgnoreIP(ctx context.Context, name string, addrs []string) error {
	if len(addrs) == 0 {
		return errInvalid
	}
	list, err := c.c.DelIgnoreIP(ctx, name, addrs[0])
	var api *control.APIError
	if errors.As(err, &api) && api.Status == http.StatusNotFound && strings.Contains(api.Message, "is not in ignoreip") {
		// Python's message for the list's remove, as fail2ban-client
		// prints it.
		return &ExitError{Code: 255, Msg: "list.remove(x): x not in list"}
	}
	if err != nil {
		return nok(jailErr(err, name))
	}
	writeIgnoreIP(c.out, list)
	return nil
}

// getBanIP prints a jail's bans in the order they end, joined by SEP (a
// space by default), or one a line with their times for --with-time.
func (c *f2bClient) getBanIP(ctx context.Context, name string, a []string) error {
	_, bans, err := c.jailBans(ctx, name)
	if err != nil {
		return err
	}
	end := func(b jail.Ban) time.Time {
		if b.Expires.IsZero() {
			return time.Unix(1<<62, 0)
		}
		return b.Expires
	}
	slices.SortStableFunc(bans, func(x, y jail.Ban) int {
		if c := end(x).Compare(end(y)); c != 0 {
			return c
		}
		return cmp.Compare(x.BannedAt.UnixNano(), y.BannedAt.UnixNano())
	})
	sep := " "
	if len(a) > 0 {
		sep = a[0]
	}
	withTime := sep == "--with-time"
	if withTime {
		sep = "\n"
	}
	list := make([]string, len(bans))
	for i, b := range bans {
		list[i] = control.FormatPrefix(b.Prefix)
		if withTime {
			list[i] += " \t" + banTimes(b)
		}
	}
	fmt.Fprintln(c.out, strings.Join(list, sep))
	return nil
}

// banTimes is a ban's "START + SECONDS = END" in local time, as
// fail2ban-client's --with-time prints it (-1 and the end of year 9999 for
// a ban without end).
func banTimes(b jail.Ban) string {
	const layout = "2006-01-02 15:04:05"
	start := b.BannedAt.Local().Format(layout)
	if b.Expires.IsZero() {
		return start + " + -1 = 9999-12-31 23:59:59"
	}
	d := int64(b.Expires.Sub(b.BannedAt) / time.Second)
	return fmt.Sprintf("%s + %d = %s", start, d, b.Expires.Local().Format(layout))
}
