package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// fakeContainer writes what Docker keeps of a container under root: its
// config.v2.json (name, labels, state) and hostconfig.json (log driver),
// with an empty json-file log. It returns the log's path.
func fakeContainer(t *testing.T, root, id, name, driver string, labels map[string]string) string {
	t.Helper()
	dir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, id+"-json.log")
	cfg := map[string]any{
		"ID": id, "Name": "/" + name, "Created": time.Now().UTC().Format(time.RFC3339Nano),
		"State":   map[string]any{"Running": true},
		"Config":  map[string]any{"Labels": labels, "Image": "nginx:1.27"},
		"LogPath": logPath,
	}
	host := map[string]any{"LogConfig": map[string]any{"Type": driver, "Config": map[string]string{}}}
	if err := os.WriteFile(logPath, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	for file, v := range map[string]any{"hostconfig.json": host, "config.v2.json": cfg} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return logPath
}

// jsonLine is one entry as Docker's json-file driver writes it.
func jsonLine(t *testing.T, text string, at time.Time) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"log": text + "\n", "stream": "stdout", "time": at.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// TestContainerLogBans: a jail names containers by name and label; a
// container created after moat started is followed within 2 s, its
// json-file lines are decoded (the failure time is Docker's when the line
// has no date), and a ban from them reaches the kernel set. A container
// with another log driver is not followed and is warned about. A removed
// container's log leaves the file list and its read position the state.
func TestContainerLogBans(t *testing.T) {
	needRoot(t)
	server, client := newNetNS(t), newNetNS(t)
	link(t, server, client)
	addr := serveTCP(t, server, "192.0.2.1:0")

	dir := t.TempDir()
	root := filepath.Join(dir, "docker")
	const idWeb = "1f0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
	const idAPI = "2a0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
	const idOld = "3b0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
	fakeContainer(t, root, idOld, "legacy", "local", map[string]string{"role": "frontend"})
	socket := filepath.Join(dir, "moat.sock")
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf(`state_dir: %s
socket: %s
firewall: {backend: nftables, table: moat}
docker: {root: %s}
jails:
  app:
    filter:
      failregex: ^login failed for \S+ from <HOST>$
    containers: [web, "label:role=frontend"]
    maxretry: 3
    findtime: 1h
    bantime: 1h
`, filepath.Join(dir, "state"), socket, root)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, server, cfg, socket)
	env := map[string]string{"MOAT_SOCKET": socket}

	testkit.WaitFor(t, 10*time.Second, "the warning about the container with the local log driver", func() bool {
		return strings.Contains(d.logs.String(), "legacy") && strings.Contains(d.logs.String(), "json-file")
	})
	// Created after the start: followed within 2 s.
	webLog := fakeContainer(t, root, idWeb, "web", "json-file", nil)
	created := time.Now()
	testkit.WaitFor(t, 2*time.Second, "moat to follow the new container's log", func() bool {
		return strings.Contains(d.logs.String(), `"following container log"`) &&
			strings.Contains(d.logs.String(), webLog)
	})
	t.Logf("new container followed %s after its files were written", time.Since(created).Round(time.Millisecond))
	// A second one, picked by its label.
	apiLog := fakeContainer(t, root, idAPI, "api", "json-file", map[string]string{"role": "frontend"})
	testkit.WaitFor(t, 5*time.Second, "moat to follow the labelled container's log", func() bool {
		return strings.Contains(d.logs.String(), apiLog)
	})

	// Two failures in web's log, one in api's: three for the jail. The
	// lines carry no date: Docker's time is the failure time.
	// One stamped 3 h ago is outside findtime (1h) and does not count.
	at := time.Now().Add(-time.Minute)
	appendFile(t, webLog, jsonLine(t, "login failed for old from 192.0.2.2", time.Now().Add(-3*time.Hour)))
	appendFile(t, webLog, jsonLine(t, "login failed for root from 192.0.2.2", at)+jsonLine(t, "GET / 200", at))
	appendFile(t, webLog, jsonLine(t, "login failed for admin from 192.0.2.2", at))
	testkit.WaitFor(t, 10*time.Second, "2 failures counted", func() bool {
		return strings.Contains(cli(t, env, "status", "app").stdout, "Total failed:\t2\n")
	})
	if !reaches(t, client, addr) {
		t.Fatal("client cannot connect before the ban")
	}
	appendFile(t, apiLog, jsonLine(t, "login failed for guest from 192.0.2.2", at))
	testkit.WaitFor(t, 10*time.Second, "192.0.2.2 banned in app", func() bool {
		bans := cliBans(t, socket)
		return len(bans) == 1 && bans[0].IP == "192.0.2.2" && bans[0].Jail == "app"
	})
	if kb := kernelBans(t, server, "moat"); len(kb) != 1 || kb[0].Prefix.String() != "192.0.2.2/32" {
		t.Fatalf("kernel bans = %+v, want 192.0.2.2/32", kb)
	}
	if canConnect(t, client, addr) {
		t.Error("banned client still connects")
	}
	st := cli(t, env, "status", "app").stdout
	if !strings.Contains(st, webLog) || !strings.Contains(st, apiLog) {
		t.Errorf("status does not list the container logs:\n%s", st)
	}

	// Removed: no longer followed.
	if err := os.RemoveAll(filepath.Join(root, "containers", idAPI)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the removed container to leave the file list", func() bool {
		return !strings.Contains(cli(t, env, "status", "app").stdout, apiLog)
	})
	// Its read position is dropped; web's, still followed, is kept.
	testkit.WaitFor(t, 5*time.Second, "the removed container's read position to be dropped", func() bool {
		return strings.Contains(d.logs.String(), `"forgot the read positions of files gone"`) &&
			strings.Contains(d.logs.String(), apiLog)
	})
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(line, "forgot the read positions") && strings.Contains(line, webLog) {
			t.Errorf("a followed container's position was dropped: %s", line)
		}
	}
}

// TestCheckContainers: moat check lists the containers each jail picks
// now, and says why one cannot be read.
func TestCheckContainers(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "docker")
	fakeContainer(t, root, "4c0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7", "web", "json-file", nil)
	fakeContainer(t, root, "5d0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7", "shop", "local", map[string]string{"role": "frontend"})
	fakeContainer(t, root, "6e0e7a9c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7", "db", "json-file", nil)
	cfg := filepath.Join(dir, "moat.yaml")
	text := fmt.Sprintf("state_dir: %s\nsocket: %s\nfirewall: {backend: none}\ndocker: {root: %s}\njails:\n  app:\n    filter: {failregex: \"^x <HOST>$\"}\n    containers: [web, \"label:role=frontend\"]\n",
		filepath.Join(dir, "state"), filepath.Join(dir, "moat.sock"), root)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, nil, "check", "--config", cfg)
	if r.code != 0 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := "  app: shop (not readable: container shop uses the local log driver"
	if !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "; web\n") || strings.Contains(r.stdout, "db") {
		t.Errorf("check output:\n%s\nwant a line starting %q and ending with web, without db", r.stdout, want)
	}
	if !strings.Contains(r.stdout, "container:web container:label:role=frontend") {
		t.Errorf("check's jail table does not show the selectors:\n%s", r.stdout)
	}
}
