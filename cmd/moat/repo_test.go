package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// TestEveryPackageHasADocComment is a repository rule: every package says
// what it owns and what it must not do, in a package comment.
func TestEveryPackageHasADocComment(t *testing.T) {
	root := filepath.Join("..", "..")
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("found only %d package directories under %s", len(dirs), root)
	}
	for dir := range dirs {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", dir, err)
		}
		for name, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				if f.Doc != nil && len(strings.TrimSpace(f.Doc.Text())) > 20 {
					documented = true
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no package doc comment", name, dir)
			}
		}
	}
}

// TestEveryFuzzTargetRunsInCI is a repository rule: every fuzz target has a
// budget in .ci/run, so none is written and then never run.
func TestEveryFuzzTargetRunsInCI(t *testing.T) {
	root := filepath.Join("..", "..")
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	budgets := map[string]bool{}
	for line := range strings.SplitSeq(string(ci), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "fuzz" {
			budgets[filepath.Clean(f[1])+" "+f[2]] = true
		}
	}
	targets := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !strings.HasPrefix(fd.Name.Name, "Fuzz") {
				continue
			}
			targets++
			if !budgets[rel+" "+fd.Name.Name] {
				t.Errorf("%s in ./%s has no budget in .ci/run (a line: fuzz ./%s %s COUNTx)", fd.Name.Name, rel, rel, fd.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if targets < 20 {
		t.Errorf("found %d fuzz targets, want the repository's (more than 20)", targets)
	}
}

// importRules are the "must not" sentences of the package doc comments,
// as imports: a package that breaks one fails TestImportRules. deny names
// packages that must not be among the package's dependencies, direct or
// not (moat's own packages by their path under the module, with their
// subpackages, except the settings packages ending in "config", which are
// plain data).
var importRules = []struct {
	pkg, why string
	deny     []string
}{
	{"filters", "filters match lines and must not decide bans", []string{"jail", "firewall", "proxy", "net/http"}},
	{"sources", "what sources share must not pull in any of moat's packages", []string{"filters", "jail", "firewall", "proxy", "configs", "sources/follow", "sources/docker", "internal"}},
	{"sources/journal", "the journal source must not match lines nor decide bans, and imports no moat package but sources and internal/pytext", []string{"filters", "jail", "firewall", "proxy", "configs", "pipeline", "audit", "fail2ban", "internal/netaddr", "internal/jsonerr", "sources/follow", "sources/docker", "net/http"}},
	{"internal/pytext", "Python's text decoding must not import any other moat package", []string{"filters", "jail", "firewall", "proxy", "configs", "pipeline", "audit", "fail2ban", "sources", "internal/netaddr", "internal/jsonerr"}},
	{"sources/follow", "the follower must not interpret the lines it delivers", []string{"filters", "jail", "firewall", "proxy", "net/http"}},
	{"sources/docker", "it only reads files and never talks to the Docker daemon", []string{"jail", "firewall", "proxy", "net/http", "os/exec"}},
	{"firewall", "firewalls must not know jails' thresholds or windows", []string{"jail", "filters", "proxy", "configs"}},
	{"firewall/nftables", "firewalls must not know jails' thresholds or windows", []string{"jail", "filters", "proxy", "configs", "net/http"}},
	{"firewall/none", "the none backend must not touch the kernel", []string{"jail", "filters", "proxy", "firewall/nftables", "github.com/google/nftables", "github.com/mdlayher/netlink"}},
	{"jail", "the jail engine must not know nftables or HTTP routing", []string{"firewall/nftables", "github.com/google/nftables", "proxy", "net/http", "filters", "sources/follow", "sources/docker"}},
	{"jail/control", "the control API must not decide bans or reach the kernel itself", []string{"firewall/nftables", "github.com/google/nftables", "proxy"}},
	{"pipeline", "the pipeline must not decide bans, touch the firewall, read configuration or serve", []string{"firewall/nftables", "firewall/none", "configs", "proxy", "jail/control", "net/http", "github.com/google/nftables"}},
	{"fail2ban/ini", "the INI dialect must not know filters or jails, nor any other moat package", []string{"filters", "jail", "configs", "firewall", "proxy", "sources", "pipeline", "audit", "net/http", "os/exec"}},
	{"fail2ban/emulate", "the emulation must not decide bans or touch the firewall: fail2ban-client's commands go through jail/control's client", []string{"proxy", "firewall/nftables", "firewall/none", "github.com/google/nftables", "github.com/mdlayher/netlink", "sources/follow", "sources/docker", "pipeline", "configs"}},
	{"audit", "the audit only reads files: it never talks to the Docker daemon, runs nothing and changes nothing", []string{"jail", "firewall", "proxy", "configs", "filters", "pipeline", "net/http", "os/exec"}},
	{"proxy", "the proxy never writes to the firewall; it asks the jail engine", []string{"firewall", "jail", "filters"}},
	{"proxy/proxyconfig", "the proxy's settings are plain data: no proxy, no network", []string{"proxy", "jail", "net/http", "github.com/caddyserver/certmagic", "go.uber.org/zap"}},
	{"jail/jailconfig", "a jail's settings are plain data: no engine, no store", []string{"jail", "firewall/nftables", "go.etcd.io/bbolt", "github.com/hashicorp/go-memdb"}},
	{"configs", "configuration must not touch the firewall nor pull in the proxy or the jail engine", []string{"firewall/nftables", "github.com/google/nftables", "github.com/mdlayher/netlink", "proxy", "jail", "pipeline", "net/http", "github.com/caddyserver/certmagic", "go.uber.org/zap", "go.etcd.io/bbolt"}},
	{"configs/fail2ban", "reading fail2ban's files must not touch the firewall nor pull in the proxy or the jail engine", []string{"firewall/nftables", "github.com/google/nftables", "github.com/mdlayher/netlink", "proxy", "jail", "pipeline", "net/http", "go.etcd.io/bbolt"}},
}

// testOnly are packages made for tests and tools: no program package may
// import them.
var testOnly = []string{"internal/testkit", "firewall/nftables/nftest", "filters/testgen"}

// TestImportRules checks importRules and testOnly against `go list`.
func TestImportRules(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testkit.Missing(t, "no go command on PATH: %v", err)
	}
	const mod = "github.com/moatproj/moat/"
	root := filepath.Join("..", "..")
	// own says whether a denied name is one of moat's packages (its
	// subpackages are denied with it); others are matched whole.
	own := func(p string) bool { return !strings.Contains(p, ".") && p != "net/http" && p != "os/exec" }
	for _, r := range importRules {
		cmd := exec.Command(goBin, "list", "-deps", "./"+r.pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v", r.pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list -deps ./%s listed %q", r.pkg, deps)
		}
		for _, d := range r.deny {
			for _, dep := range deps {
				hit := dep == d
				if rel, ok := strings.CutPrefix(dep, mod); ok && own(d) {
					hit = rel != r.pkg && (rel == d || strings.HasPrefix(rel, d+"/") && !strings.HasSuffix(rel, "config"))
				}
				if hit {
					t.Errorf("%s depends on %s, which it must not: %s", r.pkg, dep, r.why)
				}
			}
		}
	}
	cmd := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		if strings.HasPrefix(pkg, "bench/") || slices.Contains(testOnly, pkg) {
			continue
		}
		for _, imp := range f[1:] {
			if slices.Contains(testOnly, strings.TrimPrefix(imp, mod)) {
				t.Errorf("%s imports %s, which is for tests only", pkg, imp)
			}
		}
	}
}
