package proxy

import (
	"errors"
	"strings"
)

// Routes match, and upstreams receive, a request's path in one normal
// form, so that spelling a path differently cannot take a request past a
// route's limits to an upstream that reads it as the same path
// (/x/../login, //login, /%2e/login and /login;a=b are all /login to
// nginx, Apache or Tomcat). normalPath computes both forms from the path
// as sent:
//
//   - sent upstream: duplicate slashes merged, dot segments ("." and "..",
//     also percent-encoded, also followed by ";params") removed,
//     percent-encoded unreserved characters decoded, other encodings in
//     upper case, and bytes a path may not hold as they are encoded;
//     ";params" and encoded slashes stay as sent.
//   - matched against routes: that path decoded whole, cut into segments
//     again (an encoded slash separates segments here), ";params" left out
//     of every segment, and dot segments removed once more.
//
// A path whose dot segments climb above the root, or with a broken
// percent-encoding, is refused (400, as nginx answers).

// errBadPath is the error of a path that is refused.
var errBadPath = errors.New("bad request path")

// normalPath returns the path sent upstream and the path routes match. p
// is the path as sent (escaped), starting with "/".
func normalPath(p string) (sent, match string, err error) {
	if p == "" || p[0] != '/' {
		return "", "", errBadPath
	}
	if plainPath(p) {
		return p, p, nil
	}
	var segs []string
	trailing := false
	for s := range strings.SplitSeq(p[1:], "/") {
		e, err := unreserve(s)
		if err != nil {
			return "", "", err
		}
		if segs, trailing, err = dotStep(segs, e, paramsCut(e)); err != nil {
			return "", "", err
		}
	}
	sent = joinPath(segs, trailing)
	decoded, err := pctDecode(sent)
	if err != nil {
		return "", "", err
	}
	segs = segs[:0]
	for s := range strings.SplitSeq(decoded[1:], "/") {
		s = paramsCut(s)
		if segs, trailing, err = dotStep(segs, s, s); err != nil {
			return "", "", err
		}
	}
	return sent, joinPath(segs, trailing), nil
}

// plainPath says whether p is already in normal form with nothing to
// decode: no percent sign, no ';', no dot segment, no empty segment, only
// bytes a path holds as they are.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !pathByte(c) || c == '%' || c == ';' {
			return false
		}
		if c == '/' && i > 0 && p[i-1] == '/' {
			return false
		}
		if c == '.' && p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' || (p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
			return false
		}
	}
	return true
}

// dotStep adds segment s (whose name, without ";params", is name) to segs:
// an empty segment is left out, "." too, ".." takes the last one off.
// trailing says whether the path ends with a slash after s.
func dotStep(segs []string, s, name string) ([]string, bool, error) {
	switch name {
	case "":
		if s == "" {
			return segs, true, nil
		}
	case ".":
		return segs, true, nil
	case "..":
		if len(segs) == 0 {
			return nil, false, errBadPath
		}
		return segs[:len(segs)-1], true, nil
	}
	return append(segs, s), false, nil
}

// paramsCut is a segment without its ";params".
func paramsCut(s string) string {
	name, _, _ := strings.Cut(s, ";")
	return name
}

func joinPath(segs []string, trailing bool) string {
	if len(segs) == 0 {
		return "/"
	}
	n := len(segs)
	for _, s := range segs {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n + 1)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailing {
		b.WriteByte('/')
	}
	return b.String()
}

// unreserve rewrites one escaped segment: percent-encoded unreserved
// characters decoded, other encodings in upper case, bytes a path may not
// hold as they are encoded.
func unreserve(s string) (string, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			d, ok := pctByte(s, i)
			if !ok {
				return "", errBadPath
			}
			if unreserved(d) {
				b = append(b, d)
			} else {
				b = append(b, '%', upperHex[d>>4], upperHex[d&15])
			}
			i += 2
		case pathByte(c):
			b = append(b, c)
		default:
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return string(b), nil
}

// pctDecode decodes every percent-encoding of s.
func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		d, ok := pctByte(s, i)
		if !ok {
			return "", errBadPath
		}
		b = append(b, d)
		i += 2
	}
	return string(b), nil
}

const upperHex = "0123456789ABCDEF"

// pctByte is the byte the percent-encoding at s[i] stands for.
func pctByte(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, lo := unhex(s[i+1]), unhex(s[i+2])
	if hi < 0 || lo < 0 {
		return 0, false
	}
	return byte(hi<<4 | lo), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unreserved says whether c is an RFC 3986 unreserved character.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// pathByte says whether a path holds c as it is: unreserved, a sub-delim,
// ':', '@', '/', or '%' (an encoding, checked apart). These are the bytes
// Go's net/url keeps in an escaped path, so that both serving paths send
// the same bytes upstream.
func pathByte(c byte) bool {
	if unreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/', '%':
		return true
	}
	return false
}
