package proxy

import (
	"bytes"
)

// h1Head is a request head the fast path takes (see parseHead). What it
// holds is copied out of the connection's read buffer, which the next
// read may overwrite.
type h1Head struct {
	size   int    // bytes of the head, the blank line included
	head   bool   // HEAD, else GET
	target []byte // the request target as sent (origin form)
	path   string // its path, decoded as net/http decodes it
	host   []byte
	close  bool // Connection: close
	// fields holds the header lines passed upstream, each ending in CRLF:
	// all but the hop-by-hop ones and the forwarding ones, which the proxy
	// writes itself.
	fields []byte
	vals   []byte // storage of target, host, xfProto and xfHost
	// The client's forwarding headers, read only when the peer is a
	// trusted proxy.
	xff, forwarded  []string
	xfProto, xfHost []byte
}

// headVerdict is what the fast path does with what is buffered.
type headVerdict int

const (
	headMore    headVerdict = iota // a GET or HEAD head, not complete yet
	headTake                       // a complete head the fast path takes
	headHandoff                    // anything else: net/http reads it
)

// scanHead looks at the start of buffered input: whether it can still be
// a GET or HEAD head, and where that head ends. It decides as early as it
// can, so that other requests go to net/http without waiting for more
// bytes; a bare LF anywhere (which net/http may read as a line end) hands
// the request over too.
func scanHead(b []byte) (headVerdict, int) {
	if !bytes.HasPrefix([]byte("GET "), b[:min(len(b), 4)]) && !bytes.HasPrefix([]byte("HEAD "), b[:min(len(b), 5)]) {
		return headHandoff, 0
	}
	from := 0
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return headMore, 0
		}
		i += from
		if i == 0 || b[i-1] != '\r' {
			return headHandoff, 0
		}
		if i >= 3 && b[i-2] == '\n' && b[i-3] == '\r' {
			return headTake, i + 1
		}
		from = i + 1
	}
}

// parseHead reads a complete request head (as scanHead delimited it) into
// h, and says whether the fast path may serve it. It takes only what it
// reads without doubt: a GET or HEAD in origin form, HTTP/1.1, one Host,
// no body, no upgrade, no Expect or TE, header names that are tokens,
// values without control bytes, CRLF line ends and no folding. Everything
// else is left to net/http, which reads the request again from its first
// byte and answers or refuses it as it always has.
func parseHead(b []byte, h *h1Head, underscores bool) bool {
	*h = h1Head{size: len(b), fields: h.fields[:0], vals: h.vals[:0]}
	// Everything kept is a part of b: with this room no append moves it.
	if cap(h.fields) < len(b) {
		h.fields, h.vals = make([]byte, 0, len(b)), make([]byte, 0, len(b))
	}
	line, rest, _ := bytes.Cut(b, crlf)
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		line, h.head = line[5:], true
	default:
		return false
	}
	target, proto, ok := bytes.Cut(line, []byte(" "))
	if !ok || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return false
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	// The path is routed and sent in normal form (normpath.go); one that
	// is refused is answered by net/http's path.
	raw, query, hasQuery := bytes.Cut(target, []byte("?"))
	if hasQuery && !cleanQuery(query) {
		// ReverseProxy drops the parameters it cannot parse; net/http's
		// path sends that request.
		return false
	}
	sent, match, err := normalPath(string(raw))
	if err != nil {
		return false
	}
	if sent == string(raw) {
		h.target = h.keep(target)
	} else {
		n := len(h.vals)
		h.vals = append(h.vals, sent...)
		if hasQuery {
			h.vals = append(append(h.vals, '?'), query...)
		}
		h.target = h.vals[n:len(h.vals):len(h.vals)]
	}
	h.path = match
	for {
		line, rest, _ = bytes.Cut(rest, crlf)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !token(name) {
			return false
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return false
			}
		}
		kind := hopField(name)
		if kind == fieldPass && !underscores && bytes.IndexByte(name, '_') >= 0 {
			// CGI and WSGI read X_Real_IP as X-Real-IP: dropped, as nginx
			// does unless underscores_in_headers is on.
			kind = fieldDrop
		}
		switch kind {
		case fieldPass:
			h.fields = append(append(h.fields, line...), crlf...)
		case fieldHost:
			if h.host != nil || !hostChars(value) {
				return false
			}
			h.host = h.keep(value)
		case fieldConnection:
			for _, tok := range bytes.Split(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case asciiFold(tok, "close"):
					h.close = true
				case asciiFold(tok, "keep-alive"), len(tok) == 0:
				default:
					// It names other fields as hop-by-hop.
					return false
				}
			}
		case fieldXFF:
			h.xff = append(h.xff, string(value))
		case fieldForwarded:
			h.forwarded = append(h.forwarded, string(value))
		case fieldXFProto:
			if h.xfProto == nil {
				h.xfProto = h.keep(value)
			}
		case fieldXFHost:
			if h.xfHost == nil {
				h.xfHost = h.keep(value)
			}
		case fieldDrop:
		default: // fieldRefuse
			return false
		}
	}
	return len(h.host) > 0
}

// asciiFold says whether a and b are equal in ASCII case folding only: no
// Unicode folding, which would read "clo\u017fe" as "close".
func asciiFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// keep copies v into h's storage.
func (h *h1Head) keep(v []byte) []byte {
	n := len(h.vals)
	h.vals = append(h.vals, v...)
	return h.vals[n:len(h.vals):len(h.vals)]
}

var crlf = []byte("\r\n")

// Header fields by what the fast path does with them.
const (
	fieldPass = iota
	fieldHost
	fieldConnection
	fieldXFF
	fieldForwarded
	fieldXFProto
	fieldXFHost
	fieldDrop   // hop-by-hop or replaced: not passed on
	fieldRefuse // the request goes to net/http
)

// hopField classifies a header name (any case).
func hopField(name []byte) int {
	switch len(name) {
	case 2:
		if bytes.EqualFold(name, []byte("te")) {
			return fieldRefuse
		}
	case 4:
		if bytes.EqualFold(name, []byte("host")) {
			return fieldHost
		}
	case 6:
		if bytes.EqualFold(name, []byte("expect")) {
			return fieldRefuse
		}
	case 7:
		if bytes.EqualFold(name, []byte("upgrade")) || bytes.EqualFold(name, []byte("trailer")) {
			return fieldRefuse
		}
	case 9:
		if bytes.EqualFold(name, []byte("forwarded")) {
			return fieldForwarded
		}
		if bytes.EqualFold(name, []byte("x-real-ip")) {
			return fieldDrop
		}
	case 10:
		if bytes.EqualFold(name, []byte("connection")) {
			return fieldConnection
		}
		if bytes.EqualFold(name, []byte("keep-alive")) {
			return fieldDrop
		}
	case 14:
		if bytes.EqualFold(name, []byte("content-length")) {
			return fieldRefuse
		}
		if bytes.EqualFold(name, []byte(refusedField)) {
			// The framing guard's field (guard.go), never a client's.
			return fieldDrop
		}
	case 15:
		if bytes.EqualFold(name, []byte("x-forwarded-for")) {
			return fieldXFF
		}
	case 16:
		if bytes.EqualFold(name, []byte("x-forwarded-host")) {
			return fieldXFHost
		}
		if bytes.EqualFold(name, []byte("proxy-connection")) {
			return fieldDrop
		}
	case 17:
		if bytes.EqualFold(name, []byte("x-forwarded-proto")) {
			return fieldXFProto
		}
		if bytes.EqualFold(name, []byte("transfer-encoding")) {
			return fieldRefuse
		}
	case 18:
		if bytes.EqualFold(name, []byte("proxy-authenticate")) {
			return fieldDrop
		}
	case 19:
		if bytes.EqualFold(name, []byte("proxy-authorization")) {
			return fieldDrop
		}
	}
	return fieldPass
}

// token says whether b is a non-empty RFC 9110 token.
func token(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tchar[c] {
			return false
		}
	}
	return true
}

var tchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// hostChars says whether a Host value is made only of what a host name, an
// IPv4 or bracketed IPv6 address and a port are made of.
func hostChars(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// cleanQuery says whether url.ParseQuery reads q without an error: no ';'
// and every '%' starts a valid encoding.
func cleanQuery(q []byte) bool {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || unhex(q[i+1]) < 0 || unhex(q[i+2]) < 0 {
				return false
			}
		}
	}
	return true
}
