package audit

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moatproj/moat/sources/docker"
)

func TestSocketFindings(t *testing.T) {
	groups := map[string]int{"root": 0, "docker": 998, "users": 100}
	type want struct {
		id  string
		sev Severity
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
		{name: "world-writable", perm: 0o666, gid: 998, groups: groups, want: []want{{"docker-socket-mode", High}}},
		{name: "other-writable only", perm: 0o602, gid: 998, groups: groups, want: []want{{"docker-socket-mode", High}}},
		{name: "world-readable", perm: 0o664, gid: 998, groups: groups, want: []want{{"docker-socket-mode", Medium}}},
		{name: "owner not root", perm: 0o660, uid: 1000, gid: 998, groups: groups, want: []want{{"docker-socket-owner", Medium}}},
		{name: "another group", perm: 0o660, gid: 100, groups: groups, want: []want{{"docker-socket-owner", Medium}}},
		{name: "no docker group: root group expected", perm: 0o660, gid: 0, groups: map[string]int{"root": 0}},
		{name: "no docker group, gid 998", perm: 0o660, gid: 998, groups: map[string]int{"root": 0}, want: []want{{"docker-socket-owner", Medium}}},
		{name: "daemon.json group by name", perm: 0o660, gid: 100, setting: "users", groups: groups},
		{name: "daemon.json group by number", perm: 0o660, gid: 1234, setting: "1234", groups: groups},
		{name: "both wrong", perm: 0o666, uid: 1000, gid: 100, groups: groups, want: []want{{"docker-socket-mode", High}, {"docker-socket-owner", Medium}}},
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
		sevs     []Severity
		contains string
	}{
		{name: "unix and fd only", dc: daemonConfig{Hosts: []string{"unix:///var/run/docker.sock", "fd://"}}, exec: "/usr/bin/dockerd -H fd:// -H unix:///run/d.sock"},
		{name: "daemon.json tcp", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2375"}}, sevs: []Severity{High}, contains: "without TLS"},
		{name: "daemon.json bare host:port is tcp", dc: daemonConfig{Hosts: []string{"127.0.0.1:2375"}}, sevs: []Severity{High}},
		{name: "daemon.json tls without verify", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2376"}, TLS: &yes}, sevs: []Severity{High}, contains: "no client-certificate check"},
		{name: "daemon.json tlsverify", dc: daemonConfig{Hosts: []string{"tcp://0.0.0.0:2376"}, TLSVerify: &yes}, sevs: []Severity{Medium}, contains: "client-certificate checks"},
		{name: "-H tcp", exec: "/usr/bin/dockerd -H fd:// -H tcp://0.0.0.0:2375", sevs: []Severity{High}},
		{name: "-H=tcp", exec: "/usr/bin/dockerd -H=tcp://0.0.0.0:2375", sevs: []Severity{High}},
		{name: "-Htcp", exec: "/usr/bin/dockerd -Htcp://0.0.0.0:2375", sevs: []Severity{High}},
		{name: "--host tcp", exec: "/usr/bin/dockerd --host tcp://0.0.0.0:2375", sevs: []Severity{High}},
		{name: "--host=tcp", exec: "/usr/bin/dockerd --host=tcp://[::]:2375", sevs: []Severity{High}},
		{name: "unit --tlsverify", exec: "/usr/bin/dockerd --tlsverify --tlscacert=/etc/docker/ca.pem -H tcp://0.0.0.0:2376", sevs: []Severity{Medium}},
		{name: "unit --tlsverify=false", exec: "/usr/bin/dockerd --tlsverify=false -H tcp://0.0.0.0:2376", sevs: []Severity{High}},
		{name: "quoted", exec: `/usr/bin/dockerd "-H" 'tcp://0.0.0.0:2375'`, sevs: []Severity{High}},
		{name: "both places", dc: daemonConfig{Hosts: []string{"tcp://127.0.0.1:2375"}}, exec: "-/usr/bin/dockerd -H tcp://0.0.0.0:2375", sevs: []Severity{High, High}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := unitExec{file: "docker.service", args: splitCommand(tt.exec)}
			var got []Severity
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
				p = filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
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
	base := func() docker.Container {
		var c docker.Container
		c.ID = "0123456789abcdef0123"
		c.Name = "web"
		c.Running = true
		c.User = "101"
		c.Host.Memory = 1 << 28
		limit := int64(100)
		c.Host.PidsLimit = &limit
		c.Host.ReadonlyRootfs = true
		c.Host.SecurityOpt = []string{"no-new-privileges"}
		c.Host.NetworkMode = "bridge"
		return c
	}
	bind := func(ip, port string) map[string][]docker.PortBinding {
		return map[string][]docker.PortBinding{"80/tcp": {{HostIP: ip, HostPort: port}}}
	}
	type want struct {
		id  string
		sev Severity
	}
	tests := []struct {
		name     string
		change   func(c *docker.Container)
		dc       daemonConfig
		ups      []Upstream
		want     []want
		subject  string
		contains string
	}{
		{name: "hardened", change: func(c *docker.Container) {}},
		{name: "user root", change: func(c *docker.Container) { c.User = "root" }, want: []want{{"container-root", Medium}}},
		{name: "user 0:0", change: func(c *docker.Container) { c.User = "0:0" }, want: []want{{"container-root", Medium}}},
		{name: "user empty", change: func(c *docker.Container) { c.User = "" }, want: []want{{"container-root", Medium}}},
		{name: "user 1000:0 is not root", change: func(c *docker.Container) { c.User = "1000:0" }},
		{name: "root under userns-remap", change: func(c *docker.Container) { c.User = "" }, dc: daemonConfig{UsernsRemap: "default"},
			want: []want{{"container-root", Low}}, contains: "userns-remap"},
		{name: "lowercase cap", change: func(c *docker.Container) { c.Host.CapAdd = []string{"sys_admin"} }, want: []want{{"container-cap-add", High}}, contains: "SYS_ADMIN"},
		{name: "cap ALL", change: func(c *docker.Container) { c.Host.CapAdd = []string{"ALL"} }, want: []want{{"container-cap-add", High}}},
		{name: "harmless caps", change: func(c *docker.Container) { c.Host.CapAdd = []string{"CAP_CHOWN", "NET_BIND_SERVICE"} },
			want: []want{{"container-cap-add", Medium}}, contains: "CHOWN, NET_BIND_SERVICE"},
		{name: "pids limit -1", change: func(c *docker.Container) { v := int64(-1); c.Host.PidsLimit = &v }, want: []want{{"container-no-pids-limit", Low}}},
		{name: "pids limit 0", change: func(c *docker.Container) { v := int64(0); c.Host.PidsLimit = &v }, want: []want{{"container-no-pids-limit", Low}}},
		{name: "no-new-privileges=false", change: func(c *docker.Container) { c.Host.SecurityOpt = []string{"no-new-privileges=false"} }, want: []want{{"container-new-privileges", Low}}},
		{name: "no-new-privileges from the daemon", change: func(c *docker.Container) { c.Host.SecurityOpt = nil }, dc: daemonConfig{NoNewPrivileges: true}},
		{name: "apparmor:unconfined", change: func(c *docker.Container) { c.Host.SecurityOpt = append(c.Host.SecurityOpt, "apparmor:unconfined") }, want: []want{{"container-unconfined", Medium}}},
		{name: "stopped", change: func(c *docker.Container) { c.Running = false; c.Host.Privileged = true }, want: []want{{"container-privileged", High}}, subject: "web (stopped)"},
		{name: "no name", change: func(c *docker.Container) { c.Name = ""; c.Host.Memory = 0 }, want: []want{{"container-no-memory-limit", Low}}, subject: "0123456789ab"},
		{name: "loopback binding", change: func(c *docker.Container) { c.Host.PortBindings = bind("127.0.0.1", "8080") }},
		{name: "empty HostIp with daemon ip loopback", change: func(c *docker.Container) { c.Host.PortBindings = bind("", "8080") }, dc: daemonConfig{IP: "127.0.0.1"}},
		{name: "empty HostIp", change: func(c *docker.Container) { c.Host.PortBindings = bind("", "8080") }, want: []want{{"container-port-all-addresses", Medium}}, contains: "reachable from every network"},
		{name: "daemon ip 0.0.0.0", change: func(c *docker.Container) { c.Host.PortBindings = bind("", "8080") }, dc: daemonConfig{IP: "0.0.0.0"}, want: []want{{"container-port-all-addresses", Medium}}},
		{name: "[::]", change: func(c *docker.Container) { c.Host.PortBindings = bind("[::]", "8080") }, want: []want{{"container-port-all-addresses", Medium}}},
		{name: "documentation address binding", change: func(c *docker.Container) { c.Host.PortBindings = bind("192.0.2.10", "8080") }},
		{name: "proxy fronts the host port", change: func(c *docker.Container) { c.Host.PortBindings = bind("0.0.0.0", "8080") },
			ups: []Upstream{{"localhost", 8080}}, want: []want{{"container-port-all-addresses", Medium}}, contains: "go around the proxy"},
		{name: "proxy fronts the container address", change: func(c *docker.Container) {
			c.Host.PortBindings = bind("0.0.0.0", "8080")
			c.Networks = map[string]docker.Network{"bridge": {IPAddress: "172.17.0.5"}}
		}, ups: []Upstream{{"172.17.0.5", 80}}, want: []want{{"container-port-all-addresses", Medium}}, contains: "go around the proxy"},
		{name: "proxy elsewhere", change: func(c *docker.Container) { c.Host.PortBindings = bind("0.0.0.0", "9000") },
			ups: []Upstream{{"127.0.0.1", 8080}}, want: []want{{"container-port-all-addresses", Medium}}, contains: "not behind moat's proxy"},
		{name: "-P publishes exposed ports without a binding", change: func(c *docker.Container) {
			c.ExposedPorts = []string{"443/tcp", "80/tcp"}
			c.Host.PortBindings = bind("127.0.0.1", "8080")
			c.Host.PublishAllPorts = true
		}, want: []want{{"container-port-all-addresses", Medium}}, contains: "port 443/tcp is published on all addresses (host port chosen by Docker)"},
		{name: "-P with daemon ip loopback", change: func(c *docker.Container) {
			c.ExposedPorts = []string{"443/tcp"}
			c.Host.PublishAllPorts = true
		}, dc: daemonConfig{IP: "127.0.0.1"}},
		{name: "host network ignores bindings", change: func(c *docker.Container) { c.Host.NetworkMode = "host"; c.Host.PortBindings = bind("", "8080") },
			want: []want{{"container-host-network", Low}}},
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
			if tt.want && (fs[0].Severity != Info || !strings.Contains(fs[0].Message, tt.contains)) {
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

// FuzzParseContainer: no container files, however broken, make the reader
// (sources/docker, through readContainers) or the checks panic; a container
// that cannot be decoded is a finding naming the file, and one that can is
// judged.
func FuzzParseContainer(f *testing.F) {
	id := strings.Repeat("0123456789abcdef", 4)
	dirs, _ := filepath.Glob(filepath.Join("testdata", "*", "var", "lib", "docker", "containers", "*"))
	for _, d := range dirs {
		cfg, _ := os.ReadFile(filepath.Join(d, "config.v2.json"))
		host, _ := os.ReadFile(filepath.Join(d, "hostconfig.json"))
		f.Add(bytes.ReplaceAll(cfg, []byte(filepath.Base(d)), []byte(id)), host)
	}
	f.Add([]byte(`{"ID":"`+id+`","Name":"/x","Config":{"User":"0"}}`), []byte(`{"PortBindings":{"53/udp":[{"HostIp":"::","HostPort":""}]},"PidsLimit":null,"CapAdd":["all"]}`))
	f.Add([]byte(`null`), []byte(`null`))
	f.Fuzz(func(t *testing.T, cfg, host []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "containers", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"config.v2.json": cfg, "hostconfig.json": host} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cs, bad, err := readContainers(root, func(p string) string { return p })
		if err != nil || len(cs)+len(bad) != 1 {
			t.Fatalf("readContainers = %d containers, %+v, %v; want one container or one finding", len(cs), bad, err)
		}
		for _, b := range bad {
			if b.ID != "container-unreadable" || !strings.Contains(b.Message, ": config.v2.json: ") && !strings.Contains(b.Message, ": hostconfig.json: ") {
				t.Errorf("finding %+v does not name the file", b)
			}
		}
		for _, c := range cs {
			for _, ups := range [][]Upstream{nil, {{"127.0.0.1", 8080}}} {
				for _, f := range containerFindings(c, daemonConfig{}, ups) {
					if f.ID == "" || f.Subject == "" || f.Message == "" || f.Fix == "" {
						t.Errorf("incomplete finding %+v", f)
					}
				}
			}
		}
	})
}

func TestReportAccept(t *testing.T) {
	rep := Report{Findings: []Finding{
		{ID: "container-cap-add", Severity: High, Subject: "vpn"},
		{ID: "container-root", Severity: Medium, Subject: "vpn"},
		{ID: "container-root", Severity: Medium, Subject: "web"},
		{ID: "daemon-icc", Severity: Medium, Subject: "daemon.json icc"},
	}}
	unused := rep.Accept([]string{"container-cap-add:vpn", "*:web", "daemon-icc", "container-root:moat"})
	if len(rep.Findings) != 1 || rep.Findings[0].ID != "container-root" || rep.Findings[0].Subject != "vpn" {
		t.Errorf("findings left = %+v, want container-root of vpn", rep.Findings)
	}
	if rep.Accepted != 3 || !slices.Equal(unused, []string{"container-root:moat"}) || rep.Highs() != 0 {
		t.Errorf("accepted %d, unused %q, highs %d; want 3, [container-root:moat], 0", rep.Accepted, unused, rep.Highs())
	}
}

func TestSeverityJSON(t *testing.T) {
	for _, s := range []Severity{High, Medium, Low, Info} {
		b, err := json.Marshal(s)
		var back Severity
		if err != nil || json.Unmarshal(b, &back) != nil || back != s {
			t.Errorf("%v: marshalled %s (%v), back %v", s, b, err, back)
		}
	}
	var s Severity
	if err := json.Unmarshal([]byte(`"critical"`), &s); err == nil {
		t.Error("severity critical decoded")
	}
}
