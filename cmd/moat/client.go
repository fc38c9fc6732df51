package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/fail2ban/emulate"
	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/jail/control"
)

// clientTimeout bounds each CLI request: the daemon answers from memory,
// except for bans and unbans that wait for the disk and the kernel.
const clientTimeout = 30 * time.Second

func cmdStatus(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	socket := socketFlag(fs, io)
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: status takes at most one jail, got %q", errUsage, pos)
	}
	name := ""
	if len(pos) == 1 {
		name = pos[0]
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	c := control.NewClient(socket())
	sts, err := c.Status(ctx, name)
	if err != nil {
		return err
	}
	if name == "" {
		names := make([]string, len(sts))
		for i, s := range sts {
			names[i] = s.Jail
		}
		fw, err := c.Firewall(ctx)
		var apiErr *control.APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			// A daemon from before the firewall check was reported.
			fmt.Fprintf(io.stdout, "Status\n|- Number of jail:\t%d\n`- Jail list:\t%s\n", len(sts), strings.Join(names, ", "))
		} else if err != nil {
			return err
		} else {
			fmt.Fprintf(io.stdout, "Status\n|- Number of jail:\t%d\n|- Jail list:\t%s\n`- Firewall:\t%s\n",
				len(sts), strings.Join(names, ", "), firewallLine(fw))
		}
	}
	for _, s := range sts {
		if name == "" {
			fmt.Fprintln(io.stdout)
		}
		emulate.WriteJailStatus(io.stdout, s)
	}
	return nil
}

// firewallLine says what the last comparison of the kernel with the bans
// found, and when the last repair was.
func firewallLine(fw jail.FirewallStatus) string {
	if fw.Backend == "none" {
		return "none: nothing is enforced in the kernel (bans are only logged, and refused by the proxy)"
	}
	var b strings.Builder
	b.WriteString(fw.Backend)
	switch {
	case fw.LastCheck.IsZero():
		b.WriteString(": not checked yet")
	case fw.Err != "":
		fmt.Fprintf(&b, ": the check at %s failed: %s", fw.LastCheck.UTC().Format(time.RFC3339), fw.Err)
	case fw.Matched:
		fmt.Fprintf(&b, ": the kernel held exactly the bans at the last check (%s)", fw.LastCheck.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(&b, ": the kernel differed at the last check (%s) and was repaired", fw.LastCheck.UTC().Format(time.RFC3339))
	}
	if fw.LastRepair.IsZero() {
		b.WriteString("; last repair: never")
	} else {
		fmt.Fprintf(&b, "; last repair: %s (%s)", fw.LastRepair.UTC().Format(time.RFC3339), kindsText(fw.LastRepairKinds))
	}
	return b.String()
}

// kindsText writes repair counts as "missing 2, stray 1", kinds sorted.
func kindsText(kinds map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	return strings.Join(parts, ", ")
}

// prefixString writes a single-host prefix as the bare address and a wider
// one in CIDR form, as the API does.
func prefixString(p netip.Prefix) string { return control.FormatPrefix(p) }

func cmdBans(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("bans", flag.ContinueOnError)
	socket := socketFlag(fs, io)
	jailName := fs.String("jail", "", "only this jail's bans")
	asJSON := fs.Bool("json", false, "print a JSON array for scripts")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: bans takes no arguments, got %q", errUsage, pos)
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	bans, err := control.NewClient(socket()).Bans(ctx, *jailName)
	if err != nil {
		return err
	}
	sort.Slice(bans, func(i, j int) bool {
		if bans[i].Jail != bans[j].Jail {
			return bans[i].Jail < bans[j].Jail
		}
		return bans[i].Prefix.Addr().Less(bans[j].Prefix.Addr())
	})
	if *asJSON {
		return control.EncodeBans(io.stdout, bans)
	}
	if len(bans) == 0 {
		fmt.Fprintln(io.stdout, "no active bans")
		return nil
	}
	tw := tabwriter.NewWriter(io.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JAIL\tIP\tBANNED AT\tEXPIRES\tCOUNT")
	now := time.Now()
	for _, b := range bans {
		expires := "never"
		if !b.Expires.IsZero() {
			expires = fmt.Sprintf("%s (in %s)", b.Expires.Local().Format(time.DateTime), b.Expires.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", b.Jail, prefixString(b.Prefix), b.BannedAt.Local().Format(time.DateTime), expires, b.Count)
	}
	return tw.Flush()
}

func cmdBan(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("ban", flag.ContinueOnError)
	socket := socketFlag(fs, io)
	jailName := fs.String("jail", "", "the jail to ban in (required)")
	dur := fs.String("for", "", "how long (a Go duration such as 1h, or -1 for no end; default: the jail's bantime)")
	force := fs.Bool("force", false, "ban even the address of your own SSH session")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: ban takes one address or prefix: moat ban ADDR --jail J [--for DURATION]", errUsage)
	}
	if *jailName == "" {
		return fmt.Errorf("%w: ban needs --jail J", errUsage)
	}
	var d time.Duration
	if *dur != "" {
		if d, err = parseBanDuration(*dur); err != nil {
			return fmt.Errorf("%w: --for: %v", errUsage, err)
		}
	}
	if !*force {
		if err := refuseOwnSession(pos[0], io.getenv("SSH_CONNECTION")); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	b, err := control.NewClient(socket()).Ban(ctx, *jailName, pos[0], d)
	if err != nil {
		return err
	}
	fmt.Fprintln(io.stdout, banLine(pos[0], b))
	return nil
}

// banLine says what a ban did: the prefix banned, the jail and the expiry,
// then why the prefix differs from asked (an IPv6 address banned by the
// jail's prefix) and whether the prefix was already banned (the later
// expiry is kept).
func banLine(asked string, b jail.Ban) string {
	line := fmt.Sprintf("banned %s in %s %s", prefixString(b.Prefix), b.Jail, untilText(b.Expires))
	var notes []string
	if p, err := netaddr.ParsePrefix(asked); err == nil && p != b.Prefix {
		if p.IsSingleIP() && p.Addr().Is6() && b.Prefix.Contains(p.Addr()) {
			notes = append(notes, fmt.Sprintf("the jail bans IPv6 clients by /%d", b.Prefix.Bits()))
		} else {
			notes = append(notes, "asked: "+asked)
		}
	}
	if prev := b.Previous; prev != nil {
		was := "already banned " + untilText(prev.Expires)
		if prev.Expires.Equal(b.Expires) {
			notes = append(notes, was+"; kept the later expiry")
		} else {
			notes = append(notes, was+"; extended")
		}
	}
	if len(notes) > 0 {
		line += " (" + strings.Join(notes, "; ") + ")"
	}
	return line
}

// untilText is an expiry as the CLI prints it: "until" and the local time,
// or "with no end".
func untilText(t time.Time) string {
	if t.IsZero() {
		return "with no end"
	}
	return "until " + t.Local().Format(time.RFC3339)
}

// parseBanDuration reads --for: a Go duration, "-1" for no end.
func parseBanDuration(s string) (time.Duration, error) {
	if s == "-1" {
		return -1, nil
	}
	d, err := configs.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (want e.g. 30m, 12h, 1d, or -1 for no end)", s)
	}
	return d, nil
}

// refuseOwnSession refuses a ban that would cut the operator's own SSH
// session: sshConn is $SSH_CONNECTION ("client port server port").
func refuseOwnSession(target, sshConn string) error {
	fields := strings.Fields(sshConn)
	if len(fields) == 0 {
		return nil
	}
	client, err := netip.ParseAddr(fields[0])
	if err != nil {
		return nil
	}
	p, err := netaddr.ParsePrefix(target)
	if err != nil {
		return nil // the daemon reports the malformed address
	}
	client = client.Unmap().WithZone("")
	if p.Contains(client) {
		return fmt.Errorf("refusing to ban %s: it covers your own SSH session from %s (add --force if you mean it)", target, client)
	}
	// The daemon bans a single IPv6 address by the jail's IPv6 prefix,
	// which the CLI does not know: it may be as wide as /32.
	if !strings.Contains(target, "/") && p.Addr().Is6() && client.Is6() {
		if wide, _ := p.Addr().Prefix(32); wide.Contains(client) {
			return fmt.Errorf("refusing to ban %s: the jail bans an IPv6 address by its ipv6_prefix (as wide as /32), which may cover your own SSH session from %s (add --force if you mean it)", target, client)
		}
	}
	return nil
}

func cmdUnban(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("unban", flag.ContinueOnError)
	socket := socketFlag(fs, io)
	jailName := fs.String("jail", "", "only in this jail (default: every jail)")
	all := fs.Bool("all", false, "lift every ban in every jail")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	c := control.NewClient(socket())
	if *all {
		if len(pos) > 0 || *jailName != "" {
			return fmt.Errorf("%w: unban --all takes no address and no --jail", errUsage)
		}
		n, err := c.UnbanAll(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(io.stdout, "lifted %d bans\n", n)
		return nil
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: unban takes one address or prefix (or --all)", errUsage)
	}
	bans, err := c.Unban(ctx, pos[0], *jailName)
	if err != nil {
		return err
	}
	for _, b := range bans {
		fmt.Fprintf(io.stdout, "unbanned %s in %s\n", prefixString(b.Prefix), b.Jail)
	}
	return nil
}
