package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
)

// The framing guard. net/http serves a request whose framing is ambiguous —
// Content-Length with Transfer-Encoding, Transfer-Encoding on HTTP/1.0 — by
// one reading (it drops the length, or the coding) and keeps the
// connection. A front proxy (a CDN, a load balancer) that read it the other
// way then sends what moat takes as a second request: request smuggling.
// RFC 9112 §6.1 asks for the connection to be closed; nginx answers 400.
//
// net/http drops the evidence (both fields) before a handler sees the
// request, so the guard reads the byte stream net/http reads, in front of
// it: each request head whole, before net/http gets any of it, and the
// body by the framing net/http itself gives the head (http.ReadRequest on
// the head), so the guard finds the next head where net/http will. A head
// it refuses is not passed on: net/http gets, in its place, a request that
// carries the refusal to ServeHTTP (refusedField), which answers 400 and
// closes, and nothing after it. After a request that changes
// protocols (Upgrade, CONNECT) or one net/http will refuse and close on
// anyway, the guard passes the rest as it comes.

// refusedField carries the guard's refusal to ServeHTTP with refusedToken,
// which a client cannot guess (one it sends is removed).
const refusedField = "X-Moat-Refused"

var refusedToken = func() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// Guard states.
const (
	gHead      = iota // in a request head (held back)
	gBody             // in a sized body (n bytes left)
	gChunkLine        // in a chunk-size line
	gChunkData        // in chunk data (n bytes left)
	gChunkEnd         // in the CRLF after chunk data (n bytes left)
	gTrailer          // in the trailer section after the last chunk
	gOpaque           // not HTTP/1 requests any more: passed as is
	gEnd              // a head was refused: nothing more is read
)

// maxChunkLine is net/http's bound on a chunk-size line.
const maxChunkLine = 4096

// guardConn is a connection net/http serves HTTP/1 on, with the guard in
// front of its reads. pre holds bytes read before (by the fast path).
type guardConn struct {
	net.Conn
	tls     *tls.ConnectionState // of a TLS connection
	pre     []byte
	maxHead int // past it, net/http refuses the head itself

	state int
	n     int64
	held  []byte // the head, chunk line or trailer being read
	out   []byte // bytes to give net/http
	err   error  // the connection's read error, after out
}

func newGuardConn(c net.Conn, pre []byte, maxHeaderBytes int) *guardConn {
	return &guardConn{Conn: c, pre: pre, maxHead: maxHeaderBytes + 4096 + 64}
}

func (g *guardConn) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.state == gEnd {
			// Nothing more is given to net/http; what the client sends
			// is dropped. An end of the stream here would tell net/http
			// the client went away while it still serves the requests
			// before the refused one.
			if _, err := g.Conn.Read(p); err != nil {
				return 0, err
			}
			continue
		}
		if err := g.err; err != nil {
			// Not kept: a timeout (net/http's own, to stop a read) passes.
			g.err = nil
			return 0, err
		}
		var in []byte
		if len(g.pre) > 0 {
			in, g.pre = g.pre, nil
		} else {
			n, err := g.Conn.Read(p)
			if n == 0 {
				return 0, err
			}
			in, g.err = p[:n], err
		}
		g.out = g.feed(g.out[:0], in)
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// Write is the connection's: a write that timed out (send_timeout) makes
// the close that follows a reset (see abort).
func (g *guardConn) Write(p []byte) (int, error) {
	n, err := g.Conn.Write(p)
	if isTimeout(err) {
		abort(g.Conn)
	}
	return n, err
}

// feed runs the guard over in and appends what net/http may read to out.
func (g *guardConn) feed(out, in []byte) []byte {
	for len(in) > 0 {
		switch g.state {
		case gOpaque:
			return append(out, in...)
		case gEnd:
			return out
		case gBody, gChunkData:
			k := int(min(g.n, int64(len(in))))
			out, in = append(out, in[:k]...), in[k:]
			if g.n -= int64(k); g.n == 0 {
				if g.state == gBody {
					g.state = gHead
				} else {
					g.state, g.n = gChunkEnd, 2
				}
			}
		case gChunkEnd:
			c := in[0]
			out, in = append(out, c), in[1:]
			if (g.n == 2 && c != '\r') || (g.n == 1 && c != '\n') {
				g.state = gOpaque // net/http refuses the body and closes
				continue
			}
			if g.n--; g.n == 0 {
				g.state = gChunkLine
			}
		case gHead:
			if len(g.held) == 0 {
				// net/http skips CR and LF before a request line.
				k := 0
				for k < len(in) && (in[k] == '\r' || in[k] == '\n') {
					k++
				}
				out, in = append(out, in[:k]...), in[k:]
				if len(in) == 0 {
					return out
				}
			}
			var done bool
			if in, done = g.hold(in, g.maxHead, blankLine); done {
				out = g.head(out)
			}
		case gChunkLine:
			var done bool
			if in, done = g.hold(in, maxChunkLine, lineEnd); done {
				out = append(out, g.held...)
				g.state, g.n = chunkSize(g.held)
				g.held = g.held[:0]
			}
		case gTrailer:
			var done bool
			if in, done = g.hold(in, maxChunkLine, trailerEnd); done {
				out = append(out, g.held...)
				g.held = g.held[:0]
				g.state = gHead
			}
		}
		if g.state == gOpaque && len(g.held) > 0 {
			out = append(out, g.held...)
			g.held = g.held[:0]
		}
	}
	return out
}

// hold moves bytes of in to g.held until end says where what is held
// ends; it returns the rest of in and whether the end came. Past max bytes
// the guard gives up (opaque, the caller passes what is held on): net/http
// refuses what it is given and closes.
func (g *guardConn) hold(in []byte, max int, end func([]byte, int) int) ([]byte, bool) {
	from := len(g.held)
	g.held = append(g.held, in...)
	if e := end(g.held, from); e >= 0 {
		rest := in[len(in)-(len(g.held)-e):]
		g.held = g.held[:e]
		return rest, true
	}
	if len(g.held) > max {
		g.state = gOpaque
	}
	return nil, false
}

// blankLine is where a head in b ends (past its blank line), or -1;
// bytes before from were looked at already.
func blankLine(b []byte, from int) int {
	for i := max(from, 1); i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if b[i-1] == '\n' || (b[i-1] == '\r' && i >= 2 && b[i-2] == '\n') {
			return i + 1
		}
	}
	return -1
}

// lineEnd is where the first line of b ends (past its LF), or -1.
func lineEnd(b []byte, from int) int {
	if i := bytes.IndexByte(b[from:], '\n'); i >= 0 {
		return from + i + 1
	}
	return -1
}

// trailerEnd is where a trailer section ends: at once after a CRLF, else
// past a blank line, as net/http reads it.
func trailerEnd(b []byte, from int) int {
	if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		return 2
	}
	return blankLine(b, from)
}

// chunkSize reads a chunk-size line as net/http does (CRLF only, no other
// CR, extensions ignored, at most 16 hex digits) and gives the state that
// follows it: its data, the trailer after the last chunk, or opaque for a
// line net/http refuses.
func chunkSize(line []byte) (int, int64) {
	if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line, '\r') != len(line)-2 {
		return gOpaque, 0
	}
	line = bytes.TrimRight(line[:len(line)-2], " \t")
	line, _, _ = bytes.Cut(line, []byte(";"))
	if len(line) == 0 || len(line) > 16 {
		return gOpaque, 0
	}
	var n uint64
	for _, c := range line {
		d := unhex(c)
		if d < 0 {
			return gOpaque, 0
		}
		n = n<<4 | uint64(d)
	}
	if n == 0 {
		return gTrailer, 0
	}
	if n > 1<<62 {
		return gOpaque, 0
	}
	return gChunkData, int64(n)
}

// head screens the request head in g.held and appends what net/http gets
// for it to out.
func (g *guardConn) head(out []byte) []byte {
	h := g.held
	g.held = g.held[:0]
	why, req := frameCheck(h)
	if why != "" {
		g.state = gEnd
		return append(out, substitute(req, why)...)
	}
	out = append(out, h...)
	switch {
	case req == nil, req.Method == http.MethodConnect, req.Header.Get("Upgrade") != "":
		// net/http refuses it and closes, or the protocol changes.
		g.state = gOpaque
	case len(req.TransferEncoding) > 0:
		g.state = gChunkLine
	case req.ContentLength > 0:
		g.state, g.n = gBody, req.ContentLength
	default:
		g.state = gHead
	}
	return out
}

// frameCheck reads a request head as net/http will (req is nil when it
// refuses it) and says why the guard refuses it: a framing that two
// readers may read two ways, or a folded field, which nginx refuses and
// net/http joins.
func frameCheck(h []byte) (refusal, *http.Request) {
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(h), len(h)))
	if err != nil {
		return "", nil
	}
	f := rawFields(h)
	switch {
	case f.te > 0 && f.cl > 0:
		return "Content-Length with Transfer-Encoding", req
	case f.te > 0 && !req.ProtoAtLeast(1, 1):
		return "Transfer-Encoding on HTTP/1.0", req
	case f.cl > 1:
		return "more than one Content-Length", req
	case f.teTab:
		// nginx takes only spaces around "chunked"; a front proxy that
		// does not read the coding would take the body for requests.
		return "Transfer-Encoding with a tab", req
	case f.folded:
		return "folded header line", req
	}
	return "", req
}

// headFields is what frameCheck needs from a head's raw field lines, which
// net/http's parser joins, drops or rewrites.
type headFields struct {
	te, cl int  // Transfer-Encoding and Content-Length lines
	teTab  bool // a tab in a Transfer-Encoding line
	folded bool // a line that continues the one before (obs-fold)
}

// rawFields reads the field lines of a head (net/http has accepted it, so
// names are tokens and lines end in LF).
func rawFields(h []byte) headFields {
	var f headFields
	_, rest, _ := bytes.Cut(h, []byte("\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			f.folded = true
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case asciiFold(name, "transfer-encoding"):
			f.te++
			f.teTab = f.teTab || bytes.IndexByte(value, '\t') >= 0
		case asciiFold(name, "content-length"):
			f.cl++
		}
	}
	return f
}

// substitute is the request net/http gets in place of a refused one: the
// same method, target and Host (for the access log), the refusal, and
// Connection: close.
func substitute(req *http.Request, why refusal) []byte {
	b := append([]byte(req.Method), ' ')
	b = append(b, req.RequestURI...)
	b = append(b, " HTTP/1.1\r\n"...)
	if req.Host != "" {
		b = append(append(append(b, "Host: "...), req.Host...), crlf...)
	}
	b = append(append(append(b, refusedField+": "+refusedToken+" "...), why...), crlf...)
	return append(b, "Connection: close\r\n\r\n"...)
}
