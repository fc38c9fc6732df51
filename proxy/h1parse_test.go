package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// headSeeds are request heads the fast path must take or hand over
// correctly; FuzzParseHead starts from them.
var headSeeds = []string{
	"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n",
	"HEAD /x?y=1 HTTP/1.1\r\nHost: app.example:8080\r\nAccept: */*\r\nUser-Agent: Mozilla/5.0\r\n\r\n",
	"GET /a%20b/%2F?q=%41 HTTP/1.1\r\nhOsT: App.Example.\r\nConnection: keep-alive, close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1, 198.51.100.2\r\nX-Forwarded-For: 203.0.113.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: b\r\nForwarded: for=192.0.2.9\r\nX-Real-IP: 192.0.2.4\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nProxy-Authorization: Basic eA==\r\nX-Empty:\r\nX-Sp:   v  \t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
	// Handed over, each for one reason.
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: one\r\n two\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Ctl: a\x01b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
	"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"get / HTTP/1.1\r\nHost: a\r\n\r\n",
	"HEADER / HTTP/1.1\r\nHost: a\r\n\r\n",
}

// droppedFields are the request fields the fast path does not pass on as
// they came (hop-by-hop, forwarding, and Host, written apart).
var droppedFields = []string{"Host", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip", refusedField}

// FuzzParseHead: whatever the fast path takes, net/http reads the same way
// (method, target, path, Host, Connection: close, no body, the fields
// passed on and the forwarding ones), so the fast path never reads a
// request differently from the server behind the handoff. And what it
// takes is never a prefix it mistook for a whole head.
func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, n := scanHead(in)
		if v != headTake {
			return
		}
		b := in[:n]
		if !bytes.HasSuffix(b, []byte("\r\n\r\n")) || bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
			t.Fatalf("scanHead took %q", b)
		}
		var h h1Head
		if !parseHead(b, &h, false) {
			return
		}
		checkHead(t, b, &h)
	})
}

// checkHead compares what parseHead read from b with http.ReadRequest.
func checkHead(t *testing.T, b []byte, h *h1Head) {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("fast path took %q, net/http refuses it: %v", b, err)
	}
	rawPath, query, hasQuery := strings.Cut(req.RequestURI, "?")
	sent, match, err := normalPath(rawPath)
	if err != nil {
		t.Fatalf("fast path took %q, whose path is refused: %v", b, err)
	}
	if hasQuery {
		sent += "?" + query
	}
	want := http.MethodGet
	if h.head {
		want = http.MethodHead
	}
	switch {
	case req.Method != want:
		t.Errorf("%q: method %s, net/http %s", b, want, req.Method)
	case sent != string(h.target):
		t.Errorf("%q: target %q, want %q", b, h.target, sent)
	case match != h.path:
		t.Errorf("%q: path %q, want %q", b, h.path, match)
	case req.Host != string(h.host):
		t.Errorf("%q: host %q, net/http %q", b, h.host, req.Host)
	case req.Close != h.close:
		t.Errorf("%q: close %v, net/http %v", b, h.close, req.Close)
	case req.ContentLength != 0 || len(req.TransferEncoding) > 0:
		t.Errorf("%q: taken with a body (length %d, %v)", b, req.ContentLength, req.TransferEncoding)
	case h.size != len(b):
		t.Errorf("%q: size %d", b, h.size)
	}
	got, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(slices.Clone(h.fields), crlf...)))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("%q: passed fields %q do not parse: %v", b, h.fields, err)
	}
	wantFields := req.Header.Clone()
	for _, k := range droppedFields {
		delete(wantFields, k)
	}
	for k := range wantFields {
		if strings.Contains(k, "_") {
			delete(wantFields, k)
		}
	}
	if !equalHeaders(http.Header(got), wantFields) {
		t.Errorf("%q: fields passed %v, net/http read %v", b, got, wantFields)
	}
	if !slices.Equal(h.xff, req.Header.Values("X-Forwarded-For")) || !slices.Equal(h.forwarded, req.Header.Values("Forwarded")) {
		t.Errorf("%q: forwarding chains %q %q, net/http %q %q", b, h.xff, h.forwarded, req.Header.Values("X-Forwarded-For"), req.Header.Values("Forwarded"))
	}
	if string(h.xfProto) != req.Header.Get("X-Forwarded-Proto") || string(h.xfHost) != req.Header.Get("X-Forwarded-Host") {
		t.Errorf("%q: X-Forwarded-Proto/Host %q %q", b, h.xfProto, h.xfHost)
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestParseHeadSeeds: the seeds the fast path must take are taken and read
// as net/http reads them; every other seed is handed over.
func TestParseHeadSeeds(t *testing.T) {
	taken := 0
	for i, s := range headSeeds {
		v, n := scanHead([]byte(s))
		var h h1Head
		ok := v == headTake && parseHead([]byte(s)[:n], &h, false)
		if wantTake := i < 7; ok != wantTake {
			t.Errorf("seed %d %q: taken %v, want %v", i, s, ok, wantTake)
			continue
		}
		if ok {
			taken++
			checkHead(t, []byte(s)[:n], &h)
		}
	}
	if taken != 7 {
		t.Errorf("%d seeds taken, want 7", taken)
	}
}

// TestScanHeadEarly: a request that is not a GET or HEAD, or has a bare
// LF, is handed over at once, before its head is complete; an incomplete
// GET waits for more.
func TestScanHeadEarly(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want headVerdict
	}{
		{"", headMore},
		{"G", headMore},
		{"HEA", headMore},
		{"GET / HTTP/1.1\r\nHost: a\r\n", headMore},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", headMore},
		{"P", headHandoff},
		{"GEX", headHandoff},
		{"HEADX", headHandoff},
		{"GET / HTTP/1.1\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\n\n", headHandoff},
		{"PRI * HTTP/2.0\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", headTake},
	} {
		if v, _ := scanHead([]byte(tc.in)); v != tc.want {
			t.Errorf("scanHead(%q) = %d, want %d", tc.in, v, tc.want)
		}
	}
	if _, n := scanHead([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET")); n != len("GET / HTTP/1.1\r\nHost: a\r\n\r\n") {
		t.Errorf("head size %d", n)
	}
}
