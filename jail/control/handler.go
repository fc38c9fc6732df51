package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"

	"github.com/moatproj/moat/internal/netaddr"
	"github.com/moatproj/moat/jail"
)

// Log attribute keys.
const (
	keyMethod = "method"
	keyPath   = "path"
	keyJail   = "jail"
	keyIP     = "ip"
	keyFor    = "for"
	keyStatus = "status"
	keyUID    = "uid"
	keyPID    = "pid"
	keyErr    = "err"
	keyUnban  = "unban"
	keyAdd    = "add"
	keyDel    = "del"

	keyUnbanned = "unbanned"
)

// handler serves the routes of the package comment.
type handler struct {
	svc    Service
	logger *slog.Logger
	// allowUID reports whether a peer with this uid may use the API.
	allowUID func(uid uint32) bool
}

// NewHandler returns the control API over s. It must be served by Serve (or
// Server), which records each connection's peer credentials: a request
// without them is refused with 403. On Linux only uid 0 and the daemon's own
// uid are let through. Mutating requests are logged once at Info with the
// peer's uid and pid; failures of s that are not the client's fault are
// logged at Error and answered with a generic 500. It is safe for concurrent
// use if s is.
func NewHandler(s Service, logger *slog.Logger) http.Handler {
	return newHandler(s, logger, rootOr(uint32(os.Getuid())))
}

// rootOr admits uid 0 and self.
func rootOr(self uint32) func(uint32) bool {
	return func(uid uint32) bool { return uid == 0 || uid == self }
}

func newHandler(s Service, logger *slog.Logger, allowUID func(uint32) bool) *handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &handler{svc: s, logger: logger, allowUID: allowUID}
}

// apiError is an answer that is not 2xx; msg is sent to the client, err (if
// set) is only logged.
type apiError struct {
	status int
	msg    string
	err    error
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p, ok := peerFrom(r.Context())
	if e := h.authorize(p, ok); e != nil {
		h.logger.Warn("control request refused", keyMethod, r.Method, keyPath, r.URL.Path, keyUID, p.uid, keyPID, p.pid, keyErr, e.msg)
		writeError(w, e)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)

	var allow string
	switch r.URL.Path {
	case pathStatus, pathFirewall, pathVersion, pathConfig:
		allow = http.MethodGet
	case pathBans:
		allow = http.MethodGet + ", " + http.MethodPost
	case pathUnban, pathUnbanAll, pathReload, pathIgnoreIP:
		allow = http.MethodPost
	default:
		writeError(w, &apiError{status: http.StatusNotFound, msg: "no such endpoint: " + quote(r.URL.Path)})
		return
	}

	var (
		body any
		e    *apiError
	)
	switch {
	case r.Method == http.MethodPost && r.URL.RawQuery != "":
		e = badRequest("%s takes its arguments in the JSON body, not in the query", r.URL.Path)
	case r.URL.Path == pathStatus && r.Method == http.MethodGet:
		body, e = h.status(r)
	case (r.URL.Path == pathFirewall || r.URL.Path == pathVersion) && r.Method == http.MethodGet && r.URL.RawQuery != "":
		e = badRequest("%s takes no query", r.URL.Path)
	case r.URL.Path == pathFirewall && r.Method == http.MethodGet:
		body = toFirewallJSON(h.svc.FirewallStatus())
	case r.URL.Path == pathVersion && r.Method == http.MethodGet:
		body = versionResponse{Version: h.svc.Version()}
	case r.URL.Path == pathConfig && r.Method == http.MethodGet:
		body, e = h.jailConfig(r)
	case r.URL.Path == pathReload && r.Method == http.MethodPost:
		body, e = h.reload(r, p)
	case r.URL.Path == pathIgnoreIP && r.Method == http.MethodPost:
		body, e = h.ignoreIP(r, p)
	case r.URL.Path == pathBans && r.Method == http.MethodGet:
		body, e = h.bans(r)
	case r.URL.Path == pathBans && r.Method == http.MethodPost:
		body, e = h.ban(r, p)
	case r.URL.Path == pathUnban && r.Method == http.MethodPost:
		body, e = h.unban(r, p)
	case r.URL.Path == pathUnbanAll && r.Method == http.MethodPost:
		body, e = h.unbanAll(r, p)
	default:
		w.Header().Set("Allow", allow)
		e = &apiError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", quote(r.Method), r.URL.Path, allow)}
	}
	if e != nil {
		if e.err != nil {
			h.logger.Error("control request", keyMethod, r.Method, keyPath, r.URL.Path, keyStatus, e.status, keyErr, e.err)
		}
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *handler) authorize(p peer, ok bool) *apiError {
	switch {
	case !ok:
		return &apiError{status: http.StatusForbidden, msg: "peer credentials unavailable: the control API is served on a unix socket only"}
	case p.err != nil:
		return &apiError{status: http.StatusForbidden, msg: "peer credentials unavailable"}
	case !p.checked:
		// No SO_PEERCRED on this platform: the socket's mode is the guard.
		return nil
	case !h.allowUID(p.uid):
		return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("uid %d may not use the control socket (root or the daemon's user only)", p.uid)}
	}
	return nil
}

// jailQuery reads the only query parameter GET routes accept, jail.
func jailQuery(r *http.Request) (string, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", badRequest("bad query: %v", err)
	}
	for k, v := range q {
		if k != "jail" {
			return "", badRequest("unknown query parameter %s (want jail)", quote(k))
		}
		if len(v) > 1 {
			return "", badRequest("query parameter jail given %d times", len(v))
		}
	}
	return q.Get("jail"), nil
}

func (h *handler) status(r *http.Request) (any, *apiError) {
	name, e := jailQuery(r)
	if e != nil {
		return nil, e
	}
	ss, err := h.svc.Status(name)
	if err != nil {
		return nil, h.serviceError(err, name, netip.Prefix{})
	}
	return toStatusJSON(ss), nil
}

func (h *handler) bans(r *http.Request) (any, *apiError) {
	name, e := jailQuery(r)
	if e != nil {
		return nil, e
	}
	if name != "" {
		// Bans has no error to report an unknown jail: ask Status, so a
		// typo is a 404 and not an empty list.
		if _, err := h.svc.Status(name); err != nil {
			return nil, h.serviceError(err, name, netip.Prefix{})
		}
	}
	return toBansJSON(h.svc.Bans(name)), nil
}

func (h *handler) ban(r *http.Request, p peer) (any, *apiError) {
	var req banRequest
	if e := decode(r, &req, false); e != nil {
		return nil, e
	}
	if req.Jail == "" {
		return nil, badRequest(`"jail" is required`)
	}
	pfx, e := parseIP(req.IP)
	if e != nil {
		return nil, e
	}
	d, err := parseFor(req.For)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	b, err := h.svc.Ban(r.Context(), req.Jail, pfx, d)
	h.logMutation(r, p, req.Jail, pfx, req.For, err)
	if err != nil {
		e := h.serviceError(err, req.Jail, pfx)
		if e.status == http.StatusInternalServerError && b.Prefix.IsValid() {
			// The engine returns the ban with an error when it is durable
			// but the firewall refused it (and will be retried).
			e.msg = fmt.Sprintf("ban of %s recorded, but not yet in the firewall: it will be retried (see the daemon's log)", FormatPrefix(b.Prefix))
		}
		return nil, e
	}
	return toBanAnswerJSON(b), nil
}

func (h *handler) unban(r *http.Request, p peer) (any, *apiError) {
	var req unbanRequest
	if e := decode(r, &req, false); e != nil {
		return nil, e
	}
	pfx, e := parseIP(req.IP)
	if e != nil {
		return nil, e
	}
	bs, err := h.svc.Unban(r.Context(), pfx, req.Jail)
	h.logMutation(r, p, req.Jail, pfx, "", err)
	if err != nil {
		e := h.serviceError(err, req.Jail, pfx)
		if e.status == http.StatusInternalServerError && len(bs) > 0 {
			// The engine returns the bans with an error when they are
			// durably lifted but the firewall refused the change.
			e.msg = fmt.Sprintf("unban of %s recorded, but not yet out of the firewall: it will be retried (see the daemon's log)", FormatPrefix(pfx))
		}
		return nil, e
	}
	return toBansJSON(bs), nil
}

func (h *handler) unbanAll(r *http.Request, p peer) (any, *apiError) {
	var req struct{}
	if e := decode(r, &req, true); e != nil {
		return nil, e
	}
	n, err := h.svc.UnbanAll(r.Context())
	h.logMutation(r, p, "", netip.Prefix{}, "", err)
	if err != nil {
		e := h.serviceError(err, "", netip.Prefix{})
		if e.status == http.StatusInternalServerError && n > 0 {
			e.msg = fmt.Sprintf("unban of all %d bans recorded, but not yet out of the firewall: it will be retried (see the daemon's log)", n)
		}
		return nil, e
	}
	return unbanAllResponse{Unbanned: n}, nil
}

func (h *handler) jailConfig(r *http.Request) (any, *apiError) {
	name, e := jailQuery(r)
	if e != nil {
		return nil, e
	}
	if name == "" {
		return nil, badRequest("%s needs the query parameter jail", r.URL.Path)
	}
	c, err := h.svc.JailConfig(name)
	if err != nil {
		return nil, h.serviceError(err, name, netip.Prefix{})
	}
	return toJailConfigJSON(c), nil
}

// reload reloads the configuration, then lifts the bans asked for.
func (h *handler) reload(r *http.Request, p peer) (any, *apiError) {
	var req reloadRequest
	if e := decode(r, &req, true); e != nil {
		return nil, e
	}
	err := h.svc.Reload(r.Context(), req.Jail)
	h.logChange(r, p, err, keyJail, req.Jail, keyUnban, req.Unban)
	if err != nil {
		return nil, h.serviceError(err, req.Jail, netip.Prefix{})
	}
	var out reloadResponse
	if req.Unban {
		if req.Jail == "" {
			out.Unbanned, err = h.svc.UnbanAll(r.Context())
		} else {
			for _, b := range h.svc.Bans(req.Jail) {
				var lifted []jail.Ban
				lifted, err = h.svc.Unban(r.Context(), b.Prefix, req.Jail)
				out.Unbanned += len(lifted)
				if err != nil && !errors.Is(err, jail.ErrNotBanned) {
					break
				}
				err = nil
			}
		}
		h.logChange(r, p, err, keyJail, req.Jail, keyUnbanned, out.Unbanned)
		if err != nil {
			return nil, h.serviceError(err, req.Jail, netip.Prefix{})
		}
	}
	sts, err := h.svc.Status("")
	if err != nil {
		return nil, h.serviceError(err, "", netip.Prefix{})
	}
	out.Jails = make([]string, len(sts))
	for i, s := range sts {
		out.Jails[i] = s.Jail
	}
	return out, nil
}

// ignoreIP adds to or removes from a jail's ignore list.
func (h *handler) ignoreIP(r *http.Request, p peer) (any, *apiError) {
	var req ignoreIPRequest
	if e := decode(r, &req, false); e != nil {
		return nil, e
	}
	switch {
	case req.Jail == "":
		return nil, badRequest(`"jail" is required`)
	case (req.Add == nil) == (req.Del == nil):
		return nil, badRequest(`want exactly one of "add" (a list) and "del" (one address or prefix)`)
	case req.Add != nil && (len(req.Add) == 0 || len(req.Add) > maxIgnoreAdd):
		return nil, badRequest(`"add" holds %d entries: want 1 to %d`, len(req.Add), maxIgnoreAdd)
	}
	var (
		list []netip.Prefix
		err  error
	)
	if req.Del != nil {
		pfx, e := parseIP(*req.Del)
		if e != nil {
			return nil, e
		}
		list, err = h.svc.DelIgnoreIP(req.Jail, pfx)
		h.logChange(r, p, err, keyJail, req.Jail, keyDel, FormatPrefix(pfx))
		if errors.Is(err, jail.ErrNotIgnored) {
			return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("%s is not in ignoreip of jail %s", FormatPrefix(pfx), quote(req.Jail))}
		}
	} else {
		ps := make([]netip.Prefix, len(req.Add))
		for i, a := range req.Add {
			var e *apiError
			if ps[i], e = parseIP(a); e != nil {
				return nil, e
			}
		}
		list, err = h.svc.AddIgnoreIP(req.Jail, ps...)
		h.logChange(r, p, err, keyJail, req.Jail, keyAdd, formatPrefixes(ps))
	}
	if err != nil {
		return nil, h.serviceError(err, req.Jail, netip.Prefix{})
	}
	return ignoreIPResponse{Jail: req.Jail, IgnoreIP: formatPrefixes(list)}, nil
}

// logMutation logs a ban or unban request once, with who asked and how it
// ended.
func (h *handler) logMutation(r *http.Request, p peer, jailName string, pfx netip.Prefix, dur string, err error) {
	var attrs []any
	if jailName != "" {
		attrs = append(attrs, keyJail, jailName)
	}
	if pfx.IsValid() {
		attrs = append(attrs, keyIP, FormatPrefix(pfx))
	}
	if dur != "" {
		attrs = append(attrs, keyFor, dur)
	}
	h.logChange(r, p, err, attrs...)
}

// logChange logs a mutating request once, with who asked, what it asked
// (attrs) and how it ended.
func (h *handler) logChange(r *http.Request, p peer, err error, attrs ...any) {
	attrs = append([]any{keyMethod, r.Method, keyPath, r.URL.Path, keyUID, p.uid, keyPID, p.pid}, attrs...)
	if err != nil {
		attrs = append(attrs, keyErr, err)
	}
	h.logger.Info("control request", attrs...)
}

func parseIP(s string) (netip.Prefix, *apiError) {
	if s == "" {
		return netip.Prefix{}, badRequest(`"ip" is required`)
	}
	p, err := netaddr.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, badRequest("bad \"ip\" %s: want an address (192.0.2.7, 2001:db8::1) or a CIDR prefix (198.51.100.0/24)", quote(s))
	}
	return p, nil
}

// decode reads r's body as exactly one JSON object into v: no unknown field,
// no trailing data, at most maxBody bytes. An empty body is allowed only when
// emptyOK.
func decode(r *http.Request, v any, emptyOK bool) *apiError {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One value only: anything after it but white space is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("trailing data after the JSON object")
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body over %d bytes", tooBig.Limit)}
	case errors.Is(err, io.EOF):
		if emptyOK {
			return nil
		}
		return badRequest("empty request body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("bad JSON body: unexpected end of input")
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("bad JSON body at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("bad JSON body: want an object, got %s", typ.Value)
		}
		return badRequest("bad JSON body: field %s: want %s, got %s", quote(typ.Field), typ.Type, typ.Value)
	}
	// Unknown fields and the like: encoding/json's message is clear.
	return badRequest("bad JSON body: %s", trimJSONPrefix(err.Error()))
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// serviceError maps an error of Service to an answer. The messages are made
// here from the request (the service's wrapping is logged, not sent), so
// the client sees the address the way it is shown everywhere else.
func (h *handler) serviceError(err error, jailName string, p netip.Prefix) *apiError {
	var refused *jail.RefusedError
	var reload *ReloadError
	switch {
	case errors.As(err, &reload):
		return &apiError{status: http.StatusUnprocessableEntity, msg: reload.Error()}
	case errors.As(err, &refused):
		rp := refused.Prefix
		if !rp.IsValid() {
			rp = p
		}
		return &apiError{status: http.StatusUnprocessableEntity, msg: fmt.Sprintf("refusing to ban %s: %s", FormatPrefix(rp), refused.Reason)}
	case errors.Is(err, jail.ErrUnknownJail):
		if jailName == "" {
			return &apiError{status: http.StatusNotFound, msg: "unknown jail"}
		}
		return &apiError{status: http.StatusNotFound, msg: "unknown jail " + quote(jailName)}
	case errors.Is(err, jail.ErrNotBanned):
		msg := FormatPrefix(p) + " is not banned"
		if jailName != "" {
			msg += " in jail " + quote(jailName)
		}
		return &apiError{status: http.StatusNotFound, msg: msg}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, msg: "request canceled", err: err}
	}
	return &apiError{status: http.StatusInternalServerError, msg: "internal error (see the daemon's log)", err: err}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, errorResponse{Error: e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the package's own types are written; this cannot happen.
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// quote is strconv.Quote cut to a length fit for an error message.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
