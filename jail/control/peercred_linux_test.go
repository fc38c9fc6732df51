package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moatproj/moat/internal/testkit"
)

// nobody is the uid the tests connect as.
const nobody = 65534

// dialAs connects to the socket at path with the effective uid euid, on one
// OS thread: Linux credentials are per thread, and SO_PEERCRED records the
// connecting thread's euid. The thread is never unlocked, so it ends with the
// goroutine and its credentials cannot leak to other goroutines.
func dialAs(path string, euid int) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		const keep = ^uintptr(0) // -1: leave this id as it is
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(euid), keep); e != 0 {
			ch <- result{nil, e}
			return
		}
		c, err := net.Dial("unix", path)
		unix.RawSyscall(unix.SYS_SETRESUID, keep, 0, keep)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestPeerAnotherUser connects as another user: the socket's mode keeps it
// out, and when the mode lets it in, SO_PEERCRED still does.
func TestPeerAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root: switches a thread to uid 65534 to connect as another user")
	}
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		wantErr string
		// wantStatus is the daemon's answer, 0 when the connection is refused.
		wantStatus int
	}{
		{"default mode refuses the connection", 0, "permission denied", 0},
		{"world-writable socket, refused by peer credentials", 0o666, "uid 65534 may not use the control socket", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := socketDir(t)
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			called := false
			svc := fakeDefault()
			svc.unbanAll = func(context.Context) (int, error) { called = true; return 0, nil }
			logger, logs := newLogger()
			path, _ := serveMode(t, NewHandler(svc, logger), dir, tc.mode)
			c := &Client{Socket: path, HTTP: &http.Client{Transport: &http.Transport{
				DialContext: func(context.Context, string, string) (net.Conn, error) { return dialAs(path, nobody) },
			}}}
			_, err := c.UnbanAll(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			var ae *APIError
			if errors.As(err, &ae) != (tc.wantStatus != 0) || (ae != nil && ae.Status != tc.wantStatus) {
				t.Errorf("err = %#v, want daemon status %d", err, tc.wantStatus)
			}
			if called {
				t.Error("the service was called for another user")
			}
			if tc.wantStatus != 0 && !strings.Contains(logs.String(), "uid=65534") {
				t.Errorf("refusal not logged with the uid; log:\n%s", logs)
			}
		})
	}
}
