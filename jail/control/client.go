package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/moatproj/moat/jail"
)

// ErrDaemonNotRunning is wrapped by the client's errors when there is no
// socket at the path or nobody accepts connections on it. The error's
// message names the path it looked at.
var ErrDaemonNotRunning = errors.New("moat is not running")

// APIError is an answer of the daemon that is not 2xx: its status code and
// the message it sent, such as 422 "refusing to ban 127.0.0.1: loopback".
type APIError struct {
	Status  int
	Message string
}

// Error is the daemon's message on one line, fit for the CLI to print as is.
func (e *APIError) Error() string {
	msg := oneLine(e.Message)
	if msg == "" {
		msg = oneLine(http.StatusText(e.Status))
	}
	if msg == "" {
		msg = fmt.Sprintf("daemon answered status %d", e.Status)
	}
	return msg
}

// oneLine folds white space and drops control characters, so a message
// cannot break the CLI's one-line output or drive the terminal.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// Client speaks the control API over the unix socket at Socket. Its methods
// are safe for concurrent use. Errors are an *APIError for an answer of the
// daemon, wrap ErrDaemonNotRunning when nobody is there, and are otherwise
// transport or decoding errors.
type Client struct {
	Socket string
	// HTTP is the client used; nil: one that dials Socket, made on first use
	// by NewClient's rules.
	HTTP *http.Client
}

// clientTimeout bounds a whole request when the caller's context does not.
const clientTimeout = 30 * time.Second

// maxResponse bounds what the client reads of an answer (a list of bans).
const maxResponse = 64 << 20

// NewClient returns a client of the daemon listening at socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, HTTP: newHTTPClient(socket)}
}

func newHTTPClient(socket string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: clientTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
			// The daemon is local: no proxy from the environment.
			Proxy:                  nil,
			MaxResponseHeaderBytes: 64 << 10,
			DisableCompression:     true,
		},
	}
}

// Status returns one jail's status, or every jail's for "".
func (c *Client) Status(ctx context.Context, jailName string) ([]jail.Status, error) {
	var out []statusJSON
	if err := c.do(ctx, http.MethodGet, withJail(pathStatus, jailName), nil, &out); err != nil {
		return nil, err
	}
	ss := make([]jail.Status, 0, len(out))
	for _, s := range out {
		st, err := s.status()
		if err != nil {
			return nil, fmt.Errorf("decode status: %w", err)
		}
		ss = append(ss, st)
	}
	return ss, nil
}

// Firewall returns what the daemon's comparisons of the kernel with its
// bans found.
func (c *Client) Firewall(ctx context.Context) (jail.FirewallStatus, error) {
	var out firewallJSON
	if err := c.do(ctx, http.MethodGet, pathFirewall, nil, &out); err != nil {
		return jail.FirewallStatus{}, err
	}
	return out.status(), nil
}

// Bans returns the active bans of one jail, or of every jail for "".
func (c *Client) Bans(ctx context.Context, jailName string) ([]jail.Ban, error) {
	var out []banJSON
	if err := c.do(ctx, http.MethodGet, withJail(pathBans, jailName), nil, &out); err != nil {
		return nil, err
	}
	return fromBansJSON(out)
}

// Ban bans addr (an address or a CIDR prefix, as the user typed it: the
// daemon parses it) in jailName for d: 0 means the jail's ban time, a
// negative d a ban without end. It returns the ban as the daemon now holds
// it: its prefix may be wider than addr (an IPv6 address is banned by the
// jail's IPv6 prefix) and, when the prefix was already banned, its expiry
// is the later of the two and Previous is the ban found.
func (c *Client) Ban(ctx context.Context, jailName, addr string, d time.Duration) (jail.Ban, error) {
	var out banAnswerJSON
	req := banRequest{Jail: jailName, IP: addr, For: formatFor(d)}
	if err := c.do(ctx, http.MethodPost, pathBans, req, &out); err != nil {
		return jail.Ban{}, err
	}
	b, err := out.ban()
	if err != nil {
		return jail.Ban{}, fmt.Errorf("decode ban: %w", err)
	}
	return b, nil
}

// Unban lifts the bans of addr in jailName, or in every jail for "", and
// returns the bans lifted.
func (c *Client) Unban(ctx context.Context, addr, jailName string) ([]jail.Ban, error) {
	var out []banJSON
	if err := c.do(ctx, http.MethodPost, pathUnban, unbanRequest{IP: addr, Jail: jailName}, &out); err != nil {
		return nil, err
	}
	return fromBansJSON(out)
}

// UnbanAll lifts every ban and returns how many it lifted.
func (c *Client) UnbanAll(ctx context.Context) (int, error) {
	var out unbanAllResponse
	if err := c.do(ctx, http.MethodPost, pathUnbanAll, struct{}{}, &out); err != nil {
		return 0, err
	}
	return out.Unbanned, nil
}

// Version returns the daemon's version; it is also what a ping asks.
func (c *Client) Version(ctx context.Context) (string, error) {
	var out versionResponse
	if err := c.do(ctx, http.MethodGet, pathVersion, nil, &out); err != nil {
		return "", err
	}
	return out.Version, nil
}

// Reload has the daemon read its configuration again and apply it, as
// SIGHUP does: every jail is reloaded, also when jailName names one (which
// must be in the new configuration: else nothing changes and the answer is
// a 404). With unban it then lifts the bans of jailName, or of every jail
// for "". It returns the jails now running and how many bans it lifted.
func (c *Client) Reload(ctx context.Context, jailName string, unban bool) (jails []string, unbanned int, err error) {
	var out reloadResponse
	if err := c.do(ctx, http.MethodPost, pathReload, reloadRequest{Jail: jailName, Unban: unban}, &out); err != nil {
		return nil, 0, err
	}
	return out.Jails, out.Unbanned, nil
}

// JailConfig returns a running jail's effective settings: its name,
// maxretry, findtime, bantime (negative: no end), ignoreip (as changed
// since the last reload) and ignoreself.
func (c *Client) JailConfig(ctx context.Context, jailName string) (jail.Config, error) {
	var out jailConfigJSON
	if err := c.do(ctx, http.MethodGet, pathConfig+"?"+url.Values{"jail": {jailName}}.Encode(), nil, &out); err != nil {
		return jail.Config{}, err
	}
	cfg, err := out.config()
	if err != nil {
		return jail.Config{}, fmt.Errorf("decode jail config: %w", err)
	}
	return cfg, nil
}

// AddIgnoreIP adds addrs (addresses or CIDR prefixes as the user typed
// them: the daemon parses them) to a running jail's ignore list until the
// next reload or restart, and returns the list.
func (c *Client) AddIgnoreIP(ctx context.Context, jailName string, addrs ...string) ([]netip.Prefix, error) {
	return c.ignoreIP(ctx, ignoreIPRequest{Jail: jailName, Add: addrs})
}

// DelIgnoreIP removes addr, as listed, from a running jail's ignore list
// until the next reload or restart, and returns the list.
func (c *Client) DelIgnoreIP(ctx context.Context, jailName, addr string) ([]netip.Prefix, error) {
	return c.ignoreIP(ctx, ignoreIPRequest{Jail: jailName, Del: &addr})
}

func (c *Client) ignoreIP(ctx context.Context, req ignoreIPRequest) ([]netip.Prefix, error) {
	if req.Add == nil && req.Del == nil {
		req.Add = []string{}
	}
	var out ignoreIPResponse
	if err := c.do(ctx, http.MethodPost, pathIgnoreIP, req, &out); err != nil {
		return nil, err
	}
	ps, err := parsePrefixes(out.IgnoreIP)
	if err != nil {
		return nil, fmt.Errorf("decode ignoreip: %w", err)
	}
	return ps, nil
}

func fromBansJSON(in []banJSON) ([]jail.Ban, error) {
	bs := make([]jail.Ban, 0, len(in))
	for _, j := range in {
		b, err := j.ban()
		if err != nil {
			return nil, fmt.Errorf("decode ban: %w", err)
		}
		bs = append(bs, b)
	}
	return bs, nil
}

func withJail(path, jailName string) string {
	if jailName == "" {
		return path
	}
	return path + "?" + url.Values{"jail": {jailName}}.Encode()
}

// do sends one request and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	hc := c.HTTP
	if hc == nil {
		hc = newHTTPClient(c.Socket)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://moat"+path, body)
	if err != nil {
		return fmt.Errorf("make request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	r := io.LimitReader(resp.Body, maxResponse)
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
		var e errorResponse
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(b)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if err := json.NewDecoder(r).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// transportError explains a failed request: no daemon, no permission, or
// something else.
func (c *Client) transportError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w (no daemon at %s): no socket there", ErrDaemonNotRunning, c.Socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (no daemon at %s): connection refused", ErrDaemonNotRunning, c.Socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("connect to moat at %s: permission denied (the control socket is for root and the daemon's user)", c.Socket)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("talk to moat at %s: %w", c.Socket, err)
}
