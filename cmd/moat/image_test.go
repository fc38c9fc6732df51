package main

// Tests of the files that ship moat: the Dockerfile, .dockerignore,
// configs/compose.yaml, configs/docker.yaml and configs/moat.service. No
// Docker engine runs here, so each property the issue asks of them is read
// from the file itself, one named subtest per property, and the static build
// the Dockerfile performs is run for real (TestStaticBuild).

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/moatproj/moat/configs"

	"github.com/moatproj/moat/internal/testkit"
)

// imgRoot is the repository root, absolute.
func imgRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func imgRead(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(imgRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// ---- Dockerfile ----

// imgInstr is one Dockerfile instruction with its continuation lines joined.
type imgInstr struct {
	line  int    // line where it starts
	cmd   string // upper case: FROM, RUN, …
	args  string // the rest, as written
	stage int    // 0 for the first FROM's stage, 1 for the next, …
}

// imgParseDockerfile splits a Dockerfile into instructions: comment lines
// (also inside continuations) and blank lines are dropped, and a line ending
// in a backslash continues on the next, as Docker reads them.
func imgParseDockerfile(src string) []imgInstr {
	var out []imgInstr
	stage := -1
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(strings.TrimRight(line, " \t"), `\`) {
			l := strings.TrimRight(line, " \t")
			cur.WriteString(l[:len(l)-1])
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, imgInstr{line: start, cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	}
	return out
}

// imgErrNotSimple is returned by imgShellFields for text that is more than one
// simple command.
var imgErrNotSimple = errors.New("not one simple command")

// imgShellFields splits s into words as a POSIX shell would for one simple
// command: quotes, backslashes, and $NAME / ${NAME} taken from vars (an
// unknown name is an error). With vars nil, $ is kept as written. Pipes,
// lists, redirections and command substitution are refused.
func imgShellFields(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	const (
		plain = iota
		single
		double
	)
	state := plain
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch state {
		case single:
			if c == '\'' {
				state = plain
			} else {
				w.WriteRune(c)
			}
			continue
		case double:
			switch {
			case c == '"':
				state = plain
			case c == '\\' && i+1 < len(rs) && strings.ContainsRune("$\"\\`", rs[i+1]):
				i++
				w.WriteRune(rs[i])
			case c == '`':
				return nil, fmt.Errorf("%w: command substitution", imgErrNotSimple)
			case c == '$' && vars != nil:
				v, n, err := imgExpand(rs[i:], vars)
				if err != nil {
					return nil, err
				}
				w.WriteString(v)
				i += n - 1
			default:
				w.WriteRune(c)
			}
			continue
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			continue
		case strings.ContainsRune(";&|<>`()", c):
			return nil, fmt.Errorf("%w: %q", imgErrNotSimple, c)
		case c == '\'':
			state = single
		case c == '"':
			state = double
		case c == '\\' && i+1 < len(rs):
			i++
			w.WriteRune(rs[i])
		case c == '$' && vars != nil:
			v, n, err := imgExpand(rs[i:], vars)
			if err != nil {
				return nil, err
			}
			w.WriteString(v)
			i += n - 1
		default:
			w.WriteRune(c)
		}
		inWord = true
	}
	if state != plain {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var imgVarRE = regexp.MustCompile(`^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)

// imgExpand expands the variable at the start of rs and says how many runes
// it took.
func imgExpand(rs []rune, vars map[string]string) (string, int, error) {
	m := imgVarRE.FindStringSubmatch(string(rs))
	if m == nil {
		return "", 0, fmt.Errorf("%w: unsupported expansion at %q", imgErrNotSimple, string(rs[:min(len(rs), 12)]))
	}
	name := m[1] + m[2]
	v, ok := vars[name]
	if !ok {
		return "", 0, fmt.Errorf("variable %s has no value in the test", name)
	}
	return v, len([]rune(m[0])), nil
}

func TestShellFields(t *testing.T) {
	vars := map[string]string{"V": "1.2", "OS": "linux"}
	tests := []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"plain", "go build ./x", []string{"go", "build", "./x"}, false},
		{"double quotes expand", `-ldflags "-s -X a=${V}"`, []string{"-ldflags", "-s -X a=1.2"}, false},
		{"single quotes do not", `'$V'`, []string{"$V"}, false},
		{"bare variable", "GOOS=$OS", []string{"GOOS=linux"}, false},
		{"empty value", `A="" b`, []string{"A=", "b"}, false},
		{"unknown variable", "${NOPE}", nil, true},
		{"default syntax refused", "${V:-x}", nil, true},
		{"list refused", "a && b", nil, true},
		{"pipe refused", "a | b", nil, true},
		{"substitution refused", "a $(b)", nil, true},
		{"unterminated", `"a`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := imgShellFields(tt.in, vars)
			if (err != nil) != tt.err {
				t.Fatalf("imgShellFields(%q) error = %v, want error %v", tt.in, err, tt.err)
			}
			if !tt.err && !slices.Equal(got, tt.want) {
				t.Errorf("imgShellFields(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// imgDF is the parsed Dockerfile with helpers for its final stage.
type imgDF struct {
	instrs []imgInstr
	last   int // index of the final stage
}

func imgDockerfile(t *testing.T) imgDF {
	t.Helper()
	in := imgParseDockerfile(imgRead(t, "Dockerfile"))
	if len(in) == 0 {
		t.Fatal("Dockerfile has no instructions")
	}
	return imgDF{instrs: in, last: in[len(in)-1].stage}
}

// all returns the instructions named cmd in stage (-1: any stage).
func (d imgDF) all(cmd string, stage int) []imgInstr {
	var out []imgInstr
	for _, in := range d.instrs {
		if in.cmd == cmd && (stage < 0 || in.stage == stage) {
			out = append(out, in)
		}
	}
	return out
}

// buildRun is the RUN of a non-final stage that runs go build.
func (d imgDF) buildRun(t *testing.T) imgInstr {
	t.Helper()
	var found []imgInstr
	for _, in := range d.all("RUN", -1) {
		if in.stage != d.last && strings.Contains(in.args, "go build") {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one RUN with go build in a build stage, found %d", len(found))
	}
	return found[0]
}

// imgExecForm decodes the JSON array of an exec-form instruction.
func imgExecForm(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("not exec form (a JSON array): %q: %v", s, err)
	}
	return out
}

// fileCaps returns the capabilities the build stage's setcap gives the
// binary, upper case without the CAP_ prefix.
func (d imgDF) fileCaps(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`setcap\s+([a-z_,]+)=ep\s+/out/moat`)
	var caps []string
	for _, in := range d.all("RUN", -1) {
		if m := re.FindStringSubmatch(in.args); m != nil && in.stage != d.last {
			for _, c := range strings.Split(m[1], ",") {
				caps = append(caps, strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
			}
			break
		}
	}
	slices.Sort(caps)
	return caps
}

func TestDockerfile(t *testing.T) {
	d := imgDockerfile(t)
	final := d.last
	shipped := imgShippedConfig(t)

	t.Run("multi-stage", func(t *testing.T) {
		froms := d.all("FROM", -1)
		if len(froms) < 2 {
			t.Fatalf("%d FROM, want a build stage and a final stage", len(froms))
		}
		if !strings.Contains(froms[0].args, " AS ") {
			t.Errorf("build stage is not named: FROM %s", froms[0].args)
		}
	})
	t.Run("final image is distroless static or scratch", func(t *testing.T) {
		from := d.all("FROM", final)[0].args
		switch {
		case strings.HasPrefix(from, "gcr.io/distroless/static"):
			// Carries CA certificates and /etc/passwd with nonroot.
		case from == "scratch":
			found := false
			for _, c := range d.all("COPY", final) {
				found = found || strings.Contains(c.args, "ca-certificates")
			}
			if !found {
				t.Error("scratch final image without CA certificates")
			}
		default:
			t.Errorf("final image %q is neither distroless static nor scratch", from)
		}
	})
	t.Run("BuildKit syntax", func(t *testing.T) {
		// BuildKit keeps the file capabilities across COPY --from; the
		// classic builder drops them (moby/moby#38132).
		if !strings.HasPrefix(imgRead(t, "Dockerfile"), "# syntax=docker/dockerfile:1") {
			t.Error("Dockerfile does not start with # syntax=docker/dockerfile:1")
		}
	})
	t.Run("static trimmed stripped stamped build", func(t *testing.T) {
		run := d.buildRun(t).args
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "-o /out/moat", "./cmd/moat"} {
			if !strings.Contains(run, want) {
				t.Errorf("go build line lacks %q: %s", want, run)
			}
		}
	})
	t.Run("VERSION is an ARG before the build", func(t *testing.T) {
		run := d.buildRun(t)
		declared := false
		for _, a := range d.all("ARG", run.stage) {
			if a.line < run.line && strings.HasPrefix(a.args, "VERSION") {
				declared = true
			}
		}
		if !declared {
			t.Error("ARG VERSION is not declared in the build stage before go build")
		}
	})
	t.Run("non-root user", func(t *testing.T) {
		users := d.all("USER", final)
		if len(users) == 0 {
			t.Fatal("final stage has no USER: it would run as root")
		}
		u := users[len(users)-1].args
		uid, gid, _ := strings.Cut(u, ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-zero uid (checkable by runAsNonRoot)", u)
		}
		if gid != "" {
			if _, err := strconv.Atoi(gid); err != nil {
				t.Errorf("USER %q: want a numeric gid", u)
			}
		}
	})
	t.Run("file capabilities are exactly compose's cap_add", func(t *testing.T) {
		got := d.fileCaps(t)
		want := imgCapSet(imgComposeService(t)["cap_add"])
		if len(got) == 0 || !slices.Equal(got, want) {
			t.Errorf("setcap gives %v, compose adds %v: they must be the same two", got, want)
		}
		if !slices.Equal(got, []string{"NET_ADMIN", "NET_BIND_SERVICE"}) {
			t.Errorf("setcap gives %v, want NET_ADMIN and NET_BIND_SERVICE", got)
		}
	})
	t.Run("healthcheck through the CLI", func(t *testing.T) {
		hcs := d.all("HEALTHCHECK", final)
		if len(hcs) == 0 {
			t.Fatal("no HEALTHCHECK")
		}
		_, cmd, ok := strings.Cut(hcs[len(hcs)-1].args, "CMD ")
		if !ok {
			t.Fatalf("HEALTHCHECK without CMD: %s", hcs[len(hcs)-1].args)
		}
		argv := imgExecForm(t, strings.TrimSpace(cmd))
		if len(argv) < 2 || path.Base(argv[0]) != "moat" || argv[1] != "status" {
			t.Errorf("HEALTHCHECK runs %q, want moat status", argv)
		}
	})
	t.Run("CLI finds the configured socket", func(t *testing.T) {
		found := false
		for _, e := range d.all("ENV", final) {
			if v, ok := strings.CutPrefix(e.args, "MOAT_SOCKET="); ok {
				found = true
				if v != shipped.Socket {
					t.Errorf("ENV MOAT_SOCKET=%s, but docker.yaml's socket is %s", v, shipped.Socket)
				}
			}
		}
		if !found {
			t.Error("no ENV MOAT_SOCKET: moat status as a non-root user would look under $HOME")
		}
	})
	t.Run("ships docker.yaml where moat run looks", func(t *testing.T) {
		want := "configs/docker.yaml " + configs.SystemPath
		found := false
		for _, c := range d.all("COPY", final) {
			found = found || c.args == want
		}
		if !found {
			t.Errorf("no COPY %s", want)
		}
	})
	t.Run("entrypoint is the binary", func(t *testing.T) {
		eps := d.all("ENTRYPOINT", final)
		if len(eps) == 0 {
			t.Fatal("no ENTRYPOINT")
		}
		if argv := imgExecForm(t, eps[len(eps)-1].args); len(argv) != 1 || argv[0] != "/usr/local/bin/moat" {
			t.Errorf("ENTRYPOINT %q, want [\"/usr/local/bin/moat\"]", argv)
		}
		cmds := d.all("CMD", final)
		if len(cmds) == 0 || !slices.Equal(imgExecForm(t, cmds[len(cmds)-1].args), []string{"run"}) {
			t.Error(`CMD is not ["run"]`)
		}
	})
	t.Run("OCI labels", func(t *testing.T) {
		labels := map[string]string{}
		for _, l := range d.all("LABEL", final) {
			words, err := imgShellFields(l.args, nil)
			if err != nil {
				t.Fatalf("LABEL at line %d: %v", l.line, err)
			}
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				labels[k] = v
			}
		}
		for _, k := range []string{"title", "description", "source", "licenses", "version", "revision"} {
			if labels["org.opencontainers.image."+k] == "" {
				t.Errorf("no label org.opencontainers.image.%s", k)
			}
		}
		if v := labels["org.opencontainers.image.version"]; v != "${VERSION}" {
			t.Errorf("version label %q, want ${VERSION}: the same stamp as the binary", v)
		}
		if v := labels["org.opencontainers.image.revision"]; v != "${REVISION}" {
			t.Errorf("revision label %q, want ${REVISION}", v)
		}
	})
	t.Run("no secrets in ARG or ENV", func(t *testing.T) {
		secretish := regexp.MustCompile(`(?i)secret|token|passw|credential|private|api_?key|_key\b|\bkey\b|auth`)
		for _, cmd := range []string{"ARG", "ENV"} {
			for _, in := range d.all(cmd, -1) {
				name, _, _ := strings.Cut(in.args, "=")
				name, _, _ = strings.Cut(name, " ")
				if secretish.MatchString(name) {
					t.Errorf("line %d: %s %s looks like a secret; it would stay in the image's history", in.line, cmd, name)
				}
			}
		}
	})
	t.Run("no remote ADD", func(t *testing.T) {
		for _, in := range d.all("ADD", -1) {
			t.Errorf("line %d: ADD %s: use COPY (no URLs or archives fetched into layers)", in.line, in.args)
		}
	})
	t.Run("state and socket directories writable by both users", func(t *testing.T) {
		// Owned by 65532 (the image's user) and group 0 (compose's user
		// 0:0 has no CAP_DAC_OVERRIDE): see the Dockerfile's comments.
		for _, dir := range []string{shipped.StateDir, filepath.Dir(shipped.Socket)} {
			found := false
			for _, c := range d.all("COPY", final) {
				if strings.HasSuffix(c.args, " "+dir) && strings.Contains(c.args, "--chown=65532:0") {
					found = true
				}
			}
			if !found {
				t.Errorf("no COPY --chown=65532:0 … %s", dir)
			}
		}
		mk := false
		for _, r := range d.all("RUN", -1) {
			mk = mk || strings.Contains(r.args, "install -d -m 0770")
		}
		if !mk {
			t.Error("the copied directories are not made with mode 0770")
		}
	})
}

// ---- .dockerignore ----

// imgIgnoreRE turns a .dockerignore pattern into a regexp over slash paths
// relative to the context, with Docker's meaning of *, ? and **.
func imgIgnoreRE(p string) *regexp.Regexp {
	p = strings.TrimPrefix(path.Clean(strings.TrimPrefix(p, "/")), "./")
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// imgIgnored says whether rel is left out of the build context: a pattern
// that matches it or one of its parent directories excludes it, and a later
// ! pattern brings it back.
func imgIgnored(patterns []string, rel string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		re := imgIgnoreRE(strings.TrimPrefix(p, "!"))
		for q := rel; q != "." && q != "/" && q != ""; q = path.Dir(q) {
			if re.MatchString(q) {
				ignored = !neg
				break
			}
		}
	}
	return ignored
}

func imgIgnorePatterns(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(imgRead(t, ".dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestDockerignore(t *testing.T) {
	patterns := imgIgnorePatterns(t)
	out := []struct{ name, path string }{
		{"git history", ".git/config"},
		{"private key at the top", "server.key"},
		{"pem in a subdirectory", "deploy/tls/cert.pem"},
		{"compose secrets directory", "configs/secrets/moat_tls_key.pem"},
		{"env file", ".env"},
		{"nested env file", "deploy/.env.production"},
		{"state directory", "state/moat.db"},
		{"bolt database anywhere", "tmp/bans.db"},
		{"local binary", "moat"},
		{"test binary", "nftables.test"},
	}
	for _, tt := range out {
		t.Run("excludes "+tt.name, func(t *testing.T) {
			if !imgIgnored(patterns, tt.path) {
				t.Errorf("%s would be sent to the builder", tt.path)
			}
		})
	}
	t.Run("keeps every file the build needs", func(t *testing.T) {
		root := imgRoot(t)
		// The Go files and embedded files of every package of this module
		// that cmd/moat is built from, plus what the Dockerfile copies.
		cmd := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if eq .Module.Path "github.com/moatproj/moat"}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/moat")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		listed, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		need := []string{"go.mod", "go.sum", "configs/docker.yaml"}
		for _, f := range strings.Fields(string(listed)) {
			rel, err := filepath.Rel(root, f)
			if err != nil {
				t.Fatal(err)
			}
			need = append(need, filepath.ToSlash(rel))
		}
		if len(need) < 50 {
			t.Fatalf("go list found only %d files", len(need))
		}
		for _, f := range need {
			if imgIgnored(patterns, f) {
				t.Errorf("%s is needed by the build but .dockerignore leaves it out", f)
			}
		}
	})
}

func TestIgnorePattern(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"*.pem", "a.pem", true},
		{"*.pem", "dir/a.pem", false},
		{"**/*.pem", "dir/sub/a.pem", true},
		{"**/*.pem", "a.pem", true},
		{".git", ".git/HEAD", true},
		{"/moat", "moat", true},
		{"/moat", "cmd/moat/main.go", false},
		{"**/testdata", "cmd/moat/testdata/x", true},
		{"bench", "benchmark.go", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.path, func(t *testing.T) {
			if got := imgIgnored([]string{tt.pattern}, tt.path); got != tt.want {
				t.Errorf("imgIgnored(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
		})
	}
}

// ---- docker.yaml ----

// imgShippedConfig parses configs/docker.yaml as moat does, for a non-root
// user: the paths it gives must not depend on who runs moat.
func imgShippedConfig(t *testing.T) *configs.Config {
	t.Helper()
	data := []byte(imgRead(t, "configs/docker.yaml"))
	var first *configs.Config
	for _, env := range []configs.Env{
		{Root: false, UID: 65532, Home: "/home/nonroot"},
		{Root: true, UID: 0, Home: "/root"},
	} {
		cfg, err := configs.Parse("configs/docker.yaml", data, configs.Options{Env: env})
		if err != nil {
			t.Fatalf("parse configs/docker.yaml as uid %d: %v", env.UID, err)
		}
		if first == nil {
			first = cfg
			continue
		}
		if cfg.StateDir != first.StateDir || cfg.Socket != first.Socket || cfg.Firewall.Backend != first.Firewall.Backend {
			t.Fatalf("docker.yaml gives uid 0 %s, %s, %s and uid 65532 %s, %s, %s: set them explicitly",
				cfg.StateDir, cfg.Socket, cfg.Firewall.Backend, first.StateDir, first.Socket, first.Firewall.Backend)
		}
	}
	return first
}

func TestShippedDockerConfig(t *testing.T) {
	cfg := imgShippedConfig(t)
	t.Run("moat check accepts it", func(t *testing.T) {
		var out, errb bytes.Buffer
		io := stdio{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		if code := run(context.Background(), []string{"check", "--config", filepath.Join(imgRoot(t), "configs", "docker.yaml")}, io); code != 0 {
			t.Fatalf("moat check = %d\n%s%s", code, out.String(), errb.String())
		}
	})
	t.Run("firewall backend is nftables", func(t *testing.T) {
		// Not auto: without CAP_NET_ADMIN (an engine too old for file
		// capabilities with no-new-privileges) moat must fail to start, not
		// fall back to logging bans nobody enforces.
		if cfg.Firewall.Backend != "nftables" {
			t.Errorf("firewall.backend = %q, want nftables", cfg.Firewall.Backend)
		}
	})
	t.Run("state and socket on fixed paths", func(t *testing.T) {
		if cfg.StateDir != "/var/lib/moat" || cfg.Socket != "/run/moat/moat.sock" {
			t.Errorf("state_dir %s, socket %s", cfg.StateDir, cfg.Socket)
		}
	})
	t.Run("follows containers", func(t *testing.T) {
		n := 0
		for _, j := range cfg.Jails {
			n += len(j.Containers)
		}
		if n == 0 {
			t.Error("no jail follows container logs")
		}
		if cfg.Docker.Root != "/var/lib/docker" {
			t.Errorf("docker.root = %s", cfg.Docker.Root)
		}
	})
}

// ---- compose.yaml ----

func imgCompose(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(imgRead(t, "configs/compose.yaml")), &doc); err != nil {
		t.Fatalf("parse configs/compose.yaml: %v", err)
	}
	return doc
}

func imgComposeService(t *testing.T) map[string]any {
	t.Helper()
	services, _ := imgCompose(t)["services"].(map[string]any)
	svc, ok := services["moat"].(map[string]any)
	if !ok {
		t.Fatal("compose.yaml has no services.moat")
	}
	return svc
}

// imgStrings turns a YAML sequence of scalars into strings.
func imgStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// imgCapSet normalizes a capability list: upper case, no CAP_ prefix,
// sorted.
func imgCapSet(v any) []string {
	var out []string
	for _, c := range imgStrings(v) {
		out = append(out, strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
	}
	slices.Sort(out)
	return out
}

// imgMount is one entry of a service's volumes, short or long syntax.
type imgMount struct {
	source, target string
	readOnly       bool
}

func imgMounts(t *testing.T, svc map[string]any) []imgMount {
	t.Helper()
	var out []imgMount
	list, _ := svc["volumes"].([]any)
	for _, v := range list {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			m := imgMount{source: parts[0]}
			if len(parts) > 1 {
				m.target = parts[1]
			}
			if len(parts) > 2 {
				m.readOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
			}
			out = append(out, m)
		case map[string]any:
			ro, _ := v["read_only"].(bool)
			out = append(out, imgMount{source: fmt.Sprint(v["source"]), target: fmt.Sprint(v["target"]), readOnly: ro})
		default:
			t.Fatalf("volume entry %v", v)
		}
	}
	return out
}

// imgBytes parses a compose byte size such as 256m.
func imgBytes(v any) int64 {
	s := strings.ToLower(fmt.Sprint(v))
	mult := int64(1)
	for suf, m := range map[string]int64{"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			if _, err := strconv.ParseInt(strings.TrimSuffix(s, suf), 10, 64); err == nil {
				s, mult = strings.TrimSuffix(s, suf), m
			}
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n * mult
}

func TestCompose(t *testing.T) {
	doc := imgCompose(t)
	svc := imgComposeService(t)
	shipped := imgShippedConfig(t)
	mounts := imgMounts(t, svc)

	t.Run("host network", func(t *testing.T) {
		if svc["network_mode"] != "host" {
			t.Errorf("network_mode = %v, want host (nftables in the host namespace, real client addresses)", svc["network_mode"])
		}
	})
	t.Run("drops every capability", func(t *testing.T) {
		if got := imgCapSet(svc["cap_drop"]); !slices.Equal(got, []string{"ALL"}) {
			t.Errorf("cap_drop = %v, want [ALL]", got)
		}
	})
	t.Run("adds only NET_ADMIN and NET_BIND_SERVICE", func(t *testing.T) {
		if got := imgCapSet(svc["cap_add"]); !slices.Equal(got, []string{"NET_ADMIN", "NET_BIND_SERVICE"}) {
			t.Errorf("cap_add = %v", got)
		}
	})
	t.Run("no new privileges", func(t *testing.T) {
		ok := false
		for _, o := range imgStrings(svc["security_opt"]) {
			ok = ok || o == "no-new-privileges:true" || o == "no-new-privileges=true" || o == "no-new-privileges"
		}
		if !ok {
			t.Errorf("security_opt = %v, want no-new-privileges:true", svc["security_opt"])
		}
	})
	t.Run("not privileged", func(t *testing.T) {
		if p, _ := svc["privileged"].(bool); p {
			t.Error("privileged: true")
		}
		for _, k := range []string{"pid", "ipc", "userns_mode"} {
			if svc[k] == "host" {
				t.Errorf("%s: host", k)
			}
		}
	})
	t.Run("read-only root filesystem", func(t *testing.T) {
		if ro, _ := svc["read_only"].(bool); !ro {
			t.Error("read_only is not true")
		}
	})
	t.Run("socket directory on a tmpfs", func(t *testing.T) {
		dir := filepath.Dir(shipped.Socket)
		found := false
		for _, tm := range imgStrings(svc["tmpfs"]) {
			p, _, _ := strings.Cut(tm, ":")
			found = found || p == dir
		}
		if !found {
			t.Errorf("tmpfs = %v, want %s (docker.yaml's socket directory) writable", svc["tmpfs"], dir)
		}
	})
	t.Run("state on a named volume", func(t *testing.T) {
		named, _ := doc["volumes"].(map[string]any)
		found := false
		for _, m := range mounts {
			if _, ok := named[m.source]; ok && m.target == shipped.StateDir && !m.readOnly {
				found = true
			}
		}
		if !found {
			t.Errorf("no named volume at %s (docker.yaml's state_dir)", shipped.StateDir)
		}
	})
	t.Run("containers directory mounted read-only", func(t *testing.T) {
		want := path.Join(shipped.Docker.Root, "containers")
		found := false
		for _, m := range mounts {
			if m.source == "/var/lib/docker/containers" && m.target == want && m.readOnly {
				found = true
			}
		}
		if !found {
			t.Errorf("no /var/lib/docker/containers:%s:ro", want)
		}
	})
	t.Run("host logs mounted read-only", func(t *testing.T) {
		found := false
		for _, m := range mounts {
			found = found || m.source == "/var/log" && m.target == "/var/log" && m.readOnly
		}
		if !found {
			t.Error("no /var/log:/var/log:ro")
		}
	})
	t.Run("every host path read-only", func(t *testing.T) {
		for _, m := range mounts {
			if strings.HasPrefix(m.source, "/") || strings.HasPrefix(m.source, ".") {
				if !m.readOnly {
					t.Errorf("host path %s is mounted writable", m.source)
				}
			}
		}
	})
	t.Run("never the Docker socket", func(t *testing.T) {
		for _, m := range mounts {
			if strings.Contains(m.source, "docker.sock") || strings.HasSuffix(m.source, "/run/docker") {
				t.Errorf("mounts %s", m.source)
			}
		}
	})
	t.Run("memory and pids limits", func(t *testing.T) {
		limits := map[string]any{}
		if d, ok := svc["deploy"].(map[string]any); ok {
			if r, ok := d["resources"].(map[string]any); ok {
				limits, _ = r["limits"].(map[string]any)
			}
		}
		mem := imgBytes(svc["mem_limit"])
		if mem == 0 {
			mem = imgBytes(limits["memory"])
		}
		if mem <= 0 {
			t.Error("no memory limit")
		}
		pids, _ := svc["pids_limit"].(int)
		if pids == 0 {
			pids, _ = limits["pids"].(int)
		}
		if pids <= 0 {
			t.Error("no pids limit")
		}
	})
	t.Run("secrets are files, not environment", func(t *testing.T) {
		top, _ := doc["secrets"].(map[string]any)
		if len(top) == 0 {
			t.Fatal("no top-level secrets")
		}
		for name, s := range top {
			m, _ := s.(map[string]any)
			if _, ok := m["file"]; !ok {
				t.Errorf("secret %s is not a file (%v)", name, s)
			}
			if _, ok := m["environment"]; ok {
				t.Errorf("secret %s comes from an environment variable", name)
			}
		}
		used := map[string]bool{}
		list, _ := svc["secrets"].([]any)
		for _, s := range list {
			switch s := s.(type) {
			case string:
				used[s] = true
			case map[string]any:
				used[fmt.Sprint(s["source"])] = true
			}
		}
		for name := range top {
			if !used[name] {
				t.Errorf("secret %s is declared but not given to moat", name)
			}
		}
		if _, ok := svc["env_file"]; ok {
			t.Error("env_file: secrets would land in the environment")
		}
		secretish := regexp.MustCompile(`(?i)secret|token|passw|key|credential`)
		env := svc["environment"]
		var names []string
		switch env := env.(type) {
		case map[string]any:
			for k := range env {
				names = append(names, k)
			}
		case []any:
			for _, e := range env {
				k, _, _ := strings.Cut(fmt.Sprint(e), "=")
				names = append(names, k)
			}
		}
		for _, k := range names {
			if secretish.MatchString(k) {
				t.Errorf("environment variable %s looks like a secret", k)
			}
		}
	})
	t.Run("docker.yaml's proxy example uses the secret", func(t *testing.T) {
		// The commented-out proxy section of docker.yaml, uncommented, is
		// YAML whose TLS key is where compose mounts the secret, and whose
		// access log is on the state volume (/var/log is read-only).
		var block strings.Builder
		in := false
		for _, l := range strings.Split(imgRead(t, "configs/docker.yaml"), "\n") {
			if strings.HasPrefix(l, "#proxy:") {
				in = true
			}
			if in && !strings.HasPrefix(l, "#") {
				break
			}
			if in {
				block.WriteString(l[1:] + "\n")
			}
		}
		var ex struct {
			Proxy struct {
				TLS struct {
					Key string `yaml:"key"`
				} `yaml:"tls"`
				AccessLog string `yaml:"access_log"`
			} `yaml:"proxy"`
		}
		if err := yaml.Unmarshal([]byte(block.String()), &ex); err != nil {
			t.Fatalf("the proxy example in docker.yaml is not YAML once uncommented: %v\n%s", err, block.String())
		}
		top, _ := doc["secrets"].(map[string]any)
		found := false
		for name := range top {
			found = found || ex.Proxy.TLS.Key == "/run/secrets/"+name
		}
		if !found {
			t.Errorf("proxy example's tls key is %q, not one of compose's secrets %v", ex.Proxy.TLS.Key, slices.Collect(maps.Keys(top)))
		}
		if !strings.HasPrefix(ex.Proxy.AccessLog, shipped.StateDir+"/") {
			t.Errorf("proxy example's access_log %q is not under state_dir %s", ex.Proxy.AccessLog, shipped.StateDir)
		}
	})
	t.Run("configuration mounted where moat run looks", func(t *testing.T) {
		top, _ := doc["configs"].(map[string]any)
		found := false
		list, _ := svc["configs"].([]any)
		for _, c := range list {
			m, _ := c.(map[string]any)
			if m["target"] != configs.SystemPath {
				continue
			}
			src, _ := top[fmt.Sprint(m["source"])].(map[string]any)
			if src["file"] == "./docker.yaml" {
				found = true
			}
		}
		if !found {
			t.Errorf("docker.yaml is not mounted at %s", configs.SystemPath)
		}
	})
	t.Run("healthcheck through the CLI", func(t *testing.T) {
		hc, _ := svc["healthcheck"].(map[string]any)
		if hc == nil {
			t.Fatal("no healthcheck")
		}
		if d, _ := hc["disable"].(bool); d {
			t.Fatal("healthcheck disabled")
		}
		argv := imgStrings(hc["test"])
		if len(argv) < 3 || argv[0] != "CMD" || path.Base(argv[1]) != "moat" || argv[2] != "status" {
			t.Errorf("healthcheck test %q, want [CMD, …/moat, status]", argv)
		}
	})
	t.Run("restart policy", func(t *testing.T) {
		r := fmt.Sprint(svc["restart"])
		if d, ok := svc["deploy"].(map[string]any); ok && d["restart_policy"] != nil {
			r = "deploy"
		}
		if !slices.Contains([]string{"always", "unless-stopped", "on-failure", "deploy"}, r) && !strings.HasPrefix(r, "on-failure:") {
			t.Errorf("restart = %v", svc["restart"])
		}
	})
	t.Run("built from this repository's Dockerfile", func(t *testing.T) {
		b, _ := svc["build"].(map[string]any)
		if b["context"] != ".." || b["dockerfile"] != "Dockerfile" {
			t.Errorf("build = %v", svc["build"])
		}
	})
}

// ---- moat.service ----

// imgUnit parses a systemd unit: section → key → values (repeated keys
// accumulate; an empty assignment resets, as systemd does).
func imgUnit(t *testing.T) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, l := range strings.Split(imgRead(t, "configs/moat.service"), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("moat.service:%d: %q is not key=value in a section", i+1, l)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if v == "" {
				delete(out[section], k)
				continue
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	unit := imgUnit(t)
	svc := unit["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	one := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	words := func(k string) []string {
		var out []string
		for _, v := range svc[k] {
			out = append(out, strings.Fields(v)...)
		}
		slices.Sort(out)
		return out
	}
	equal := map[string]string{
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"RestrictSUIDSGID":        "yes",
		"StateDirectory":          "moat",
		"RuntimeDirectory":        "moat",
		"LogsDirectory":           "moat",
		"DynamicUser":             "yes",
		"PrivateMounts":           "yes",
		"PrivateIPC":              "yes",
		"ProtectProc":             "invisible",
		"ProcSubset":              "pid",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictRealtime":        "yes",
		"RemoveIPC":               "yes",
		"KeyringMode":             "private",
		"SystemCallArchitectures": "native",
		"SystemCallErrorNumber":   "EPERM",
		"UMask":                   "0077",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	for k, want := range equal {
		t.Run(k, func(t *testing.T) {
			if got := one(k); got != want {
				t.Errorf("%s=%q, want %q", k, got, want)
			}
		})
	}
	caps := []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		t.Run(k, func(t *testing.T) {
			if got := words(k); !slices.Equal(got, caps) {
				t.Errorf("%s = %v, want %v", k, got, caps)
			}
		})
	}
	t.Run("RestrictAddressFamilies", func(t *testing.T) {
		want := []string{"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"}
		if got := words("RestrictAddressFamilies"); !slices.Equal(got, want) {
			t.Errorf("RestrictAddressFamilies = %v, want %v (netlink programs nftables)", got, want)
		}
	})
	t.Run("SystemCallFilter", func(t *testing.T) {
		if !slices.Contains(words("SystemCallFilter"), "@system-service") || !slices.Contains(svc["SystemCallFilter"], "~@privileged") {
			t.Errorf("SystemCallFilter = %v, want @system-service and ~@privileged", svc["SystemCallFilter"])
		}
	})
	t.Run("reads the host's logs through group adm", func(t *testing.T) {
		if !slices.Contains(words("SupplementaryGroups"), "adm") {
			t.Errorf("SupplementaryGroups = %v", svc["SupplementaryGroups"])
		}
	})
	t.Run("stays in the host's network and user namespaces", func(t *testing.T) {
		// Its nftables table must be the host's, and capabilities inside a
		// private user namespace would not reach the host's network.
		for _, k := range []string{"PrivateNetwork", "PrivateUsers"} {
			if v := one(k); v != "" && v != "no" && v != "false" {
				t.Errorf("%s=%s", k, v)
			}
		}
	})
	t.Run("runs moat run", func(t *testing.T) {
		argv := strings.Fields(one("ExecStart"))
		if len(argv) < 2 || path.Base(argv[0]) != "moat" || argv[1] != "run" {
			t.Errorf("ExecStart=%s", one("ExecStart"))
		}
	})
	t.Run("defaults land in the unit's directories", func(t *testing.T) {
		// A non-root moat picks state_dir and socket from XDG variables:
		// the unit's Environment= must point them at StateDirectory= and
		// RuntimeDirectory=, the only places it may write.
		env := configs.Env{Root: false, UID: 61000, Home: "/"}
		for _, v := range svc["Environment"] {
			words, err := imgShellFields(v, nil)
			if err != nil {
				t.Fatalf("Environment=%s: %v", v, err)
			}
			for _, w := range words {
				k, val, _ := strings.Cut(w, "=")
				switch k {
				case "XDG_STATE_HOME":
					env.XDGStateHome = val
				case "XDG_RUNTIME_DIR":
					env.XDGRuntimeDir = val
				}
			}
		}
		if got, want := configs.DefaultStateDir(env), "/var/lib/"+one("StateDirectory"); got != want {
			t.Errorf("state_dir defaults to %s, want %s", got, want)
		}
		if got, want := configs.DefaultSocket(env), "/run/"+one("RuntimeDirectory")+"/moat.sock"; got != want {
			t.Errorf("socket defaults to %s, want %s", got, want)
		}
	})
	t.Run("systemd-analyze", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			testkit.Missing(t, "systemd-analyze is not installed")
		}
		// verify checks that ExecStart's binary exists: point it at this
		// test binary, the rest of the unit unchanged.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(imgRead(t, "configs/moat.service"), "ExecStart=/usr/local/bin/moat", "ExecStart="+self, 1)
		unitPath := filepath.Join(t.TempDir(), "moat.service")
		if err := os.WriteFile(unitPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", unitPath).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("moat.service")) {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", unitPath).CombinedOutput()
		if err != nil {
			testkit.Missing(t, "systemd-analyze security --offline is not supported here: %v", err)
		}
		m := regexp.MustCompile(`Overall exposure level for moat\.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security: exposure %.1f", score)
		if score > 2.0 {
			t.Errorf("exposure level %.1f, want at most 2.0 (it was 1.8)", score)
		}
	})
}

// ---- the static build ----

// TestStaticBuild runs the Dockerfile's own go build line (read from the
// Dockerfile, so the two cannot drift) and checks the binary: static, built
// without the build machine's paths, stripped, and stamped.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("a full build of moat: skipped with -short")
	}
	root := imgRoot(t)
	d := imgDockerfile(t)
	run := d.buildRun(t)

	// Drop RUN's own flags (--mount=…), then read the shell command.
	args := run.args
	for strings.HasPrefix(args, "--") {
		_, args, _ = strings.Cut(args, " ")
		args = strings.TrimSpace(args)
	}
	const stamp = "v9.8.7-imagetest"
	words, err := imgShellFields(args, map[string]string{
		"VERSION":    stamp,
		"TARGETOS":   runtime.GOOS,
		"TARGETARCH": runtime.GOARCH,
	})
	if err != nil {
		t.Fatalf("Dockerfile line %d: %v (keep the build one simple command)", run.line, err)
	}
	var env []string
	for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile line %d runs %q, want go build", run.line, words)
	}
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Fatalf("the build's environment %q lacks CGO_ENABLED=0", env)
	}
	bin := filepath.Join(t.TempDir(), "moat")
	o := slices.Index(words, "-o")
	if o < 0 || o+1 >= len(words) {
		t.Fatalf("no -o in %q", words)
	}
	words[o+1] = bin

	gobin, err := exec.LookPath("go")
	if err != nil {
		testkit.Missing(t, "no go command on PATH")
	}
	goroot, err := exec.Command(gobin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	cmd := exec.Command(gobin, words[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	t.Logf("go %s (env %s)", strings.Join(words[1:], " "), strings.Join(env, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Run("static", func(t *testing.T) {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("has a PT_INTERP program header: dynamically linked")
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		if len(libs) > 0 {
			t.Errorf("DT_NEEDED libraries %v", libs)
		}
	})
	t.Run("stripped", func(t *testing.T) {
		for _, s := range f.Sections {
			if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				t.Errorf("has section %s: not built with -s -w", s.Name)
			}
		}
	})
	t.Run("no build paths", func(t *testing.T) {
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{root, strings.TrimSpace(string(goroot))} {
			if p != "" && bytes.Contains(data, []byte(p+"/")) {
				t.Errorf("binary contains the path %s: not built with -trimpath", p)
			}
		}
	})
	t.Run("version stamped", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(out), "moat "+stamp+"\n"; got != want {
			t.Errorf("moat version = %q, want %q", got, want)
		}
	})
}

// ---- capabilities under no-new-privileges ----

// imgCapNumbers are the capabilities the image's files may name.
var imgCapNumbers = map[string]uint{
	"NET_ADMIN":        unix.CAP_NET_ADMIN,
	"NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"NET_RAW":          unix.CAP_NET_RAW,
	"SYS_ADMIN":        unix.CAP_SYS_ADMIN,
	"DAC_READ_SEARCH":  unix.CAP_DAC_READ_SEARCH,
	"DAC_OVERRIDE":     unix.CAP_DAC_OVERRIDE,
}

func imgCapMask(t *testing.T, names []string) uint64 {
	t.Helper()
	var m uint64
	for _, n := range names {
		c, ok := imgCapNumbers[n]
		if !ok {
			t.Fatalf("capability %s is not in imgCapNumbers", n)
		}
		m |= 1 << c
	}
	return m
}

// The on-disk format of security.capability (linux/capability.h).
const (
	imgVFSCapRevision2 = 0x02000000
	imgVFSCapEffective = 0x000001
)

// imgSetFileCaps writes path's security.capability attribute as setcap
// NAMES=ep does (VFS_CAP_REVISION_2, effective flag, permitted = mask).
func imgSetFileCaps(path string, mask uint64) error {
	buf := make([]byte, 20)
	binary.LittleEndian.PutUint32(buf[0:], imgVFSCapRevision2|imgVFSCapEffective)
	binary.LittleEndian.PutUint32(buf[4:], uint32(mask))      // permitted, low word
	binary.LittleEndian.PutUint32(buf[12:], uint32(mask>>32)) // permitted, high word
	return unix.Setxattr(path, "security.capability", buf, 0)
}

// TestImageCapHelper is not a test: TestFileCapsUnderNoNewPrivileges runs
// the test binary with MOAT_IMG_CAP_ROLE set, first to start a process the
// way runc starts a non-root container's (role runc), which then execs a
// copy carrying the image's file capabilities (role print).
func TestImageCapHelper(t *testing.T) {
	switch os.Getenv("MOAT_IMG_CAP_ROLE") {
	case "runc":
		imgCapRunc()
	case "print":
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println("read status:", err)
			os.Exit(3)
		}
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") || strings.HasPrefix(l, "Uid") {
				fmt.Println(l)
			}
		}
		if p := os.Getenv("MOAT_IMG_CAP_READ"); p != "" {
			if _, err := os.ReadFile(p); err != nil {
				fmt.Println("Read:", errors.Unwrap(err))
			} else {
				fmt.Println("Read: ok")
			}
		}
		os.Exit(0)
	}
}

// imgCapRunc does what runc does before it execs a container's entrypoint
// as a non-root user, on one thread: bounding set cut to the container's
// capabilities, keep-caps, setresuid/setresgid, the capability sets the
// engine asked for (MOAT_IMG_CAP_KEEP=1: the added capabilities stay
// permitted and effective, as Docker ≥ 25.0 asks; otherwise empty, as
// Docker 18.06–24.0.5 asked), no_new_privs, then execve.
func imgCapRunc() {
	runtime.LockOSThread()
	fail := func(what string, err error) {
		fmt.Printf("runc %s: %v\n", what, err)
		os.Exit(4)
	}
	bound, err := strconv.ParseUint(os.Getenv("MOAT_IMG_CAP_BOUND"), 10, 64)
	if err != nil {
		fail("bound", err)
	}
	for c := uint(0); c <= unix.CAP_LAST_CAP; c++ {
		if bound&(1<<c) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				fail("capbset drop", err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		fail("keepcaps", err)
	}
	// Raw, so only this thread changes (unix.Setresuid changes them all).
	// MOAT_IMG_CAP_UID=0 stays root, as compose.yaml's user 0:0.
	if os.Getenv("MOAT_IMG_CAP_UID") != "0" {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 65532, 65532, 65532); e != 0 {
			fail("setresgid", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 65532, 65532, 65532); e != 0 {
			fail("setresuid", e)
		}
	}
	var set uint64
	if os.Getenv("MOAT_IMG_CAP_KEEP") == "1" {
		set = bound
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(set), Permitted: uint32(set)},
		{Effective: uint32(set >> 32), Permitted: uint32(set >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		fail("capset", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("no_new_privs", err)
	}
	target := os.Getenv("MOAT_IMG_CAP_EXEC")
	env := []string{"MOAT_IMG_CAP_ROLE=print", "MOAT_IMG_CAP_READ=" + os.Getenv("MOAT_IMG_CAP_READ")}
	err = unix.Exec(target, []string{target, "-test.run=^TestImageCapHelper$"}, env)
	fail("execve", err)
}

// TestFileCapsUnderNoNewPrivileges checks the capability design of the
// Dockerfile against the running kernel: a binary carrying the Dockerfile's
// file capabilities, started as uid 65532 with no_new_privs in a container
// whose bounding set is compose's cap_add, gets exactly those capabilities
// when the engine keeps them permitted (Docker ≥ 25.0, moby/moby#45511),
// none when it empties them (older engines), and fails to start if the
// file asks for one the container was not given.
func TestFileCapsUnderNoNewPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root: writes file capabilities and changes uid")
	}
	d := imgDockerfile(t)
	if !regexp.MustCompile(`setcap\s+[a-z_,]+=ep\s`).MatchString(imgRead(t, "Dockerfile")) {
		t.Fatal("the Dockerfile's setcap does not grant =ep (permitted and effective)")
	}
	fileCaps := imgCapMask(t, d.fileCaps(t))
	bound := imgCapMask(t, imgCapSet(imgComposeService(t)["cap_add"]))
	// Playing runc takes what runc has: the container's capabilities, and
	// the power to set file capabilities, drop the bounding set and change
	// uid. A CI container may lack some.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	need := bound | 1<<unix.CAP_SETPCAP | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID | 1<<unix.CAP_SETFCAP
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			have, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if have&need != need {
				testkit.Missing(t, "needs root with capabilities %016x, has %016x", need, have)
			}
		}
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// uid 65532 must reach the copy: open up the temporary directories.
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyWith := func(name string, mask uint64) string {
		data, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := imgSetFileCaps(p, mask); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				testkit.Missing(t, "the filesystem of %s has no security xattrs: %v", dir, err)
			}
			t.Fatal(err)
		}
		return p
	}
	imageBin := copyWith("moat-caps", fileCaps)

	runc := func(t *testing.T, target string, keep bool, env ...string) (map[string]string, error) {
		cmd := exec.Command(self, "-test.run=^TestImageCapHelper$")
		cmd.Dir = dir
		k := "0"
		if keep {
			k = "1"
		}
		cmd.Env = []string{"MOAT_IMG_CAP_ROLE=runc", "MOAT_IMG_CAP_KEEP=" + k,
			"MOAT_IMG_CAP_BOUND=" + strconv.FormatUint(bound, 10), "MOAT_IMG_CAP_EXEC=" + target}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		got := map[string]string{}
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				got[k] = strings.TrimSpace(v)
			}
		}
		if err != nil {
			return got, fmt.Errorf("%v: %s", err, out)
		}
		return got, nil
	}
	hex := func(m uint64) string { return fmt.Sprintf("%016x", m) }

	t.Run("engine keeps added capabilities permitted", func(t *testing.T) {
		got, err := runc(t, imageBin, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("as the image's entrypoint: %v", got)
		if got["NoNewPrivs"] != "1" || !strings.HasPrefix(got["Uid"], "65532") {
			t.Fatalf("not a non-root no_new_privs process: %v", got)
		}
		if got["CapEff"] != hex(bound) || got["CapPrm"] != hex(bound) {
			t.Errorf("CapEff %s, CapPrm %s, want %s (compose's cap_add)", got["CapEff"], got["CapPrm"], hex(bound))
		}
		if got["CapAmb"] != hex(0) {
			t.Errorf("CapAmb %s: nothing should rely on ambient capabilities", got["CapAmb"])
		}
	})
	t.Run("older engine empties them: nothing granted", func(t *testing.T) {
		got, err := runc(t, imageBin, false)
		if err != nil {
			t.Fatal(err)
		}
		if got["CapEff"] != hex(0) {
			t.Errorf("CapEff %s, want none: no_new_privs should refuse file capabilities not already permitted", got["CapEff"])
		}
	})
	t.Run("compose's uid 0 gets the same two and no more", func(t *testing.T) {
		got, err := runc(t, imageBin, true, "MOAT_IMG_CAP_UID=0")
		if err != nil {
			t.Fatal(err)
		}
		if got["NoNewPrivs"] != "1" || !strings.HasPrefix(got["Uid"], "0\t") {
			t.Fatalf("not a root no_new_privs process: %v", got)
		}
		if got["CapEff"] != hex(bound) || got["CapPrm"] != hex(bound) || got["CapBnd"] != hex(bound) {
			t.Errorf("uid 0: CapEff %s, CapPrm %s, CapBnd %s, want %s", got["CapEff"], got["CapPrm"], got["CapBnd"], hex(bound))
		}
	})
	t.Run("only uid 0 reads Docker's container files", func(t *testing.T) {
		// Docker keeps containers/<id>/ root:root 0710 and writes
		// config.v2.json root:root 0600: with no CAP_DAC_* (cap_drop: ALL),
		// uid 65532 cannot read it and uid 0 reads it by ownership. This is
		// why compose.yaml runs moat as 0:0.
		cdir := filepath.Join(dir, "containers", strings.Repeat("ab", 32))
		if err := os.MkdirAll(cdir, 0o710); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Dir(cdir), cdir} {
			if err := os.Chmod(p, 0o710); err != nil {
				t.Fatal(err)
			}
		}
		cfgFile := filepath.Join(cdir, "config.v2.json")
		if err := os.WriteFile(cfgFile, []byte(`{"Name":"/web"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		read := "MOAT_IMG_CAP_READ=" + cfgFile
		nonroot, err := runc(t, imageBin, true, read)
		if err != nil {
			t.Fatal(err)
		}
		root, err := runc(t, imageBin, true, read, "MOAT_IMG_CAP_UID=0")
		if err != nil {
			t.Fatal(err)
		}
		if nonroot["Read"] != "permission denied" {
			t.Errorf("uid 65532 reading config.v2.json: %q, want permission denied", nonroot["Read"])
		}
		if root["Read"] != "ok" {
			t.Errorf("uid 0 without CAP_DAC_*: %q, want ok", root["Read"])
		}
	})
	t.Run("a file capability beyond cap_add fails the start", func(t *testing.T) {
		extra := copyWith("moat-extra", fileCaps|1<<unix.CAP_SYS_ADMIN)
		if _, err := runc(t, extra, true); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
			t.Errorf("exec of a binary asking for CAP_SYS_ADMIN outside the bounding set: %v, want operation not permitted", err)
		}
	})
}
