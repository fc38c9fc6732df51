package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Server timeouts and limits. The CLI sends one small request per
// connection; anything slower than this is not the CLI.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
	shutdownTimeout   = 5 * time.Second
	// staleDialTimeout bounds the probe of an existing socket.
	staleDialTimeout = time.Second
	// maxSocketPath is sun_path's size on Linux less the final NUL; the
	// BSDs allow 103.
	maxSocketPath = 107
)

// DefaultMode is the socket's mode when Listen is given 0.
const DefaultMode os.FileMode = 0o600

// Server is the control API as one long-lived part of the daemon.
type Server struct {
	// Path is the socket's path, such as /run/moat/moat.sock.
	Path string
	// Mode is the socket's mode (0: DefaultMode).
	Mode    os.FileMode
	Service Service
	Logger  *slog.Logger
}

// Run listens on s.Path and serves the control API until ctx is done, then
// shuts down (bounded) and removes the socket. It returns nil after a clean
// shutdown.
func (s *Server) Run(ctx context.Context) error {
	ln, err := Listen(s.Path, s.Mode)
	if err != nil {
		return err
	}
	return Serve(ctx, ln, NewHandler(s.Service, s.Logger))
}

// Listen creates the control socket at path with the given mode (0:
// DefaultMode) and listens on it.
//
// The parent directory is created with mode 0700 if it is missing (an
// existing one is left as it is). An existing socket at path is removed only
// if nobody answers on it (a daemon that died without cleaning up); if a
// daemon answers, Listen fails saying another moat runs there. Anything that
// is not a socket is never removed.
//
// No window where the socket is reachable with a wider mode: a socket is
// created with mode 0777 &^ umask, and the umask is process-wide (changing it
// would race with every other goroutine creating files). So the socket is
// bound inside a fresh 0700 directory next to path, where nobody else can
// reach it (connect needs search permission on every directory of the path),
// chmodded to mode there, and only then hard-linked to path. link(2) fails if
// path exists, so two daemons starting at once cannot both win (a rename would
// silently replace the other's socket). The temporary name and directory are
// removed before Listen returns; connections reach the same socket through
// path.
//
// Closing the returned listener removes the socket at path, if it is still
// the one Listen made.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("listen on control socket: no path")
	}
	if mode == 0 {
		mode = DefaultMode
	}
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	// The temporary socket is dir + "/.mNNNNNNNNNN/s", 16 bytes longer at most.
	if len(path) > maxSocketPath || len(dir)+16 > maxSocketPath {
		return nil, fmt.Errorf("listen on control socket %s: path too long for a unix socket (at most %d bytes, and the directory at most %d)", path, maxSocketPath, maxSocketPath-16)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp(dir, ".m")
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	// The socket's name changes below: removal is ours to do.
	ul.SetUnlinkOnClose(false)
	fail := func(op string, err error) (net.Listener, error) {
		ul.Close()
		return nil, fmt.Errorf("%s control socket %s: %w", op, path, err)
	}
	if err := os.Chmod(tmpSock, mode); err != nil {
		return fail("chmod", err)
	}
	if err := os.Link(tmpSock, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail("listen on", errors.New("another process created it meanwhile (is another moat starting?)"))
		}
		return fail("link", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		os.Remove(path)
		return fail("stat", err)
	}
	return &socketListener{UnixListener: ul, path: path, fi: fi}, nil
}

// removeStale removes the socket at path if nobody answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check control socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("listen on control socket %s: it exists and is not a socket (mode %s); not removing it", path, fi.Mode())
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen on control socket %s: another moat runs there (it answered on the socket)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("check control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

// socketListener is the listener Listen returns: Addr is the socket's final
// path, and Close removes it.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *socketListener) Addr() net.Addr {
	return &net.UnixAddr{Name: l.path, Net: "unix"}
}

// Close stops listening and removes the socket, unless something else has
// replaced it at path since.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if cur, serr := os.Lstat(l.path); serr == nil && os.SameFile(cur, l.fi) {
			if rerr := os.Remove(l.path); rerr != nil && err == nil {
				err = fmt.Errorf("remove control socket: %w", rerr)
			}
		}
	})
	return err
}

// Serve serves h on ln until ctx is done, then shuts down: it stops
// accepting, waits up to 5 s for requests in flight (then closes what is
// left), and closes ln, which removes the socket when ln came from Listen
// (a plain *net.UnixListener unlinks its socket on close too).
//
// Each connection's peer credentials are recorded for the handler; header
// and body sizes and read/write times are bounded. Serve returns nil after a
// clean shutdown and an error if serving failed or the shutdown had to cut
// connections.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(h, maxBody),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       withPeer,
	}
	if hh, ok := h.(*handler); ok {
		srv.ErrorLog = slog.NewLogLogger(hh.logger.Handler(), slog.LevelWarn)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		ln.Close()
		return fmt.Errorf("serve control socket: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("shut down control socket: %w (connections cut)", err)
	}
	<-errc
	ln.Close()
	return err
}
