package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// daemon is the `moat run` process, started in the namespace with
// `ip netns exec` (which execs moat in place: the pid is moat's).
type daemon struct {
	s      *soak
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	// expect is set before the soak itself ends the process.
	expect atomic.Bool
}

func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *daemon) start() error {
	s := d.s
	f, err := os.OpenFile(s.daemonLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts++
	fmt.Fprintf(f, "{\"time\":%q,\"level\":\"SOAK\",\"msg\":\"soak: starting the daemon (start %d)\"}\n",
		time.Now().UTC().Format(time.RFC3339Nano), d.starts)
	cmd := exec.Command("ip", "netns", "exec", s.ns, s.moat, "run", "--config", s.cfgPath)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a ^C to the script reaches the soak, which
	// stops the daemon itself (and soak.sh's trap kills what is left).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Debug: the nftables backend says at that level why it retried a
	// transaction, which is the evidence a lapse needs.
	cmd.Env = append(os.Environ(), "MOAT_SOCKET="+s.sock, "MOAT_LOG_LEVEL=debug")
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	d.done = make(chan struct{})
	d.expect.Store(false)
	done := d.done
	_ = os.WriteFile(filepath.Join(s.dir, "daemon.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	go func() {
		err := cmd.Wait()
		if !d.expect.Load() {
			s.fatal("the daemon (pid %d) exited by itself: %v", cmd.Process.Pid, err)
		}
		close(done)
	}()
	return nil
}

// waitReady polls `moat bans --json` until the daemon answers.
func (d *daemon) waitReady(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	var last error
	for time.Since(t0) < timeout {
		if d.s.ctx.Err() != nil {
			return 0, d.s.ctx.Err()
		}
		out, errOut, err := d.s.cli("bans", "--json")
		if err == nil && strings.HasPrefix(strings.TrimSpace(out), "[") {
			return time.Since(t0), nil
		}
		last = fmt.Errorf("%v: %s", err, strings.TrimSpace(errOut))
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("%w within %s: %v", errNotReady, timeout, last)
}

func (d *daemon) signal(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return fmt.Errorf("no daemon")
	}
	return d.cmd.Process.Signal(sig)
}

// kill9 kills the daemon with SIGKILL and waits for it to be gone.
func (d *daemon) kill9() error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("no daemon")
	}
	d.expect.Store(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pid %d still there 10s after SIGKILL", cmd.Process.Pid)
	}
}

// stop ends the daemon with SIGTERM (SIGKILL after 10 s).
func (d *daemon) stop() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	d.expect.Store(true)
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// cli runs `moat SUBCOMMAND --socket SOCK ARGS...` and returns its output;
// it is cut short when the run is cancelled.
func (s *soak) cli(sub string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
	defer cancel()
	full := append([]string{sub, "--socket", s.sock}, args...)
	cmd := exec.CommandContext(ctx, s.moat, full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// nftCmd runs nft in the namespace and returns its combined output.
func nftCmd(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// nftOut runs nft in the namespace and returns stdout and stderr apart.
func nftOut(ns string, args ...string) (string, string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}
