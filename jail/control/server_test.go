package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenModes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sub      string // the socket's directory under the temp dir; "" for the temp dir itself
		mode     os.FileMode
		wantMode os.FileMode
	}{
		{"default mode", "", 0, 0o600},
		{"group mode", "", 0o660, 0o660},
		{"creates parent 0700", "run/moat", 0, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := socketDir(t)
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(base, tc.sub)
			path := filepath.Join(dir, "moat.sock")
			ln, err := Listen(path, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.wantMode {
				t.Errorf("socket mode = %v, want socket %v", fi.Mode(), tc.wantMode)
			}
			if got := ln.Addr().String(); got != path {
				t.Errorf("Addr = %q, want %q", got, path)
			}
			// A directory Listen made is 0700, one that existed keeps its mode.
			wantDir := os.FileMode(0o755)
			if tc.sub != "" {
				wantDir = 0o700
			}
			di, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if di.Mode().Perm() != wantDir {
				t.Errorf("directory mode = %v, want %v", di.Mode().Perm(), wantDir)
			}
			// The temporary directory the socket was made in is gone.
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "moat.sock" {
				t.Errorf("directory holds %v, want only moat.sock", ents)
			}
			// The socket answers at its final path.
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dial the socket: %v", err)
			}
			c.Close()
			if err := ln.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket still there after Close (%v)", err)
			}
		})
	}
}

// staleSocket leaves a socket at path that nobody listens on, as a daemon
// killed with SIGKILL does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

func TestListenExisting(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "moat.sock")
		staleSocket(t, path)
		before, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(path, 0)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		defer ln.Close()
		after, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(before, after) {
			t.Error("stale socket not replaced")
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial new socket: %v", err)
		}
		c.Close()
	})
	t.Run("live daemon is not displaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "moat.sock")
		first, err := Listen(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		second, err := Listen(path, 0)
		if err == nil {
			second.Close()
			t.Fatal("second Listen succeeded, want an error")
		}
		if !strings.Contains(err.Error(), "another moat runs there") || !strings.Contains(err.Error(), path) {
			t.Errorf("err = %q, want it to say another moat runs at %s", err, path)
		}
		// The first daemon still answers.
		go func() {
			if c, err := first.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("first daemon's socket is gone: %v", err)
		}
		c.Close()
	})
	t.Run("regular file is left alone", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "moat.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(path, 0)
		if err == nil {
			ln.Close()
			t.Fatal("Listen over a regular file succeeded")
		}
		if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("err = %q, want it to say not a socket", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
			t.Errorf("file changed: %q, %v", b, err)
		}
	})
	t.Run("path too long", func(t *testing.T) {
		path := filepath.Join(socketDir(t), strings.Repeat("d", 100), "moat.sock")
		if _, err := Listen(path, 0); err == nil || !strings.Contains(err.Error(), "too long") {
			t.Errorf("err = %v, want path too long", err)
		}
	})
}

func TestCloseKeepsReplacedSocket(t *testing.T) {
	path := filepath.Join(socketDir(t), "moat.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Someone removed our socket and a new daemon made its own.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ln2, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("closing the old listener removed the new socket: %v", err)
	}
}

func TestClientDaemonNotRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantWhy string
	}{
		{"no socket", func(*testing.T, string) {}, "no socket there"},
		{"stale socket", staleSocket, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "moat.sock")
			tc.setup(t, path)
			_, err := NewClient(path).Status(context.Background(), "")
			if !errors.Is(err, ErrDaemonNotRunning) {
				t.Fatalf("err = %v, want ErrDaemonNotRunning", err)
			}
			want := "moat is not running (no daemon at " + path + "): " + tc.wantWhy
			if err.Error() != want {
				t.Errorf("err = %q, want %q", err, want)
			}
		})
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	svc := fakeDefault()
	svc.unbanAll = func(context.Context) (int, error) {
		close(entered)
		<-release
		return 7, nil
	}
	path := filepath.Join(socketDir(t), "moat.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewHandler(svc, nil)) }()

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := NewClient(path).UnbanAll(context.Background())
		res <- result{n, err}
	}()
	<-entered
	cancel() // shutdown starts with a request in flight
	close(release)
	if r := <-res; r.err != nil || r.n != 7 {
		t.Errorf("request in flight during shutdown = %d, %v; want 7, nil", r.n, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("Serve did not return")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned (%v)", err)
	}
	if _, err := NewClient(path).Status(context.Background(), ""); !errors.Is(err, ErrDaemonNotRunning) {
		t.Errorf("after shutdown: %v, want ErrDaemonNotRunning", err)
	}
}

func TestServerRun(t *testing.T) {
	path := filepath.Join(socketDir(t), "run", "moat.sock")
	srv := &Server{Path: path, Service: fakeDefault()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// Wait for the socket: the client's error says whether it is there yet.
	c := NewClient(path)
	for {
		_, err := c.Status(context.Background(), "")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrDaemonNotRunning) {
			t.Fatalf("Status = %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != DefaultMode {
		t.Errorf("socket = %v, %v; want mode %v", fi.Mode(), err, DefaultMode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Run returned (%v)", err)
	}
}
