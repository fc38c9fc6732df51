package main

import (
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// The fixtures under testdata/audit are host trees: clean is a host that
// follows every piece of advice, and each other fixture holds only what it
// changes from clean (copied over it). var/run/docker.sock in a fixture is
// a regular file whose text gives the mode and owner the test sets on it
// ("0660 root:docker"; names resolve through the tree's etc/group), since
// git keeps neither.

// auditHostTree builds a host tree in a temporary directory: clean with
// the named fixture over it.
func auditHostTree(t *testing.T, fixture string) string {
	t.Helper()
	root := t.TempDir()
	copyTree(t, filepath.Join("testdata", "audit", "clean"), root)
	if fixture != "clean" {
		copyTree(t, filepath.Join("testdata", "audit", fixture), root)
	}
	applySocketSpec(t, root, filepath.Join(root, "var", "run", "docker.sock"))
	return root
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", from, err)
	}
}

// applySocketSpec sets the mode and owner that the fake socket's text names.
func applySocketSpec(t *testing.T, root, sock string) {
	t.Helper()
	data, err := os.ReadFile(sock)
	if err != nil {
		t.Fatalf("fixture socket: %v", err)
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		t.Fatalf("fixture socket %s: want \"MODE USER:GROUP\", got %q", sock, data)
	}
	mode, err := strconv.ParseUint(f[0], 8, 32)
	if err != nil {
		t.Fatalf("fixture socket %s: mode %q: %v", sock, f[0], err)
	}
	user, group, _ := strings.Cut(f[1], ":")
	groupText, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	gid, ok := parseGroups(string(groupText))[group]
	if !ok {
		t.Fatalf("fixture socket %s: group %q is not in the tree's etc/group", sock, group)
	}
	if user != "root" {
		t.Fatalf("fixture socket %s: only root is supported as owner, got %q", sock, user)
	}
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root: chown of the fixture's docker.sock to root and a fixture group")
	}
	if err := os.Chown(sock, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, fs.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
}

// auditJSON runs moat audit --json with args and decodes its output.
func auditJSON(t *testing.T, args ...string) ([]finding, cliResult) {
	t.Helper()
	r := cli(t, nil, append([]string{"audit", "--json"}, args...)...)
	var raw []struct {
		ID, Severity, Subject, Message, Fix string
	}
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("moat audit --json printed %q (stderr %q): %v", r.stdout, r.stderr, err)
	}
	fs := make([]finding, len(raw))
	for i, f := range raw {
		sev := slices.Index(severityNames[:], f.Severity)
		if sev < 0 {
			t.Fatalf("finding %d: severity %q is not one of %v", i, f.Severity, severityNames)
		}
		fs[i] = finding{ID: f.ID, Severity: severity(sev), Subject: f.Subject, Message: f.Message, Fix: f.Fix}
	}
	return fs, r
}

func findingIDs(fs []finding) []string {
	var ids []string
	for _, f := range fs {
		if !slices.Contains(ids, f.ID) {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestAuditFixtures: each fixture gives exactly its finding, with its
// severity, and the exit status says whether a high finding exists.
func TestAuditFixtures(t *testing.T) {
	tests := []struct {
		fixture  string
		id       string // "" for no finding
		sev      severity
		subject  string
		contains string
	}{
		{fixture: "clean"},
		{"docker-api-tcp", "docker-api-tcp", sevHigh, "daemon.json hosts", "tcp://0.0.0.0:2375 without TLS"},
		{"docker-api-tcp-unit", "docker-api-tcp", sevHigh, "/etc/systemd/system/docker.service.d/override.conf ExecStart", "tcp://0.0.0.0:2376"},
		{"docker-socket-mode", "docker-socket-mode", sevHigh, "/var/run/docker.sock", "world-writable (0666)"},
		{"docker-socket-owner", "docker-socket-owner", sevMedium, "/var/run/docker.sock", "owned by root:users, not root:docker"},
		{"docker-socket-missing", "docker-socket-missing", sevInfo, "/run/docker/api.sock", "no Docker socket"},
		{"daemon-iptables-off", "daemon-iptables-off", sevHigh, "daemon.json iptables", "moat's bans still hold"},
		{"daemon-icc", "daemon-icc", sevMedium, "daemon.json icc", "reach each other"},
		{"daemon-userland-proxy", "daemon-userland-proxy", sevLow, "daemon.json userland-proxy", "gateway's address"},
		{"daemon-live-restore", "daemon-live-restore", sevLow, "daemon.json live-restore", "stops every container"},
		{"content-trust-not-enforced", "content-trust-not-enforced", sevInfo, "daemon.json content-trust", "DOCKER_CONTENT_TRUST is a client setting"},
		{"container-privileged", "container-privileged", sevHigh, "admin-tool", "privileged"},
		{"container-root", "container-root", sevMedium, "worker", "runs as root"},
		{"container-cap-add", "container-cap-add", sevMedium, "pinger", "adds capabilities NET_RAW"},
		{"container-cap-add-high", "container-cap-add", sevHigh, "vpn", "adds capabilities NET_ADMIN"},
		{"container-no-memory-limit", "container-no-memory-limit", sevLow, "cache", "no memory limit"},
		{"container-no-pids-limit", "container-no-pids-limit", sevLow, "queue", "no pids limit"},
		{"container-port-all-addresses", "container-port-all-addresses", sevMedium, "api", "port 80/tcp is published on all addresses (host port 8081): reachable from every network"},
		{"container-port-behind-proxy", "container-port-all-addresses", sevMedium, "app", "moat's proxy forwards to it, and clients can go around the proxy"},
		{"container-unconfined", "container-unconfined", sevMedium, "debugger", `"seccomp=unconfined"`},
		{"container-new-privileges", "container-new-privileges", sevLow, "legacy", "no-new-privileges is off"},
		{"container-rootfs-writable", "container-rootfs-writable", sevInfo, "blog", "root filesystem is writable"},
		{"container-host-network", "container-host-network", sevLow, "sniffer", "shares the host's network"},
		{"container-unreadable", "container-unreadable", sevMedium, "f526795c9539", "/var/lib/docker/containers/f526795c95399cea27c055c842c3d6ab018ed0fa4f66f701c28ab22dec28237b: config.v2.json: invalid JSON at line 1, column "},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			root := auditHostTree(t, tt.fixture)
			fs, r := auditJSON(t, "--root", root)
			wantCode := 0
			if tt.id != "" && tt.sev == sevHigh {
				wantCode = 1
			}
			if r.code != wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, wantCode, r.stderr)
			}
			if tt.id == "" {
				if len(fs) != 0 || r.stderr != "" {
					t.Fatalf("clean host: want no finding and no error, got %+v, stderr %q", fs, r.stderr)
				}
				return
			}
			if got := findingIDs(fs); !slices.Equal(got, []string{tt.id}) {
				t.Fatalf("finding ids = %q, want exactly [%s]: %+v", got, tt.id, fs)
			}
			f := fs[0]
			subject := tt.subject
			if f.Severity != tt.sev || f.Subject != subject || !strings.Contains(f.Message, tt.contains) || f.Fix == "" {
				t.Errorf("finding = %+v\nwant severity %s, subject %q, a message containing %q and a fix", f, tt.sev, subject, tt.contains)
			}
			if strings.Contains(f.Message, "\n") || strings.Contains(f.Fix, "\n") {
				t.Errorf("finding %s spans lines: %+v", f.ID, f)
			}
		})
	}
}

// TestAuditCombined: several fixtures at once give all their findings, sorted
// by severity then subject, in the table and the JSON alike.
func TestAuditCombined(t *testing.T) {
	root := auditHostTree(t, "clean")
	for _, fx := range []string{"container-privileged", "container-root", "container-no-pids-limit"} {
		copyTree(t, filepath.Join("testdata", "audit", fx), root)
	}
	write(t, filepath.Join(root, "etc", "docker", "daemon.json"), `{"userland-proxy": false, "content-trust": {"mode": "enforced"}}`)
	copyTree(t, filepath.Join("testdata", "audit", "docker-socket-mode"), root)
	applySocketSpec(t, root, filepath.Join(root, "var", "run", "docker.sock"))
	sock := "/var/run/docker.sock"

	fs, r := auditJSON(t, "--root", root)
	if r.code != 1 {
		t.Errorf("exit %d, want 1 with high findings", r.code)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.Severity.String()+" "+f.ID+" "+f.Subject)
	}
	want := []string{
		"high docker-socket-mode " + sock, // a path sorts before names
		"high container-privileged admin-tool",
		"medium daemon-icc daemon.json icc",
		"medium container-root worker",
		"low daemon-live-restore daemon.json live-restore",
		"low container-no-pids-limit queue",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	tr := cli(t, nil, "audit", "--root", root)
	if tr.code != 1 || !strings.Contains(tr.stderr, "2 high-severity finding(s)") {
		t.Errorf("table run: exit %d, stderr %q; want 1 and the count of high findings", tr.code, tr.stderr)
	}
	lines := strings.Split(strings.TrimSpace(tr.stdout), "\n")
	if len(lines) != len(want)+3 {
		t.Fatalf("table has %d lines, want header + %d rows + blank + summary:\n%s", len(lines), len(want), tr.stdout)
	}
	if h := strings.Fields(lines[0]); !slices.Equal(h, []string{"SEVERITY", "ID", "SUBJECT", "FINDING", "FIX"}) {
		t.Errorf("table header = %q", lines[0])
	}
	for i, w := range want {
		if f := strings.Fields(lines[i+1]); len(f) < 3 || strings.Join(f[:2], " ") != strings.Join(strings.Fields(w)[:2], " ") {
			t.Errorf("table row %d = %q, want it to start with %q", i, lines[i+1], w)
		}
	}
	if last := lines[len(lines)-1]; last != "6 finding(s): 2 high, 2 medium, 2 low, 0 info; 4 container(s) read" {
		t.Errorf("summary = %q", last)
	}
}

// TestAuditJSONShape: the JSON is an array of objects with exactly the five
// documented keys, [] when there is nothing to report.
func TestAuditJSONShape(t *testing.T) {
	clean := auditHostTree(t, "clean")
	r := cli(t, nil, "audit", "--json", "--root", clean)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("clean host: exit %d, stdout %q; want 0 and []", r.code, r.stdout)
	}
	root := auditHostTree(t, "container-cap-add-high")
	r = cli(t, nil, "audit", "--json", "--root", root)
	var objs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &objs); err != nil || len(objs) != 1 {
		t.Fatalf("stdout %q: %v, want one object", r.stdout, err)
	}
	var keys []string
	for k, v := range objs[0] {
		keys = append(keys, k)
		if _, ok := v.(string); !ok {
			t.Errorf("key %q holds %T, want a string", k, v)
		}
	}
	slices.Sort(keys)
	if want := []string{"fix", "id", "message", "severity", "subject"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if objs[0]["severity"] != "high" {
		t.Errorf("severity = %v, want high", objs[0]["severity"])
	}
}

// TestAuditInputs: what happens when the inputs are missing, unreadable or
// garbled, and on usage errors.
func TestAuditInputs(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(t *testing.T, root string) []string // returns extra args
		code       int
		stderr     string   // substring of stderr ("" for empty stderr)
		ids        []string // the finding ids, sorted
		wantOutput bool     // whether stdout must still be a JSON array
	}{
		{
			name: "missing daemon.json means Docker's defaults",
			prepare: func(t *testing.T, root string) []string {
				rm(t, filepath.Join(root, "etc", "docker", "daemon.json"))
				return nil
			},
			code: 0,
			ids:  []string{"content-trust-not-enforced", "daemon-icc", "daemon-live-restore", "daemon-userland-proxy"},
		},
		{
			name: "garbled daemon.json names the file and the line",
			prepare: func(t *testing.T, root string) []string {
				write(t, filepath.Join(root, "etc", "docker", "daemon.json"), "{\n  \"icc\": false,\n  \"live-restore\" true\n}\n")
				return nil
			},
			code:   1,
			stderr: "etc/docker/daemon.json: invalid JSON at line 3, column 18",
		},
		{
			name: "daemon.json with a wrong type",
			prepare: func(t *testing.T, root string) []string {
				write(t, filepath.Join(root, "etc", "docker", "daemon.json"), `{"icc": "no"}`)
				return nil
			},
			code:   1,
			stderr: `daemon.json: line 1: "icc" must be true or false, not string`,
		},
		{
			name: "unreadable daemon.json",
			prepare: func(t *testing.T, root string) []string {
				p := filepath.Join(root, "etc", "docker", "daemon.json")
				rm(t, p)
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			code:   1,
			stderr: "read daemon config: read ",
		},
		{
			name: "a garbled container is a finding, not fatal",
			prepare: func(t *testing.T, root string) []string {
				copyTree(t, filepath.Join("testdata", "audit", "container-unreadable"), root)
				copyTree(t, filepath.Join("testdata", "audit", "container-root"), root)
				return nil
			},
			code: 0,
			ids:  []string{"container-root", "container-unreadable"},
		},
		{
			name: "container without hostconfig.json",
			prepare: func(t *testing.T, root string) []string {
				copyTree(t, filepath.Join("testdata", "audit", "container-root"), root)
				matches, _ := filepath.Glob(filepath.Join(root, "var/lib/docker/containers/*/hostconfig.json"))
				rm(t, matches[0])
				return nil
			},
			code: 0,
			ids:  []string{"container-root", "container-unreadable"},
		},
		{
			name: "missing docker root",
			prepare: func(t *testing.T, root string) []string {
				return []string{"--docker-root", filepath.Join(root, "nowhere")}
			},
			code:   1,
			stderr: "nowhere does not exist (is Docker installed here?",
		},
		{
			name: "docker root without containers",
			prepare: func(t *testing.T, root string) []string {
				if err := os.RemoveAll(filepath.Join(root, "var", "lib", "docker", "containers")); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			code: 0,
		},
		{
			name: "data-root of daemon.json",
			prepare: func(t *testing.T, root string) []string {
				if err := os.Rename(filepath.Join(root, "var", "lib", "docker"), filepath.Join(root, "srv-docker")); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(root, "etc", "docker", "daemon.json"),
					`{"data-root": "/srv-docker", "icc": false, "userland-proxy": false, "live-restore": true, "content-trust": {"mode": "enforced"}}`)
				copyTree(t, filepath.Join("testdata", "audit", "container-root"), filepath.Join(root, "tmp-overlay"))
				if err := os.Rename(filepath.Join(root, "tmp-overlay", "var", "lib", "docker", "containers"), filepath.Join(root, "x")); err != nil {
					t.Fatal(err)
				}
				entries, _ := os.ReadDir(filepath.Join(root, "x"))
				if err := os.Rename(filepath.Join(root, "x", entries[0].Name()), filepath.Join(root, "srv-docker", "containers", entries[0].Name())); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			code: 0,
			ids:  []string{"container-root"},
		},
		{
			name: "bad moat config names the file",
			prepare: func(t *testing.T, root string) []string {
				p := filepath.Join(root, "moat.yaml")
				write(t, p, "proxy: [\n")
				return []string{"--config", p}
			},
			code:   1,
			stderr: "moat config: ",
		},
		{
			name:    "an argument is a usage error",
			prepare: func(t *testing.T, root string) []string { return []string{"extra"} },
			code:    2,
			stderr:  "audit takes no arguments",
		},
		{
			name:    "an unknown flag is a usage error",
			prepare: func(t *testing.T, root string) []string { return []string{"--docker-sock", "x"} },
			code:    2,
			stderr:  "flag provided but not defined: -docker-sock",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := auditHostTree(t, "clean")
			args := append([]string{"audit", "--json", "--root", root}, tt.prepare(t, root)...)
			r := cli(t, nil, args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			if tt.stderr == "" && r.stderr != "" || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.stderr)
			}
			if tt.code == 2 {
				return
			}
			var fs []finding
			if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil {
				t.Fatalf("stdout is not a JSON array even with an input problem: %q: %v", r.stdout, err)
			}
			var ids []string
			for _, f := range fs {
				ids = append(ids, f.ID)
			}
			slices.Sort(ids)
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("finding ids = %q, want %q", ids, tt.ids)
			}
		})
	}
}

// severity unmarshals from its name, so tests decode findings directly.
func (s *severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	i := slices.Index(severityNames[:], name)
	if i < 0 {
		return &json.UnsupportedValueError{Str: name}
	}
	*s = severity(i)
	return nil
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAuditAccept: --accept leaves out the findings the operator accepted,
// and they no longer count for the exit status.
func TestAuditAccept(t *testing.T) {
	root := auditHostTree(t, "container-cap-add-high")
	tests := []struct {
		name    string
		accept  []string
		code    int
		ids     []string
		stderr  string
		summary string
	}{
		{name: "none", code: 1, ids: []string{"container-cap-add"}},
		{name: "by id and subject", accept: []string{"container-cap-add:vpn"}, code: 0, summary: "0 finding(s): 0 high, 0 medium, 0 low, 0 info; 2 container(s) read; 1 accepted"},
		{name: "by id", accept: []string{"container-cap-add"}, code: 0},
		{name: "every finding of a subject", accept: []string{"*:vpn"}, code: 0},
		{name: "every finding of another subject", accept: []string{"*:web"}, code: 1, ids: []string{"container-cap-add"}, stderr: "--accept *:web matched no finding"},
		{name: "another subject", accept: []string{"container-cap-add:moat"}, code: 1, ids: []string{"container-cap-add"}, stderr: "--accept container-cap-add:moat matched no finding"},
		{name: "empty id", accept: []string{":vpn"}, code: 2, stderr: "want ID or ID:SUBJECT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"audit", "--root", root}
			for _, a := range tt.accept {
				args = append(args, "--accept", a)
			}
			r := cli(t, nil, append(args, "--json")...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.stderr)
			}
			if tt.code == 2 {
				return
			}
			var fs []finding
			if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil {
				t.Fatal(err)
			}
			if got := findingIDs(fs); !slices.Equal(got, tt.ids) {
				t.Errorf("ids = %q, want %q", got, tt.ids)
			}
			if tt.summary != "" {
				if tr := cli(t, nil, args...); !strings.Contains(tr.stdout, tt.summary) {
					t.Errorf("table output %q does not contain %q", tr.stdout, tt.summary)
				}
			}
		})
	}
}

// TestAuditExplicitPaths: every input can be named by a flag instead of
// --root, as on a host whose files are elsewhere.
func TestAuditExplicitPaths(t *testing.T) {
	tree := auditHostTree(t, "clean")
	copyTree(t, filepath.Join("testdata", "audit", "docker-api-tcp-unit"), tree)
	moved := t.TempDir()
	for from, to := range map[string]string{
		"var/lib/docker":         "data",
		"etc/docker/daemon.json": "daemon.json",
		"var/run/docker.sock":    "docker.sock",
		"etc/group":              "group",
		"etc/systemd/system":     "units-etc",
		"lib/systemd/system":     "units-lib",
	} {
		if err := os.Rename(filepath.Join(tree, from), filepath.Join(moved, to)); err != nil {
			t.Fatal(err)
		}
	}
	fs, r := auditJSON(t,
		"--docker-root", filepath.Join(moved, "data"),
		"--daemon-config", filepath.Join(moved, "daemon.json"),
		"--docker-socket", filepath.Join(moved, "docker.sock"),
		"--group-file", filepath.Join(moved, "group"),
		"--unit-dirs", filepath.Join(moved, "units-etc")+","+filepath.Join(moved, "units-lib"),
	)
	want := finding{ID: "docker-api-tcp", Severity: sevHigh, Subject: filepath.Join(moved, "units-etc", "docker.service.d", "override.conf") + " ExecStart"}
	if r.code != 1 || len(fs) != 1 || fs[0].ID != want.ID || fs[0].Subject != want.Subject {
		t.Errorf("exit %d, findings %+v (stderr %q); want exit 1 and only %+v", r.code, fs, r.stderr, want)
	}
}

// TestAuditRealSocket: the socket check on a real unix socket made here.
func TestAuditRealSocket(t *testing.T) {
	root := auditHostTree(t, "clean")
	dir, err := os.MkdirTemp("", "moat-audit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tests := []struct {
		name string
		mode fs.FileMode
		ids  []string
	}{
		{"0660", 0o660, nil},
		{"0600 is stricter", 0o600, nil},
		{"0666", 0o666, []string{"docker-socket-mode"}},
		{"0664", 0o664, []string{"docker-socket-mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chown(sock, 0, 998); err != nil {
				testkit.Missing(t, "needs root: chown the test socket: %v", err)
			}
			if err := os.Chmod(sock, tt.mode); err != nil {
				t.Fatal(err)
			}
			fs, _ := auditJSON(t, "--root", root, "--docker-socket", sock)
			if got := findingIDs(fs); !slices.Equal(got, tt.ids) {
				t.Errorf("ids = %q, want %q", got, tt.ids)
			}
		})
	}
}

func TestSocketFindings(t *testing.T) {
	groups := map[string]int{"root": 0, "docker": 998, "users": 100}
	type want struct {
		id  string
		sev severity
	}
	tests := []struct {
		name    string
		perm    fs.FileMode
		uid     int
		gid     int
		setting string
		groups  map[string]int
		want    []want
	}{
		{name: "dockerd's own", perm: 0o660, gid: 998, groups: groups},
		{name: "stricter mode", perm: 0o600, gid: 998, groups: groups},
		{name: "world-writable", perm: 0o666, gid: 998, groups: groups, want: []want{{"docker-socket-mode", sevHigh}}},
		{name: "other-writable only", perm: 0o602, gid: 998, groups: groups, want: []want{{"docker-socket-mode", sevHigh}}},
		{name: "world-readable", perm: 0o664, gid: 998, groups: groups, want: []want{{"docker-socket-mode", sevMedium}}},
		{name: "owner not root", perm: 0o660, uid: 1000, gid: 998, groups: groups, want: []want{{"docker-socket-owner", sevMedium}}},
		{name: "another group", perm: 0o660, gid: 100, groups: groups, want: []want{{"docker-socket-owner", sevMedium}}},
		{name: "no docker group: root group expected", perm: 0o660, gid: 0, groups: map[string]int{"root": 0}},
		{name: "no docker group, gid 998", perm: 0o660, gid: 998, groups: map[string]int{"root": 0}, want: []want{{"docker-socket-owner", sevMedium}}},
		{name: "daemon.json group by name", perm: 0o660, gid: 100, setting: "users", groups: groups},
		{name: "daemon.json group by number", perm: 0o660, gid: 1234, setting: "1234", groups: groups},
		{name: "both wrong", perm: 0o666, uid: 1000, gid: 100, groups: groups, want: []want{{"docker-socket-mode", sevHigh}, {"docker-socket-owner", sevMedium}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []want
			for _, f := range socketFindings("/var/run/docker.sock", tt.perm, tt.uid, tt.gid, tt.setting, tt.groups) {
				got = append(got, want{f.ID, f.Severity})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("socketFindings(%04o, %d:%d) = %v, want %v", tt.perm, tt.uid, tt.gid, got, tt.want)
			}
		})
	}
}

func TestAPIFindings(t *testing.T) {
	yes := true
	tests := []struct {
		name     string
		dc       daemonConfig
		exec     string
		sevs     []severity
		contains string
	}{
		{name: "unix and fd only", dc: daemonConfig{Hosts: []string{"unix:///var/run/docker.sock", "fd://"}}, exec: "/usr/bin/dockerd -H fd:// -H unix:///run/d.sock"},
		{name: "daemon.json tcp", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2375"}}, sevs: []severity{sevHigh}, contains: "without TLS"},
		{name: "daemon.json bare host:port is tcp", dc: daemonConfig{Hosts: []string{"127.0.0.1:2375"}}, sevs: []severity{sevHigh}},
		{name: "daemon.json tls without verify", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2376"}, TLS: &yes}, sevs: []severity{sevHigh}, contains: "no client-certificate check"},
		{name: "daemon.json tlsverify", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2376"}, TLSVerify: &yes}, sevs: []severity{sevMedium}, contains: "client-certificate checks"},
		{name: "-H tcp", exec: "/usr/bin/dockerd -H fd:// -H tcp://0.0.0.0:2375", sevs: []severity{sevHigh}},
		{name: "-H=tcp", exec: "/usr/bin/dockerd -H=tcp://0.0.0.0:2375", sevs: []severity{sevHigh}},
		{name: "-Htcp", exec: "/usr/bin/dockerd -Htcp://0.0.0.0:2375", sevs: []severity{sevHigh}},
		{name: "--host tcp", exec: "/usr/bin/dockerd --host tcp://0.0.0.0:2375", sevs: []severity{sevHigh}},
		{name: "--host=tcp", exec: "/usr/bin/dockerd --host=tcp://[::]:2375", sevs: []severity{sevHigh}},
		{name: "unit --tlsverify", exec: "/usr/bin/dockerd --tlsverify --tlscacert=/etc/docker/ca.pem -H tcp://0.0.0.0:2376", sevs: []severity{sevMedium}},
		{name: "unit --tlsverify=false", exec: "/usr/bin/dockerd --tlsverify=false -H tcp://0.0.0.0:2376", sevs: []severity{sevHigh}},
		{name: "quoted", exec: `/usr/bin/dockerd "-H" 'tcp://0.0.0.0:2375'`, sevs: []severity{sevHigh}},
		{name: "both places", dc: daemonConfig{Hosts: []string{"tcp://127.0.0.1:2375"}}, exec: "-/usr/bin/dockerd -H tcp://0.0.0.0:2375", sevs: []severity{sevHigh, sevHigh}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := unitExec{file: "docker.service", args: splitCommand(tt.exec)}
			var got []severity
			for _, f := range apiFindings(tt.dc, ex) {
				if f.ID != "docker-api-tcp" || !strings.Contains(f.Message, tt.contains) {
					t.Errorf("finding %+v: want id docker-api-tcp and %q in the message", f, tt.contains)
				}
				got = append(got, f.Severity)
			}
			if !slices.Equal(got, tt.sevs) {
				t.Errorf("severities = %v, want %v", got, tt.sevs)
			}
		})
	}
}

func TestReadDockerUnit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // relative to a temp dir holding etc/ and lib/
		file  string            // the file the effective ExecStart comes from
		args  []string
	}{
		{
			name:  "no unit",
			files: map[string]string{},
		},
		{
			name:  "packaged unit with a continuation line",
			files: map[string]string{"lib/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd:// \\\n  --containerd=/run/containerd/containerd.sock\n"},
			file:  "lib/docker.service",
			args:  []string{"/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"},
		},
		{
			name: "/etc hides /lib",
			files: map[string]string{
				"lib/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"etc/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2375\n",
			},
			file: "etc/docker.service",
			args: []string{"/usr/bin/dockerd", "-H", "tcp://0.0.0.0:2375"},
		},
		{
			name: "a drop-in resets and replaces",
			files: map[string]string{
				"lib/docker.service":             "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"etc/docker.service.d/10-a.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H unix:///run/a.sock\n",
			},
			file: "etc/docker.service.d/10-a.conf",
			args: []string{"/usr/bin/dockerd", "-H", "unix:///run/a.sock"},
		},
		{
			name: "drop-ins apply in name order; /etc's hides /lib's of the same name",
			files: map[string]string{
				"lib/docker.service":             "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
				"lib/docker.service.d/20-b.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:1\n",
				"etc/docker.service.d/20-b.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2\n",
				"lib/docker.service.d/10-a.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:3\n",
			},
			file: "etc/docker.service.d/20-b.conf",
			args: []string{"/usr/bin/dockerd", "-H", "tcp://0.0.0.0:2"},
		},
		{
			name: "a drop-in that only resets leaves none",
			files: map[string]string{
				"lib/docker.service":             "[Service]\nExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2375\n",
				"etc/docker.service.d/90-z.conf": "[Service]\nExecStart=\n",
			},
		},
		{
			name: "ExecStart outside [Service] and comments are ignored",
			files: map[string]string{
				"lib/docker.service": "[Unit]\nExecStart=/bin/false -H tcp://x:1\n[Service]\n# ExecStart=/usr/bin/dockerd -H tcp://0.0.0.0:2375\nExecStart=/usr/bin/dockerd\n",
			},
			file: "lib/docker.service",
			args: []string{"/usr/bin/dockerd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, text := range tt.files {
				write(t, filepath.Join(dir, p), text)
			}
			got, err := readDockerUnit([]string{filepath.Join(dir, "etc"), filepath.Join(dir, "lib")})
			if err != nil {
				t.Fatal(err)
			}
			wantFile := ""
			if tt.file != "" {
				wantFile = filepath.Join(dir, tt.file)
			}
			if got.file != wantFile || !slices.Equal(got.args, tt.args) {
				t.Errorf("readDockerUnit = %s %q, want %s %q", got.file, got.args, wantFile, tt.args)
			}
		})
	}
}

func TestContainerFindings(t *testing.T) {
	base := func() container {
		var c container
		c.ID = "0123456789abcdef0123"
		c.Cfg.Name = "/web"
		c.Cfg.State.Running = true
		c.Cfg.Config.User = "101"
		c.Host.Memory = 1 << 28
		limit := int64(100)
		c.Host.PidsLimit = &limit
		c.Host.ReadonlyRootfs = true
		c.Host.SecurityOpt = []string{"no-new-privileges"}
		c.Host.NetworkMode = "bridge"
		return c
	}
	bind := func(ip, port string) map[string][]portBinding {
		return map[string][]portBinding{"80/tcp": {{HostIP: ip, HostPort: port}}}
	}
	type want struct {
		id  string
		sev severity
	}
	tests := []struct {
		name     string
		change   func(c *container)
		dc       daemonConfig
		ups      []proxyTarget
		want     []want
		subject  string
		contains string
	}{
		{name: "hardened", change: func(c *container) {}},
		{name: "user root", change: func(c *container) { c.Cfg.Config.User = "root" }, want: []want{{"container-root", sevMedium}}},
		{name: "user 0:0", change: func(c *container) { c.Cfg.Config.User = "0:0" }, want: []want{{"container-root", sevMedium}}},
		{name: "user empty", change: func(c *container) { c.Cfg.Config.User = "" }, want: []want{{"container-root", sevMedium}}},
		{name: "user 1000:0 is not root", change: func(c *container) { c.Cfg.Config.User = "1000:0" }},
		{name: "root under userns-remap", change: func(c *container) { c.Cfg.Config.User = "" }, dc: daemonConfig{UsernsRemap: "default"},
			want: []want{{"container-root", sevLow}}, contains: "userns-remap"},
		{name: "lowercase cap", change: func(c *container) { c.Host.CapAdd = []string{"sys_admin"} }, want: []want{{"container-cap-add", sevHigh}}, contains: "SYS_ADMIN"},
		{name: "cap ALL", change: func(c *container) { c.Host.CapAdd = []string{"ALL"} }, want: []want{{"container-cap-add", sevHigh}}},
		{name: "harmless caps", change: func(c *container) { c.Host.CapAdd = []string{"CAP_CHOWN", "NET_BIND_SERVICE"} },
			want: []want{{"container-cap-add", sevMedium}}, contains: "CHOWN, NET_BIND_SERVICE"},
		{name: "pids limit -1", change: func(c *container) { v := int64(-1); c.Host.PidsLimit = &v }, want: []want{{"container-no-pids-limit", sevLow}}},
		{name: "pids limit 0", change: func(c *container) { v := int64(0); c.Host.PidsLimit = &v }, want: []want{{"container-no-pids-limit", sevLow}}},
		{name: "no-new-privileges=false", change: func(c *container) { c.Host.SecurityOpt = []string{"no-new-privileges=false"} }, want: []want{{"container-new-privileges", sevLow}}},
		{name: "no-new-privileges from the daemon", change: func(c *container) { c.Host.SecurityOpt = nil }, dc: daemonConfig{NoNewPrivileges: true}},
		{name: "apparmor:unconfined", change: func(c *container) { c.Host.SecurityOpt = append(c.Host.SecurityOpt, "apparmor:unconfined") }, want: []want{{"container-unconfined", sevMedium}}},
		{name: "stopped", change: func(c *container) { c.Cfg.State.Running = false; c.Host.Privileged = true }, want: []want{{"container-privileged", sevHigh}}, subject: "web (stopped)"},
		{name: "no name", change: func(c *container) { c.Cfg.Name = ""; c.Host.Memory = 0 }, want: []want{{"container-no-memory-limit", sevLow}}, subject: "0123456789ab"},
		{name: "loopback binding", change: func(c *container) { c.Host.PortBindings = bind("127.0.0.1", "8080") }},
		{name: "empty HostIp with daemon ip loopback", change: func(c *container) { c.Host.PortBindings = bind("", "8080") }, dc: daemonConfig{IP: "127.0.0.1"}},
		{name: "empty HostIp", change: func(c *container) { c.Host.PortBindings = bind("", "8080") }, want: []want{{"container-port-all-addresses", sevMedium}}, contains: "reachable from every network"},
		{name: "daemon ip 0.0.0.0", change: func(c *container) { c.Host.PortBindings = bind("", "8080") }, dc: daemonConfig{IP: "0.0.0.0"}, want: []want{{"container-port-all-addresses", sevMedium}}},
		{name: "[::]", change: func(c *container) { c.Host.PortBindings = bind("[::]", "8080") }, want: []want{{"container-port-all-addresses", sevMedium}}},
		{name: "documentation address binding", change: func(c *container) { c.Host.PortBindings = bind("192.0.2.10", "8080") }},
		{name: "proxy fronts the host port", change: func(c *container) { c.Host.PortBindings = bind("0.0.0.0", "8080") },
			ups: []proxyTarget{{"localhost", 8080}}, want: []want{{"container-port-all-addresses", sevMedium}}, contains: "go around the proxy"},
		{name: "proxy fronts the container address", change: func(c *container) {
			c.Host.PortBindings = bind("0.0.0.0", "8080")
			c.Cfg.NetworkSettings.Networks = map[string]struct{ IPAddress, GlobalIPv6Address string }{"bridge": {IPAddress: "172.17.0.5"}}
		}, ups: []proxyTarget{{"172.17.0.5", 80}}, want: []want{{"container-port-all-addresses", sevMedium}}, contains: "go around the proxy"},
		{name: "proxy elsewhere", change: func(c *container) { c.Host.PortBindings = bind("0.0.0.0", "9000") },
			ups: []proxyTarget{{"127.0.0.1", 8080}}, want: []want{{"container-port-all-addresses", sevMedium}}, contains: "not behind moat's proxy"},
		{name: "-P publishes exposed ports without a binding", change: func(c *container) {
			c.Cfg.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}, "443/tcp": {}}
			c.Host.PortBindings = bind("127.0.0.1", "8080")
			c.Host.PublishAllPorts = true
		}, want: []want{{"container-port-all-addresses", sevMedium}}, contains: "port 443/tcp is published on all addresses (host port chosen by Docker)"},
		{name: "-P with daemon ip loopback", change: func(c *container) {
			c.Cfg.Config.ExposedPorts = map[string]struct{}{"443/tcp": {}}
			c.Host.PublishAllPorts = true
		}, dc: daemonConfig{IP: "127.0.0.1"}},
		{name: "host network ignores bindings", change: func(c *container) { c.Host.NetworkMode = "host"; c.Host.PortBindings = bind("", "8080") },
			want: []want{{"container-host-network", sevLow}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			fs := containerFindings(c, tt.dc, tt.ups)
			var got []want
			for _, f := range fs {
				got = append(got, want{f.ID, f.Severity})
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("findings = %v, want %v (%+v)", got, tt.want, fs)
			}
			for _, f := range fs {
				if tt.subject != "" && f.Subject != tt.subject {
					t.Errorf("subject = %q, want %q", f.Subject, tt.subject)
				}
				if !strings.Contains(f.Message, tt.contains) {
					t.Errorf("message %q does not contain %q", f.Message, tt.contains)
				}
			}
		})
	}
}

func TestDaemonFindings(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name string
		dc   daemonConfig
		ids  []string
	}{
		{name: "defaults", dc: daemonConfig{}, ids: []string{"daemon-icc", "daemon-userland-proxy", "daemon-live-restore"}},
		{name: "hardened", dc: daemonConfig{ICC: &no, UserlandProxy: &no, LiveRestore: &yes}},
		{name: "iptables explicitly on", dc: daemonConfig{ICC: &no, UserlandProxy: &no, LiveRestore: &yes, IPTables: &yes}},
		{name: "everything off", dc: daemonConfig{ICC: &yes, UserlandProxy: &yes, LiveRestore: &no, IPTables: &no},
			ids: []string{"daemon-iptables-off", "daemon-icc", "daemon-userland-proxy", "daemon-live-restore"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ids []string
			for _, f := range daemonFindings(tt.dc) {
				ids = append(ids, f.ID)
			}
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("ids = %q, want %q", ids, tt.ids)
			}
		})
	}
}

func TestContentTrustFindings(t *testing.T) {
	parse := func(s string) daemonConfig {
		dc, err := parseDaemonConfig([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return dc
	}
	tests := []struct {
		name     string
		json     string
		want     bool
		contains string
	}{
		{name: "nothing", json: `{}`, want: true, contains: "client setting"},
		{name: "MCR enforced", json: `{"content-trust": {"mode": "enforced"}}`},
		{name: "MCR permissive", json: `{"content-trust": {"mode": "permissive"}}`, want: true},
		{name: "authorization plugin", json: `{"authorization-plugins": ["opa-docker-authz"]}`, want: true, contains: "opa-docker-authz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := contentTrustFindings(parse(tt.json))
			if got := len(fs) == 1; got != tt.want {
				t.Fatalf("finding present = %v, want %v", got, tt.want)
			}
			if tt.want && (fs[0].Severity != sevInfo || !strings.Contains(fs[0].Message, tt.contains)) {
				t.Errorf("finding = %+v, want info containing %q", fs[0], tt.contains)
			}
		})
	}
}

func TestParseDaemonConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  string
	}{
		{name: "empty file", in: ""},
		{name: "BOM", in: "\xef\xbb\xbf{\"icc\": false}"},
		{name: "unknown keys", in: `{"log-driver": "local", "features": {"buildkit": true}}`},
		{name: "truncated", in: "{\"icc\": false,\n", err: "invalid JSON"},
		{name: "comma", in: "{\"icc\": false,}\n", err: "line 1, column 15"},
		{name: "hosts as string", in: `{"hosts": "tcp://0.0.0.0:2375"}`, err: `line 1: "hosts" must be a list of strings, not string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDaemonConfig([]byte(tt.in))
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("parseDaemonConfig(%q) = %v, want error containing %q", tt.in, err, tt.err)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "/usr/bin/dockerd -H fd://", []string{"/usr/bin/dockerd", "-H", "fd://"}},
		{"prefix", "-/usr/bin/dockerd", []string{"/usr/bin/dockerd"}},
		{"tabs and runs of spaces", "a \t  b", []string{"a", "b"}},
		{"double quotes", `a "b c" d`, []string{"a", "b c", "d"}},
		{"single quotes", `a 'b "c"'`, []string{"a", `b "c"`}},
		{"escape", `a b\ c`, []string{"a", "b c"}},
		{"empty quotes", `a ""`, []string{"a", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitCommand(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("splitCommand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseContainer: no container files, however broken, make the parser
// or the checks panic, and a container that parses is judged.
func FuzzParseContainer(f *testing.F) {
	dirs, _ := filepath.Glob(filepath.Join("testdata", "audit", "*", "var", "lib", "docker", "containers", "*"))
	for _, d := range dirs {
		cfg, _ := os.ReadFile(filepath.Join(d, "config.v2.json"))
		host, _ := os.ReadFile(filepath.Join(d, "hostconfig.json"))
		f.Add(cfg, host)
	}
	f.Add([]byte(`{"Name":"/x","Config":{"User":"0"}}`), []byte(`{"PortBindings":{"53/udp":[{"HostIp":"::","HostPort":""}]},"PidsLimit":null,"CapAdd":["all"]}`))
	f.Add([]byte(`null`), []byte(`null`))
	f.Fuzz(func(t *testing.T, cfg, host []byte) {
		c, err := parseContainer("0123456789abcdef", cfg, host)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config.v2.json: ") && !strings.HasPrefix(err.Error(), "hostconfig.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		for _, ups := range [][]proxyTarget{nil, {{"127.0.0.1", 8080}}} {
			for _, f := range containerFindings(c, daemonConfig{}, ups) {
				if f.ID == "" || f.Subject == "" || f.Message == "" || f.Fix == "" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
		}
	})
}
