// Package control is moat's control API: HTTP+JSON over a unix socket, spoken
// by the CLI. It owns the wire format, the socket's life (Listen, Serve) and the
// client the CLI uses. It never listens on TCP, and it must not decide bans:
// it parses and checks requests, then calls the daemon through Service.
//
// Routes (all bodies and responses are JSON; errors are {"error": "message"}):
//
//	GET  /v1/status[?jail=J]   -> [Status, ...]; unknown jail: 404
//	GET  /v1/bans[?jail=J]     -> [Ban, ...];    unknown jail: 404
//	POST /v1/bans              {"jail": J, "ip": A, "for": D} -> Ban (with "previous", "kept")
//	POST /v1/unban             {"ip": A, "jail": J}           -> [Ban, ...] (the bans lifted)
//	POST /v1/unban-all         (empty body or {})             -> {"unbanned": N}
//	GET  /v1/firewall          -> {"backend", "last_check", "matched", "full",
//	                               "error", "last_repair", "last_repair_kinds", "repairs"}
//	GET  /v1/version           -> {"version": V} (also what a ping asks)
//	GET  /v1/config?jail=J     -> {"jail", "maxretry", "findtime", "bantime", "ignoreip", "ignoreself"};
//	                              unknown jail: 404
//	POST /v1/reload            {"jail": J, "unban": B} -> {"jails": [J, ...], "unbanned": N}
//	POST /v1/ignoreip          {"jail": J, "add": [A, ...]} or {"jail": J, "del": A}
//	                              -> {"jail", "ignoreip": [A, ...]}
//
// A reload is what SIGHUP does: the configuration is read again and every
// jail is reconfigured, also when "jail" names one (which must then be in
// the new configuration, or nothing changes: 404); "unban" then lifts the
// bans of that jail, or of every jail. A configuration that does not load
// is a 422 and changes nothing.
//
// /v1/config's "findtime" and "bantime" are Go durations ("1h0m0s"),
// "bantime" "-1" for bans without end; "ignoreip" is the running jail's
// ignore list in order. /v1/ignoreip changes that list until the next
// reload or restart: "add" appends 1 to 256 addresses or prefixes (those
// listed already are skipped), "del" removes one entry as listed (404 when
// it is not). Bans active when an entry is added stay.
//
// Unban is a POST to its own route rather than DELETE /v1/bans with a body:
// a DELETE body has no defined meaning in HTTP (RFC 9110 §9.3.5), and a
// request body keeps the address out of the URL, so both mutating requests
// decode the same way.
//
// In requests, "ip" is an address ("192.0.2.7", "2001:db8::1") or a CIDR
// prefix ("198.51.100.0/24"), "jail" is required for a ban and optional for an
// unban (empty: every jail), and "for" is a Go duration ("1h"), "-1" for a ban
// without end, or empty for the jail's ban time.
//
// In responses, a Ban is {"jail", "ip", "banned_at", "expires_at", "count",
// "failures"}: "ip" is a plain address for a single-host ban and CIDR form for
// a wider prefix, times are RFC 3339 in UTC to the second, and "expires_at" is
// null for a ban without end.
//
// The answer of POST /v1/bans is the ban as it now stands, which may differ
// from the request: a single IPv6 address is banned by the jail's IPv6 prefix
// ("ip" is then that prefix), and a prefix the jail already bans keeps the
// later of the two expiries. In that last case the answer also has
// "previous", the active ban it found (a Ban), and "kept": true when that
// ban's expiry was the later one (the request did not change it); both are
// absent otherwise.
//
// Status codes: 400 for a malformed request (bad JSON, unknown field or query
// parameter, a query on a POST, trailing data, malformed address or
// duration), 403 for a peer
// whose uid is neither 0 nor the daemon's, 404 for an unknown jail, an unknown
// route or an address that is not banned, 405 for a wrong method, 413 for a
// body over 64 KiB, 422 when the daemon refuses a ban (loopback, ignoreip,
// ...), 503 when the request was canceled, and 500 with a generic message for
// anything else (the detail is logged, never sent).
package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
)

// Service is the subset of the daemon the control API calls. Its methods are
// called concurrently, one goroutine per request.
type Service interface {
	// Status reports one jail's counters, or every jail's for "". An
	// unknown jail is an error wrapping jail.ErrUnknownJail.
	Status(jail string) ([]jail.Status, error)
	// Bans lists the active bans of one jail, or of every jail for "".
	Bans(jail string) []jail.Ban
	// Ban bans p in jailName for d: 0 means the jail's ban time, a negative
	// d a ban without end.
	Ban(ctx context.Context, jailName string, p netip.Prefix, d time.Duration) (jail.Ban, error)
	// Unban lifts the bans of p in jailName, or in every jail for "", and
	// returns the bans lifted.
	Unban(ctx context.Context, p netip.Prefix, jailName string) ([]jail.Ban, error)
	// UnbanAll lifts every ban and returns how many it lifted.
	UnbanAll(ctx context.Context) (int, error)
	// Firewall reports what the periodic comparison of the kernel with the
	// bans found.
	FirewallStatus() jail.FirewallStatus
	// Version is the daemon's version.
	Version() string
	// Reload reads the configuration again and applies it, as SIGHUP does.
	// A jailName that is not "" must be a jail of the new configuration
	// (else an error wrapping jail.ErrUnknownJail, and nothing changes); a
	// configuration that does not load is a *ReloadError.
	Reload(ctx context.Context, jailName string) error
	// JailConfig returns a running jail's effective settings; an unknown
	// jail wraps jail.ErrUnknownJail.
	JailConfig(jailName string) (jail.Config, error)
	// AddIgnoreIP and DelIgnoreIP change a running jail's ignore list and
	// return it (jail.Engine's methods of the same names).
	AddIgnoreIP(jailName string, ps ...netip.Prefix) ([]netip.Prefix, error)
	DelIgnoreIP(jailName string, p netip.Prefix) ([]netip.Prefix, error)
}

// ReloadError is a reload refused because the configuration does not load
// (or compile): the configuration in force stays. Its message is sent to
// the client.
type ReloadError struct{ Err error }

func (e *ReloadError) Error() string {
	return "reload refused; the configuration in force stays: " + e.Err.Error()
}

func (e *ReloadError) Unwrap() error { return e.Err }

// Paths of the routes, shared by the handler and the client.
const (
	pathStatus   = "/v1/status"
	pathBans     = "/v1/bans"
	pathUnban    = "/v1/unban"
	pathUnbanAll = "/v1/unban-all"
	pathFirewall = "/v1/firewall"
	pathVersion  = "/v1/version"
	pathConfig   = "/v1/config"
	pathReload   = "/v1/reload"
	pathIgnoreIP = "/v1/ignoreip"
)

// maxIgnoreAdd is how many entries one /v1/ignoreip request may add.
const maxIgnoreAdd = 256

// maxBody is the largest request body the handler reads.
const maxBody = 64 << 10

// banRequest is the body of POST /v1/bans.
type banRequest struct {
	Jail string `json:"jail"`
	IP   string `json:"ip"`
	For  string `json:"for"`
}

// unbanRequest is the body of POST /v1/unban.
type unbanRequest struct {
	IP   string `json:"ip"`
	Jail string `json:"jail"`
}

// unbanAllResponse is the answer of POST /v1/unban-all.
type unbanAllResponse struct {
	Unbanned int `json:"unbanned"`
}

// versionResponse is the answer of GET /v1/version.
type versionResponse struct {
	Version string `json:"version"`
}

// reloadRequest is the body of POST /v1/reload.
type reloadRequest struct {
	Jail  string `json:"jail"`
	Unban bool   `json:"unban"`
}

// reloadResponse is the answer of POST /v1/reload: the jails now running
// and how many bans "unban" lifted.
type reloadResponse struct {
	Jails    []string `json:"jails"`
	Unbanned int      `json:"unbanned"`
}

// ignoreIPRequest is the body of POST /v1/ignoreip: exactly one of Add and
// Del.
type ignoreIPRequest struct {
	Jail string   `json:"jail"`
	Add  []string `json:"add"`
	Del  *string  `json:"del"`
}

// ignoreIPResponse is the answer of POST /v1/ignoreip.
type ignoreIPResponse struct {
	Jail     string   `json:"jail"`
	IgnoreIP []string `json:"ignoreip"`
}

// jailConfigJSON is the answer of GET /v1/config.
type jailConfigJSON struct {
	Jail       string   `json:"jail"`
	MaxRetry   int      `json:"maxretry"`
	FindTime   string   `json:"findtime"`
	BanTime    string   `json:"bantime"`
	IgnoreIP   []string `json:"ignoreip"`
	IgnoreSelf bool     `json:"ignoreself"`
}

func toJailConfigJSON(c jail.Config) jailConfigJSON {
	bt := c.BanTime.String()
	if c.BanTime < 0 {
		bt = "-1"
	}
	return jailConfigJSON{Jail: c.Name, MaxRetry: c.MaxRetry, FindTime: c.FindTime.String(), BanTime: bt,
		IgnoreIP: formatPrefixes(c.IgnoreIP), IgnoreSelf: c.IgnoreSelf}
}

func (j jailConfigJSON) config() (jail.Config, error) {
	c := jail.Config{Name: j.Jail, MaxRetry: j.MaxRetry, IgnoreSelf: j.IgnoreSelf}
	var err error
	if c.FindTime, err = time.ParseDuration(j.FindTime); err != nil {
		return c, fmt.Errorf("findtime: %w", err)
	}
	if j.BanTime == "-1" {
		c.BanTime = -1
	} else if c.BanTime, err = time.ParseDuration(j.BanTime); err != nil {
		return c, fmt.Errorf("bantime: %w", err)
	}
	c.IgnoreIP, err = parsePrefixes(j.IgnoreIP)
	return c, err
}

func formatPrefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = FormatPrefix(p)
	}
	return out
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netaddr.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// errorResponse is the body of every answer that is not 2xx.
type errorResponse struct {
	Error string `json:"error"`
}

// banJSON is a jail.Ban on the wire: "ip" without /32 or /128 for a single
// host, and "expires_at" null for a ban without end.
type banJSON struct {
	Jail      string     `json:"jail"`
	IP        string     `json:"ip"`
	BannedAt  time.Time  `json:"banned_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	Count     int        `json:"count"`
	Failures  int        `json:"failures"`
}

// banAnswerJSON is the answer of POST /v1/bans: the ban as it stands, and
// the active ban it found (jail.Ban.Previous). Kept says the previous ban's
// expiry was kept: it was not before the one asked for.
type banAnswerJSON struct {
	banJSON
	Previous *banJSON `json:"previous,omitempty"`
	Kept     bool     `json:"kept,omitempty"`
}

func toBanAnswerJSON(b jail.Ban) banAnswerJSON {
	out := banAnswerJSON{banJSON: toBanJSON(b)}
	if b.Previous != nil {
		prev := toBanJSON(*b.Previous)
		out.Previous = &prev
		out.Kept = b.Previous.Expires.Equal(b.Expires)
	}
	return out
}

func (a banAnswerJSON) ban() (jail.Ban, error) {
	b, err := a.banJSON.ban()
	if err != nil || a.Previous == nil {
		return b, err
	}
	prev, err := a.Previous.ban()
	if err != nil {
		return jail.Ban{}, err
	}
	b.Previous = &prev
	return b, nil
}

// firewallJSON is a jail.FirewallStatus on the wire; the times are null
// when there was none yet.
type firewallJSON struct {
	Backend         string         `json:"backend"`
	LastCheck       *time.Time     `json:"last_check"`
	Matched         bool           `json:"matched"`
	Full            bool           `json:"full"`
	Error           string         `json:"error,omitempty"`
	LastRepair      *time.Time     `json:"last_repair"`
	LastRepairKinds map[string]int `json:"last_repair_kinds,omitempty"`
	Repairs         map[string]int `json:"repairs"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	w := wireTime(t)
	return &w
}

func toFirewallJSON(s jail.FirewallStatus) firewallJSON {
	out := firewallJSON{Backend: s.Backend, LastCheck: optTime(s.LastCheck), Matched: s.Matched, Full: s.Full,
		Error: s.Err, LastRepair: optTime(s.LastRepair), LastRepairKinds: s.LastRepairKinds, Repairs: s.Repairs}
	if out.Repairs == nil {
		out.Repairs = map[string]int{}
	}
	return out
}

func (f firewallJSON) status() jail.FirewallStatus {
	s := jail.FirewallStatus{Backend: f.Backend, Matched: f.Matched, Full: f.Full, Err: f.Error,
		LastRepairKinds: f.LastRepairKinds, Repairs: f.Repairs}
	if f.LastCheck != nil {
		s.LastCheck = *f.LastCheck
	}
	if f.LastRepair != nil {
		s.LastRepair = *f.LastRepair
	}
	return s
}

// statusJSON is a jail.Status on the wire, with "banned" formatted like a
// Ban's "ip".
type statusJSON struct {
	Jail            string   `json:"jail"`
	Files           []string `json:"files"`
	CurrentlyFailed int      `json:"currently_failed"`
	TotalFailed     int      `json:"total_failed"`
	TooOld          int      `json:"too_old"`
	CurrentlyBanned int      `json:"currently_banned"`
	TotalBanned     int      `json:"total_banned"`
	Banned          []string `json:"banned"`
}

// FormatPrefix writes p the way the control API and the CLI show it: the bare
// address for a single host, CIDR form for a wider prefix.
func FormatPrefix(p netip.Prefix) string { return netaddr.Format(p) }

// EncodeBans writes bs to w as a JSON array in the control API's shape (the
// shape `moat bans --json` prints), indented for a terminal.
func EncodeBans(w io.Writer, bs []jail.Ban) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(toBansJSON(bs)); err != nil {
		return fmt.Errorf("encode bans: %w", err)
	}
	return nil
}

// wireTime is t in UTC at second precision, as RFC 3339 encodes it.
func wireTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Second)
}

func toBanJSON(b jail.Ban) banJSON {
	out := banJSON{
		Jail:     b.Jail,
		IP:       FormatPrefix(b.Prefix),
		BannedAt: wireTime(b.BannedAt),
		Count:    b.Count,
		Failures: b.Failures,
	}
	if !b.Expires.IsZero() {
		e := wireTime(b.Expires)
		out.ExpiresAt = &e
	}
	return out
}

func toBansJSON(bs []jail.Ban) []banJSON {
	out := make([]banJSON, 0, len(bs))
	for _, b := range bs {
		out = append(out, toBanJSON(b))
	}
	return out
}

func (b banJSON) ban() (jail.Ban, error) {
	p, err := netaddr.ParsePrefix(b.IP)
	if err != nil {
		return jail.Ban{}, err
	}
	out := jail.Ban{
		Jail:     b.Jail,
		Prefix:   p,
		BannedAt: b.BannedAt,
		Count:    b.Count,
		Failures: b.Failures,
	}
	if b.ExpiresAt != nil {
		out.Expires = *b.ExpiresAt
	}
	return out, nil
}

func toStatusJSON(ss []jail.Status) []statusJSON {
	out := make([]statusJSON, 0, len(ss))
	for _, s := range ss {
		j := statusJSON{
			Jail:            s.Jail,
			Files:           s.Files,
			CurrentlyFailed: s.CurrentlyFailed,
			TotalFailed:     s.TotalFailed,
			TooOld:          s.TooOld,
			CurrentlyBanned: s.CurrentlyBanned,
			TotalBanned:     s.TotalBanned,
			Banned:          make([]string, 0, len(s.Banned)),
		}
		if j.Files == nil {
			j.Files = []string{}
		}
		for _, p := range s.Banned {
			j.Banned = append(j.Banned, FormatPrefix(p))
		}
		out = append(out, j)
	}
	return out
}

func (s statusJSON) status() (jail.Status, error) {
	out := jail.Status{
		Jail:            s.Jail,
		Files:           s.Files,
		CurrentlyFailed: s.CurrentlyFailed,
		TotalFailed:     s.TotalFailed,
		TooOld:          s.TooOld,
		CurrentlyBanned: s.CurrentlyBanned,
		TotalBanned:     s.TotalBanned,
	}
	for _, b := range s.Banned {
		p, err := netaddr.ParsePrefix(b)
		if err != nil {
			return jail.Status{}, err
		}
		out.Banned = append(out.Banned, p)
	}
	return out, nil
}

// formatFor is d as the "for" field of a ban request: "" for the jail's ban
// time, "-1" for no end.
func formatFor(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d < 0:
		return "-1"
	}
	return d.String()
}

// parseFor reads the "for" field of a ban request.
func parseFor(s string) (time.Duration, error) {
	switch s {
	case "":
		return 0, nil
	case "-1":
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errBadFor(s)
	}
	return d, nil
}

type errBadFor string

func (e errBadFor) Error() string {
	return `bad "for" ` + quote(string(e)) + `: want a positive Go duration such as "1h", "-1" for no end, or empty for the jail's ban time`
}
