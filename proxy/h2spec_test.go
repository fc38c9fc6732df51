package proxy

import (
	"encoding/xml"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// h2specKnown are the h2spec cases Go's HTTP/2 server (golang.org/x/net
// http2, bundled in net/http) fails, by h2spec's case id: they come from
// net/http, not from moat, and are listed so that any other failure fails
// the test.
var h2specKnown = []string{
	// Go's server reads frames up to the 1 MiB it announces in its own
	// SETTINGS, and answers; h2spec expects the 16 KiB default to hold.
	"http2/4.2 Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE",
	// h2spec expects a SETTINGS acknowledgement and sees the connection
	// closed.
	"http2/6.5.3 Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE",
	// A connection-specific field (Connection, or TE other than
	// "trailers"): Go answers the request where h2spec expects a stream or
	// connection error.
	"http2/8.1.2.2 Sends a HEADERS frame that contains the connection-specific header field",
	"http2/8.1.2.2 Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"",
}

// h2specBin finds h2spec: on PATH, or where go install puts it.
func h2specBin() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

type junitReport struct {
	Suites []struct {
		Cases []struct {
			Package   string    `xml:"package,attr"`
			ClassName string    `xml:"classname,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs h2spec's conformance cases against moat's TLS listener
// (HTTP/2 over TLS, the internal CA). A case that fails and is not in
// h2specKnown fails the test; so does a known one that passes now (the
// list must stay true).
func TestH2Spec(t *testing.T) {
	bin := h2specBin()
	if bin == "" {
		testkit.Missing(t, "h2spec is not installed (go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1); .ci/run installs it")
	}
	up := echo("up")
	defer up.Close()
	cfg := Config{
		HTTPS:  "127.0.0.1:0",
		TLS:    TLS{Mode: TLSInternal},
		Routes: []Route{{Hosts: []string{"localhost"}, Upstreams: []string{hostPort(up)}}},
	}
	p, _ := startProxy(t, cfg, nil)
	failed := h2spec(t, bin, p.Addrs()[0].String())
	// The known ones are Go's: a bare net/http server fails them too.
	bare := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	bare.EnableHTTP2 = true
	bare.Config.ErrorLog = log.New(io.Discard, "", 0)
	bare.StartTLS()
	defer bare.Close()
	goFailed := h2spec(t, bin, bare.Listener.Addr().String())
	for _, k := range h2specKnown {
		if !slices.Contains(goFailed, k) {
			t.Errorf("%q is listed as Go's, yet a bare net/http server passes it", k)
		}
	}
	for _, f := range failed {
		if !slices.Contains(h2specKnown, f) {
			t.Errorf("h2spec failed %q, not a known failure of Go's HTTP/2 server", f)
		}
	}
	for _, k := range h2specKnown {
		if !slices.Contains(failed, k) {
			t.Errorf("h2spec passes %q now: take it off h2specKnown", k)
		}
	}
}

// h2spec runs h2spec's cases against the TLS listener at addr and returns
// the ones that failed.
func h2spec(t *testing.T, bin, addr string) []string {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	var out []byte
	for i := 0; ; i++ {
		cmd := exec.Command(bin, "-t", "-k", "-h", "localhost", "-p", port, "-o", "2", "-j", report)
		out, _ = cmd.CombinedOutput()
		if _, err := os.Stat(report); err == nil || i == 20 {
			break
		}
		time.Sleep(500 * time.Millisecond) // the certificate is being issued
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("h2spec wrote no report: %v\n%s", err, out)
	}
	var r junitReport
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	var failed []string
	total := 0
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			total++
			if c.Failure != nil || c.Error != nil {
				failed = append(failed, c.Package+" "+c.ClassName)
			}
		}
	}
	t.Logf("h2spec on %s: %d cases, %d failed:\n%s", addr, total, len(failed), strings.Join(failed, "\n"))
	if total < 140 {
		t.Fatalf("h2spec ran %d cases, want its full set (145)\n%s", total, out)
	}
	return failed
}
