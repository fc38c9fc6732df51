package control

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequest sends arbitrary requests (method, path and query, body) to the
// handler over the fake service: it must never panic, never answer 500 (the
// fake fails only with the typed errors of package jail), and always answer
// JSON.
func FuzzRequest(f *testing.F) {
	for _, tc := range requestCases {
		f.Add(tc.method, tc.target, []byte(tc.body))
	}
	h := NewHandler(fakeDefault(), nil)
	ctx := context.WithValue(context.Background(), peerKey{}, peer{uid: 0, pid: 1, checked: true})
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		path, query, _ := strings.Cut(target, "?")
		req := (&http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     http.Header{},
			Body:       http.NoBody,
			Host:       "moat",
		}).WithContext(ctx)
		if len(body) > 0 {
			req.Body = readCloser{strings.NewReader(string(body))}
			req.ContentLength = int64(len(body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %q %q = 500 %s", method, target, body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q %q = %d with a body that is not JSON: %q", method, target, body, rec.Code, rec.Body)
		}
		if rec.Code/100 != 2 {
			var e errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %q %q = %d without an error message: %q", method, target, body, rec.Code, rec.Body)
			}
		}
	})
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
