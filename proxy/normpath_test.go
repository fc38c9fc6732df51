package proxy

import (
	"net/url"
	"testing"
)

// TestNormalPath: the spellings of /login that nginx, Apache or Tomcat
// read as /login match as /login, and what is sent upstream is the path
// with those spellings undone (params and encoded slashes kept).
func TestNormalPath(t *testing.T) {
	for _, c := range []struct{ in, sent, match string }{
		{"/login", "/login", "/login"},
		{"/", "/", "/"},
		{"/x/../login", "/login", "/login"},
		{"/./login", "/login", "/login"},
		{"//login", "/login", "/login"},
		{"/%2e/login", "/login", "/login"},
		{"/%2E%2e/", "", ""},
		{"/x/%2e%2e/login", "/login", "/login"},
		{"/x/.%2E/login", "/login", "/login"},
		{"/login;a=b", "/login;a=b", "/login"},
		{"/x/..;a=b/login", "/login", "/login"},
		{"/lo%67in", "/login", "/login"},
		{"/a%2fb", "/a%2Fb", "/a/b"},
		{"/x%2F..%2Flogin", "/x%2F..%2Flogin", "/login"},
		{"/a//b///c/", "/a/b/c/", "/a/b/c/"},
		{"/a/.", "/a/", "/a/"},
		{"/a/..", "/", "/"},
		{"/a/b/../..", "/", "/"},
		{"/..", "", ""},
		{"/../login", "", ""},
		{"/a%", "", ""},
		{"/a%g0", "", ""},
		{"/a b|c", "/a%20b%7Cc", "/a b|c"},
		{"/caf%c3%a9", "/caf%C3%A9", "/café"},
		{"/a%3Bb/c", "/a%3Bb/c", "/a/c"},
		{"/.well-known/x", "/.well-known/x", "/.well-known/x"},
		{"/a/...", "/a/...", "/a/..."},
	} {
		sent, match, err := normalPath(c.in)
		if c.sent == "" {
			if err == nil {
				t.Errorf("normalPath(%q) = %q, %q; want an error", c.in, sent, match)
			}
			continue
		}
		if err != nil || sent != c.sent || match != c.match {
			t.Errorf("normalPath(%q) = %q, %q, %v; want %q, %q", c.in, sent, match, err, c.sent, c.match)
		}
		// What is sent is what net/url keeps as it is.
		u, err := url.ParseRequestURI(sent)
		if err != nil || u.EscapedPath() != sent {
			t.Errorf("normalPath(%q) sent %q, which net/url writes as %q (%v)", c.in, sent, u.EscapedPath(), err)
		}
		// Normal form is a fixed point.
		if s2, m2, err := normalPath(sent); err != nil || s2 != sent || m2 != match {
			t.Errorf("normalPath(%q) = %q, %q, %v; not a fixed point", sent, s2, m2, err)
		}
	}
}

func FuzzNormalPath(f *testing.F) {
	for _, s := range []string{"/login", "/x/../login", "//a", "/%2e%2E/", "/a;b/..;c/d", "/a%2fb", "/caf%c3%a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		sent, match, err := normalPath(p)
		if err != nil {
			return
		}
		if sent == "" || sent[0] != '/' || match == "" || match[0] != '/' {
			t.Fatalf("normalPath(%q) = %q, %q", p, sent, match)
		}
		s2, m2, err := normalPath(sent)
		if err != nil || s2 != sent || m2 != match {
			t.Fatalf("normalPath(%q) = %q, %q; of that: %q, %q, %v", p, sent, match, s2, m2, err)
		}
		u, err := url.ParseRequestURI(sent)
		if err != nil || u.EscapedPath() != sent {
			t.Fatalf("normalPath(%q) sent %q, net/url writes %q (%v)", p, sent, u.EscapedPath(), err)
		}
	})
}
