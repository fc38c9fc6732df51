package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/jail/control"
)

// cmdFirewall is `moat firewall remove`: it deletes moat's nftables table,
// which the daemon leaves in the kernel when it stops (so bans hold across
// a restart), unless a daemon runs, which would make it again.
func cmdFirewall(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("firewall", flag.ContinueOnError)
	path := fs.String("config", "", "configuration naming the table, state_dir and socket (default /etc/moat/moat.yaml, else the embedded default)")
	sock := fs.String("socket", "", "the daemon's control socket (default $MOAT_SOCKET, else the configuration's)")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "remove" {
		return fmt.Errorf("%w: firewall takes one action: remove (see moat help firewall)", errUsage)
	}
	cfg, err := configs.Load(*path, configs.Options{Env: envFrom(io)})
	if err != nil {
		return fmt.Errorf("read the configuration: %w", err)
	}
	socket := *sock
	if socket == "" {
		socket = io.getenv("MOAT_SOCKET")
	}
	if socket == "" {
		socket = cfg.Socket
	}
	if why := daemonRunning(ctx, socket, cfg.StateDir); why != "" {
		return fmt.Errorf("refusing to remove table inet %s: the daemon is running (%s); stop it first (systemctl stop moat, or docker stop), or it makes the table again", cfg.Firewall.Table, why)
	}
	removed, err := nftables.RemoveTable(0, cfg.Firewall.Table)
	if err != nil {
		return err
	}
	if removed {
		fmt.Fprintf(io.stdout, "removed nftables table inet %s and every ban in it\n", cfg.Firewall.Table)
	} else {
		fmt.Fprintf(io.stdout, "no nftables table inet %s: nothing to remove\n", cfg.Firewall.Table)
	}
	return nil
}

// daemonRunning says why a daemon is taken to be running, or "": its
// control socket answers, or its state database is locked (the daemon
// holds the lock of state_dir/moat.db, bbolt's flock, while it runs, even
// when its socket is elsewhere).
func daemonRunning(ctx context.Context, socket, stateDir string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := control.NewClient(socket).Status(ctx, ""); err == nil {
		return "its control socket " + socket + " answers"
	}
	db := filepath.Join(stateDir, "moat.db")
	f, err := os.Open(db)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return "it holds the lock of " + db
		}
		return ""
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return ""
}
