package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// spec describes a container for the fake Docker data root.
type spec struct {
	name    string // without '/'
	labels  map[string]string
	driver  string
	running bool
	started bool // LogPath set, as after a first start with json-file
}

// fakeID returns a stable 64-hex-digit id for a name.
func fakeID(name string) string {
	s := sha256.Sum256([]byte(name))
	return hex.EncodeToString(s[:])
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeAtomic writes a file the way Docker does: a temporary file renamed
// over the old one.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeContainer writes root/containers/<id>/{config.v2.json,hostconfig.json}
// for s and returns the id.
func writeContainer(t *testing.T, root string, id string, s spec) string {
	t.Helper()
	dir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(dir, 0o710); err != nil {
		t.Fatal(err)
	}
	labels, _ := json.Marshal(s.labels)
	logPath := ""
	if s.started && s.driver == DriverJSONFile {
		logPath = "/var/lib/docker/containers/" + id + "/" + id + "-json.log"
	}
	cfg := strings.NewReplacer(
		"@ID@", id,
		"@NAME@", "/"+s.name,
		"@LABELS@", string(labels),
		"@RUNNING@", strconv.FormatBool(s.running),
		"@LOGPATH@", logPath,
	).Replace(fixture(t, "config.v2.json"))
	hc := strings.ReplaceAll(fixture(t, "hostconfig.json"), "@DRIVER@", s.driver)
	writeAtomic(t, filepath.Join(dir, "config.v2.json"), cfg)
	writeAtomic(t, filepath.Join(dir, "hostconfig.json"), hc)
	return id
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	web := writeContainer(t, root, fakeID("web"), spec{name: "web", driver: "json-file", running: true, started: true,
		labels: map[string]string{"com.example.role": "frontend", "com.docker.compose.project": "shop"}})
	db := writeContainer(t, root, fakeID("db"), spec{name: "db", driver: "journald", labels: map[string]string{}})
	fresh := writeContainer(t, root, fakeID("fresh"), spec{name: "fresh", driver: "json-file"})
	garbled := writeContainer(t, root, fakeID("garbled"), spec{name: "garbled", driver: "json-file"})
	noHost := writeContainer(t, root, fakeID("nohost"), spec{name: "nohost", driver: "json-file"})
	wrongID := writeContainer(t, root, fakeID("wrongid"), spec{name: "wrongid", driver: "json-file"})

	garbledCfg := filepath.Join(root, "containers", garbled, "config.v2.json")
	if err := os.WriteFile(garbledCfg, []byte(`{"ID":"`+garbled+`","Name":"/garb`), 0o600); err != nil {
		t.Fatal(err)
	}
	noHostCfg := filepath.Join(root, "containers", noHost, "hostconfig.json")
	if err := os.Remove(noHostCfg); err != nil {
		t.Fatal(err)
	}
	// A config.v2.json in the wrong directory (copied by hand, say).
	wrongCfg := filepath.Join(root, "containers", wrongID, "config.v2.json")
	b, _ := os.ReadFile(filepath.Join(root, "containers", web, "config.v2.json"))
	if err := os.WriteFile(wrongCfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Things that are not containers are ignored.
	if err := os.MkdirAll(filepath.Join(root, "containers", "not-an-id"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "containers", strings.Repeat("a", 64)), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	cs, errs := Scan(root)

	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	if want := []string{"db", "fresh", "web"}; !slices.Equal(names, want) {
		t.Fatalf("Scan names = %q, want %q", names, want)
	}
	byName := map[string]Container{}
	for _, c := range cs {
		byName[c.Name] = c
	}
	w := byName["web"]
	created, _ := time.Parse(time.RFC3339Nano, "2026-11-27T02:00:00.5Z")
	if w.ID != web || !w.Running || w.LogDriver != "json-file" || !w.Created.Equal(created) ||
		w.LogPath != "/var/lib/docker/containers/"+web+"/"+web+"-json.log" ||
		w.Labels["com.example.role"] != "frontend" || len(w.Labels) != 2 {
		t.Errorf("web = %+v", w)
	}
	if d := byName["db"]; d.ID != db || d.Running || d.LogDriver != "journald" || d.Labels == nil || len(d.Labels) != 0 {
		t.Errorf("db = %+v", d)
	}
	if f := byName["fresh"]; f.ID != fresh || f.LogPath != "" {
		t.Errorf("fresh = %+v", f)
	}
	// What the audit judges, as the fixture has it.
	if w.User != "" || !slices.Equal(w.ExposedPorts, []string{"80/tcp"}) || w.Networks["bridge"].IPAddress != "172.17.0.2" ||
		w.Host.NetworkMode != "bridge" || w.Host.Privileged || w.Host.PidsLimit != nil || w.Host.Memory != 0 ||
		!slices.Equal(w.Host.PortBindings["80/tcp"], []PortBinding{{HostIP: "", HostPort: "8080"}}) {
		t.Errorf("web's settings = %+v", w)
	}

	wantErrs := []string{garbledCfg, noHostCfg, wrongCfg}
	if len(errs) != len(wantErrs) {
		t.Fatalf("Scan errs = %v, want one naming each of %q", errs, wantErrs)
	}
	for _, f := range wantErrs {
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), f)
		}
		if !found {
			t.Errorf("no error names %s; errs = %v", f, errs)
		}
	}
	byID := map[string]*ContainerError{}
	for _, err := range errs {
		var ce *ContainerError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is not a *ContainerError", err)
		}
		byID[ce.ID] = ce
	}
	if ce := byID[garbled]; ce == nil || ce.File != "config.v2.json" || !ce.Decoding || ce.Dir != filepath.Dir(garbledCfg) ||
		!strings.Contains(ce.Err.Error(), "invalid JSON at line 1, column ") {
		t.Errorf("garbled: %#v, want a decoding error of config.v2.json naming the line and column", ce)
	}
	if ce := byID[noHost]; ce == nil || ce.File != "hostconfig.json" || ce.Decoding || !errors.Is(ce, fs.ErrNotExist) {
		t.Errorf("nohost: %#v, want a read error of hostconfig.json", ce)
	}
	if ce := byID[wrongID]; ce == nil || ce.File != "config.v2.json" || !ce.Decoding || !strings.Contains(ce.Err.Error(), "does not match its directory") {
		t.Errorf("wrongid: %#v, want a mismatch in config.v2.json", ce)
	}
}

// TestReadHostConfigTypeError: a value of the wrong type in hostconfig.json
// names the key, the type it must have and the line.
func TestReadHostConfigTypeError(t *testing.T) {
	root := t.TempDir()
	id := writeContainer(t, root, fakeID("web"), spec{name: "web", driver: "json-file"})
	hc := filepath.Join(root, "containers", id, "hostconfig.json")
	writeAtomic(t, hc, "{\n\"Privileged\": \"yes\"\n}")
	_, errs := Scan(root)
	want := "parse container host config " + hc + `: line 2: "Privileged" must be true or false, not string`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("Scan errs = %v, want [%s]", errs, want)
	}
}

func TestScanMissingRoot(t *testing.T) {
	cs, errs := Scan(filepath.Join(t.TempDir(), "nope"))
	if len(cs) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "nope") {
		t.Errorf("Scan(missing) = %v, %v; want no containers and one error naming the directory", cs, errs)
	}
}

func TestJSONLogPath(t *testing.T) {
	id := fakeID("web")
	c := Container{ID: id, LogPath: "/elsewhere/" + id + "-json.log"}
	got := JSONLogPath("/mnt/docker", c)
	if want := "/mnt/docker/containers/" + id + "/" + id + "-json.log"; got != want {
		t.Errorf("JSONLogPath = %q, want %q", got, want)
	}
}

func TestDriverProblem(t *testing.T) {
	tests := []struct {
		name   string
		driver string
		want   []string // substrings; none means ""
	}{
		{"json-file", "json-file", nil},
		{"unset means the daemon default", "", nil},
		{"local", "local", []string{"web", "local log driver", `"log-driver": "json-file"`, "daemon.json", "driver: json-file", "recreate"}},
		{"journald: read through the journal", "journald", nil},
		{"none", "none", []string{"web", "disabled", `"log-driver": "json-file"`}},
		{"syslog", "syslog", []string{"web", "syslog log driver", "json-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DriverProblem(Container{ID: fakeID("web"), Name: "web", LogDriver: tt.driver})
			if tt.want == nil {
				if got != "" {
					t.Errorf("DriverProblem(%s) = %q, want \"\"", tt.driver, got)
				}
				return
			}
			if strings.Contains(got, "\n") {
				t.Errorf("DriverProblem(%s) = %q, want one line", tt.driver, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("DriverProblem(%s) = %q, want it to contain %q", tt.driver, got, w)
				}
			}
		})
	}
}
