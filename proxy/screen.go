package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// What ServeHTTP checks before a request is routed, and how a request body
// reaches the upstream. nginx is the reference where the RFCs leave room.

// refusal is why a request is answered 400 before it is routed ("" for
// none).
type refusal string

// screen checks r and puts its target in normal form (normpath.go); it
// returns the path routes match, or why r is refused. A refused request
// is answered 400 and its connection closed.
func screen(r *http.Request, cfg *Config) (match string, why refusal) {
	if v, ok := r.Header[refusedField]; ok {
		delete(r.Header, refusedField)
		if len(v) == 1 {
			if reason, ok := strings.CutPrefix(v[0], refusedToken+" "); ok {
				return "", refusal(reason)
			}
		}
	}
	if !upperMethod(r.Method) {
		// Methods are case-sensitive and registered in upper case;
		// forwarding "get" lets the upstream read it as it likes.
		return "", "method not in upper case"
	}
	if r.Host == "" {
		// An empty Host on HTTP/1.1 is malformed (RFC 9112 §3.2). nginx
		// serves HTTP/1.0 without Host on its default server; moat has no
		// name to give the upstream in its place, and refuses it too.
		return "", "no Host"
	}
	if i := strings.IndexByte(r.RequestURI, '#'); i >= 0 {
		// A fragment is not sent by clients; nginx drops it.
		u, err := url.ParseRequestURI(r.RequestURI[:i])
		if err != nil {
			return "", "bad target"
		}
		r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.ForceQuery = u.Path, u.RawPath, u.RawQuery, u.ForceQuery
	}
	sent, match, err := normalPath(r.URL.EscapedPath())
	if err != nil {
		return "", "bad path"
	}
	if r.URL.RawPath != sent {
		p, err := url.PathUnescape(sent)
		if err != nil {
			return "", "bad path"
		}
		r.URL.Path, r.URL.RawPath = p, sent
	}
	if !cfg.UnderscoresInHeaders {
		for k := range r.Header {
			if strings.IndexByte(k, '_') >= 0 {
				delete(r.Header, k)
			}
		}
	}
	return match, ""
}

// upperMethod says whether m is made of what nginx takes in a method:
// upper-case letters, '_' and '-'.
func upperMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !(c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// spoolMem is how much of a request body is held in memory; the rest goes
// to a file (nginx's client_body_buffer_size is 16 KiB).
const spoolMem = 64 << 10

// spool reads r's body whole before an upstream is chosen, as nginx does
// (proxy_request_buffering): a client that sends its body slowly, or never,
// holds no upstream connection, a malformed chunked body is answered 400
// before any of it went upstream, and the upstream gets the body with its
// length. Each read waits at most cfg.BodyTimeout. The body is capped at
// max bytes (none when max <= 0). It returns the code to answer with, or
// 0 when the body is in place.
func (p *Proxy) spool(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) int {
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	in := r.Body
	if max > 0 {
		in = http.MaxBytesReader(w, in, max)
	}
	rc := http.NewResponseController(w)
	var mem bytes.Buffer
	var file *os.File
	buf := copyBufferPool.Get().(*[]byte)
	defer copyBufferPool.Put(buf)
	fail := func(code int) int {
		if file != nil {
			file.Close()
		}
		return code
	}
	var size int64
	for {
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return fail(http.StatusBadRequest)
		}
		n, err := in.Read(*buf)
		if n > 0 {
			size += int64(n)
			switch {
			case file != nil:
				if _, err := file.Write((*buf)[:n]); err != nil {
					p.log.Error("request body spool", "error", err)
					return fail(http.StatusInternalServerError)
				}
			case mem.Len()+n <= spoolMem:
				mem.Write((*buf)[:n])
			default:
				f, err := p.spoolFile()
				if err != nil {
					p.log.Error("request body spool", "error", err)
					return fail(http.StatusInternalServerError)
				}
				file = f
				if _, err := file.Write(append(mem.Bytes(), (*buf)[:n]...)); err != nil {
					p.log.Error("request body spool", "error", err)
					return fail(http.StatusInternalServerError)
				}
				mem = bytes.Buffer{}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			var ne net.Error
			switch {
			case errors.As(err, &mbe):
				return fail(http.StatusRequestEntityTooLarge)
			case errors.As(err, &ne) && ne.Timeout():
				return fail(http.StatusRequestTimeout)
			}
			return fail(http.StatusBadRequest)
		}
	}
	// No deadline past the body: net/http's own read to notice a client
	// going away must not time out during the upstream exchange.
	_ = rc.SetReadDeadline(time.Time{})
	r.Body.Close()
	if file != nil {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return fail(http.StatusInternalServerError)
		}
		r.Body = file
	} else {
		r.Body = io.NopCloser(bytes.NewReader(mem.Bytes()))
	}
	r.ContentLength = size
	r.TransferEncoding = nil
	// The body is here: the upstream is not asked whether to send it.
	r.Header.Del("Expect")
	if size == 0 {
		r.Body.Close()
		r.Body = http.NoBody
	}
	return 0
}

// spoolFile is an unnamed file for a request body: it is removed as soon as
// it is made, so nothing is left behind, whatever happens.
func (p *Proxy) spoolFile() (*os.File, error) {
	dir := p.cfg.StateDir
	if dir != "" {
		dir += "/spool"
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	f, err := os.CreateTemp(dir, "body-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
