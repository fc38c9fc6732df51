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

	"github.com/moatproj/moat/audit"
	"github.com/moatproj/moat/internal/testkit"
)

// The tests here drive moat audit, the command: its flags, its output and
// its exit status; the audit's checks are tested in package audit.
//
// The fixtures, the audit package's testdata, are host trees: clean is a
// host that follows every piece of advice, and each other fixture holds only
// what it changes from clean (copied over it). var/run/docker.sock in a
// fixture is a regular file whose text gives the mode and owner the test
// sets on it ("0660 root:docker"; names resolve through the tree's
// etc/group), since git keeps neither.

// auditFixtures is where the host trees are.
var auditFixtures = filepath.Join("..", "..", "audit", "testdata")

// auditHostTree builds a host tree in a temporary directory: clean with
// the named fixture over it.
func auditHostTree(t *testing.T, fixture string) string {
	t.Helper()
	root := t.TempDir()
	copyTree(t, filepath.Join(auditFixtures, "clean"), root)
	if fixture != "clean" {
		copyTree(t, filepath.Join(auditFixtures, fixture), root)
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
	gid, ok := -1, false
	for line := range strings.SplitSeq(string(groupText), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == group {
			gid, err = strconv.Atoi(f[2])
			ok = err == nil
		}
	}
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
func auditJSON(t *testing.T, args ...string) ([]audit.Finding, cliResult) {
	t.Helper()
	r := cli(t, nil, append([]string{"audit", "--json"}, args...)...)
	var fs []audit.Finding
	if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil {
		t.Fatalf("moat audit --json printed %q (stderr %q): %v", r.stdout, r.stderr, err)
	}
	return fs, r
}

func findingIDs(fs []audit.Finding) []string {
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
		sev      audit.Severity
		subject  string
		contains string
	}{
		{fixture: "clean"},
		{"docker-api-tcp", "docker-api-tcp", audit.High, "daemon.json hosts", "tcp://0.0.0.0:2375 without TLS"},
		{"docker-api-tcp-unit", "docker-api-tcp", audit.High, "/etc/systemd/system/docker.service.d/override.conf ExecStart", "tcp://0.0.0.0:2376"},
		{"docker-socket-mode", "docker-socket-mode", audit.High, "/var/run/docker.sock", "world-writable (0666)"},
		{"docker-socket-owner", "docker-socket-owner", audit.Medium, "/var/run/docker.sock", "owned by root:users, not root:docker"},
		{"docker-socket-missing", "docker-socket-missing", audit.Info, "/run/docker/api.sock", "no Docker socket"},
		{"daemon-iptables-off", "daemon-iptables-off", audit.High, "daemon.json iptables", "moat's bans still hold"},
		{"daemon-icc", "daemon-icc", audit.Medium, "daemon.json icc", "reach each other"},
		{"daemon-userland-proxy", "daemon-userland-proxy", audit.Low, "daemon.json userland-proxy", "gateway's address"},
		{"daemon-live-restore", "daemon-live-restore", audit.Low, "daemon.json live-restore", "stops every container"},
		{"content-trust-not-enforced", "content-trust-not-enforced", audit.Info, "daemon.json content-trust", "DOCKER_CONTENT_TRUST is a client setting"},
		{"container-privileged", "container-privileged", audit.High, "admin-tool", "privileged"},
		{"container-root", "container-root", audit.Medium, "worker", "runs as root"},
		{"container-cap-add", "container-cap-add", audit.Medium, "pinger", "adds capabilities NET_RAW"},
		{"container-cap-add-high", "container-cap-add", audit.High, "vpn", "adds capabilities NET_ADMIN"},
		{"container-no-memory-limit", "container-no-memory-limit", audit.Low, "cache", "no memory limit"},
		{"container-no-pids-limit", "container-no-pids-limit", audit.Low, "queue", "no pids limit"},
		{"container-port-all-addresses", "container-port-all-addresses", audit.Medium, "api", "port 80/tcp is published on all addresses (host port 8081): reachable from every network"},
		{"container-port-behind-proxy", "container-port-all-addresses", audit.Medium, "app", "moat's proxy forwards to it, and clients can go around the proxy"},
		{"container-unconfined", "container-unconfined", audit.Medium, "debugger", `"seccomp=unconfined"`},
		{"container-new-privileges", "container-new-privileges", audit.Low, "legacy", "no-new-privileges is off"},
		{"container-rootfs-writable", "container-rootfs-writable", audit.Info, "blog", "root filesystem is writable"},
		{"container-host-network", "container-host-network", audit.Low, "sniffer", "shares the host's network"},
		{"container-unreadable", "container-unreadable", audit.Medium, "f526795c9539", "/var/lib/docker/containers/f526795c95399cea27c055c842c3d6ab018ed0fa4f66f701c28ab22dec28237b: config.v2.json: invalid JSON at line 1, column "},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			root := auditHostTree(t, tt.fixture)
			fs, r := auditJSON(t, "--root", root)
			wantCode := 0
			if tt.id != "" && tt.sev == audit.High {
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
		copyTree(t, filepath.Join(auditFixtures, fx), root)
	}
	write(t, filepath.Join(root, "etc", "docker", "daemon.json"), `{"userland-proxy": false, "content-trust": {"mode": "enforced"}}`)
	copyTree(t, filepath.Join(auditFixtures, "docker-socket-mode"), root)
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
	// One block per finding: severity, id and subject at the margin, the
	// message and the fix indented below; every line fits 100 columns.
	lines := strings.Split(strings.TrimSpace(tr.stdout), "\n")
	var heads []string
	for _, l := range lines {
		if len(l) > 100 {
			t.Errorf("line of %d columns, want at most 100: %q", len(l), l)
		}
		if l != "" && !strings.HasPrefix(l, " ") {
			heads = append(heads, l)
		}
	}
	if len(heads) != len(want)+2 {
		t.Fatalf("table has %d heads, want header + %d findings + summary:\n%s", len(heads), len(want), tr.stdout)
	}
	if h := strings.Fields(heads[0]); !slices.Equal(h, []string{"SEVERITY", "ID", "SUBJECT"}) {
		t.Errorf("table header = %q", heads[0])
	}
	for i, w := range want {
		if f := strings.Fields(heads[i+1]); len(f) < 3 || strings.Join(f, " ") != w {
			t.Errorf("table row %d = %q, want %q", i, heads[i+1], w)
		}
	}
	if !strings.Contains(tr.stdout, "\n          fix: chmod") {
		t.Errorf("the fix of docker-socket-mode is not on its own indented line:\n%s", tr.stdout)
	}
	if last := lines[len(lines)-1]; last != "6 finding(s): 2 high, 2 medium, 2 low, 0 info; 4 container(s) read" {
		t.Errorf("summary = %q", last)
	}
}

// TestAuditNoDocker: on a host without any trace of Docker the audit says
// Docker is not installed, reports nothing about it and exits 0; any one
// trace (daemon.json, a unit, the socket, the data root) is enough for a
// real audit.
func TestAuditNoDocker(t *testing.T) {
	empty := t.TempDir()
	write(t, filepath.Join(empty, "etc", "group"), "root:x:0:\n")
	r := cli(t, nil, "audit", "--root", empty)
	if r.code != 0 || !strings.Contains(r.stdout, "Docker is not installed") || r.stderr != "" {
		t.Errorf("audit without Docker: exit %d, stdout %q, stderr %q; want 0 and Docker is not installed", r.code, r.stdout, r.stderr)
	}
	for _, id := range []string{"icc", "live-restore", "userland-proxy", "content-trust", "finding(s)"} {
		if strings.Contains(r.stdout, id) {
			t.Errorf("audit without Docker reports %s:\n%s", id, r.stdout)
		}
	}
	for l := range strings.SplitSeq(r.stdout, "\n") {
		if len(l) > 100 {
			t.Errorf("line of %d columns: %q", len(l), l)
		}
	}
	fs, jr := auditJSON(t, "--root", empty, "--accept", "daemon-icc")
	if jr.code != 0 || len(fs) != 0 || !strings.Contains(jr.stderr, "Docker is not installed") || strings.Contains(jr.stderr, "matched no finding") {
		t.Errorf("audit --json without Docker: exit %d, %d findings, stderr %q; want 0, [] and the reason alone", jr.code, len(fs), jr.stderr)
	}

	for _, trace := range []string{
		"etc/docker/daemon.json",
		"lib/systemd/system/docker.service",
		"etc/systemd/system/docker.socket",
		"var/run/docker.sock",
		"var/lib/docker/",
	} {
		t.Run(strings.ReplaceAll(trace, "/", "_"), func(t *testing.T) {
			root := t.TempDir()
			write(t, filepath.Join(root, "etc", "group"), "root:x:0:\ndocker:x:998:\n")
			p := filepath.Join(root, trace)
			if strings.HasSuffix(trace, "/") {
				if err := os.MkdirAll(filepath.Join(p, "containers"), 0o755); err != nil {
					t.Fatal(err)
				}
			} else {
				write(t, p, "{}\n")
			}
			r := cli(t, nil, "audit", "--root", root)
			if strings.Contains(r.stdout, "not installed") || !strings.Contains(r.stdout, "finding(s)") {
				t.Errorf("audit with only %s: exit %d, stdout %q, stderr %q; want a real audit", trace, r.code, r.stdout, r.stderr)
			}
		})
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
				copyTree(t, filepath.Join(auditFixtures, "container-unreadable"), root)
				copyTree(t, filepath.Join(auditFixtures, "container-root"), root)
				return nil
			},
			code: 0,
			ids:  []string{"container-root", "container-unreadable"},
		},
		{
			name: "container without hostconfig.json",
			prepare: func(t *testing.T, root string) []string {
				copyTree(t, filepath.Join(auditFixtures, "container-root"), root)
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
				copyTree(t, filepath.Join(auditFixtures, "container-root"), filepath.Join(root, "tmp-overlay"))
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
			stderr:  "unknown flag -docker-sock",
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
			var fs []audit.Finding
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
			var fs []audit.Finding
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
	copyTree(t, filepath.Join(auditFixtures, "docker-api-tcp-unit"), tree)
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
	want := audit.Finding{ID: "docker-api-tcp", Severity: audit.High, Subject: filepath.Join(moved, "units-etc", "docker.service.d", "override.conf") + " ExecStart"}
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
