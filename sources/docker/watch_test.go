package docker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

func names(cs []Container) string {
	var ns []string
	for _, c := range cs {
		ns = append(ns, c.Name)
	}
	return strings.Join(ns, ",")
}

func mustSelectors(t *testing.T, ss ...string) []Selector {
	t.Helper()
	var out []Selector
	for _, s := range ss {
		sel, err := ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sel)
	}
	return out
}

// TestWatcherPicksUpNewContainer runs a Watcher with its default interval
// and checks that a container created after it started, a rename and a
// removal are each reported within 2 s, and that changes to containers no
// selector matches are not reported.
func TestWatcherPicksUpNewContainer(t *testing.T) {
	root := t.TempDir()
	frontend := map[string]string{"com.example.role": "frontend"}
	writeContainer(t, root, fakeID("web"), spec{name: "web", driver: DriverJSONFile, running: true, started: true})
	writeContainer(t, root, fakeID("db"), spec{name: "db", driver: DriverJSONFile, running: true})

	var logBuf testkit.Buffer
	w := &Watcher{
		Root:      root,
		Selectors: mustSelectors(t, "web", "label:com.example.role=frontend"),
		Logger:    slog.New(slog.NewTextHandler(&logBuf, nil)),
	}
	reports := make(chan []Container, 16)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, func(cs []Container) { reports <- cs }) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	const within = 2 * time.Second
	next := func(what string) []Container {
		t.Helper()
		select {
		case cs := <-reports:
			return cs
		case <-time.After(within):
			t.Fatalf("%s: not reported within %v", what, within)
			return nil
		}
	}

	if got := names(next("first poll")); got != "web" {
		t.Fatalf("first report = %q, want web", got)
	}

	// A container no selector matches changes nothing to report; the next
	// report must be the one about api, not an identical set.
	writeContainer(t, root, fakeID("cache"), spec{name: "cache", driver: DriverJSONFile})
	writeContainer(t, root, fakeID("api"), spec{name: "api", driver: DriverJSONFile, labels: frontend, running: true})
	cs := next("new container")
	if got := names(cs); got != "api,web" {
		t.Fatalf("after creating api: %q, want api,web", got)
	}
	if cs[0].ID != fakeID("api") || cs[0].Labels["com.example.role"] != "frontend" {
		t.Errorf("api = %+v", cs[0])
	}

	// Rename: Docker rewrites config.v2.json with the new name.
	writeContainer(t, root, fakeID("api"), spec{name: "api-v2", driver: DriverJSONFile, labels: frontend, running: true})
	if got := names(next("rename")); got != "api-v2,web" {
		t.Fatalf("after renaming api: %q, want api-v2,web", got)
	}

	// A log driver change (recreated in place, as far as moat can tell).
	writeContainer(t, root, fakeID("api"), spec{name: "api-v2", driver: "local", labels: frontend, running: true})
	cs = next("driver change")
	if len(cs) != 2 || cs[0].LogDriver != "local" {
		t.Fatalf("after the driver change: %+v", cs)
	}

	// Removal: Docker removes the container's directory.
	if err := os.RemoveAll(filepath.Join(root, "containers", fakeID("web"))); err != nil {
		t.Fatal(err)
	}
	if got := names(next("removal")); got != "api-v2" {
		t.Fatalf("after removing web: %q, want api-v2", got)
	}

	// Renamed away from every selector.
	writeContainer(t, root, fakeID("api"), spec{name: "api-v3", driver: "local", running: true})
	if got := names(next("unselected")); got != "" {
		t.Fatalf("after api lost its label: %q, want none", got)
	}

	logs := logBuf.String()
	for _, want := range []string{"container selected", "container renamed", "container gone", "container log cannot be read", "local log driver"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestWatcherNilCallback(t *testing.T) {
	if err := (&Watcher{Root: t.TempDir()}).Run(context.Background(), nil); err == nil {
		t.Error("Run(nil) = nil, want an error")
	}
}

// TestScannerReadsOnlyChanged checks that a poll re-reads a container's
// files only when they changed, and that a garbled container is skipped and
// logged once, after it stayed garbled over two polls.
func TestScannerReadsOnlyChanged(t *testing.T) {
	root := t.TempDir()
	writeContainer(t, root, fakeID("web"), spec{name: "web", driver: DriverJSONFile})
	writeContainer(t, root, fakeID("db"), spec{name: "db", driver: DriverJSONFile})
	var logBuf testkit.Buffer
	s := &scanner{dir: ContainersDir(root), cache: map[string]*cached{}, warned: map[string]string{},
		log: slog.New(slog.NewTextHandler(&logBuf, nil))}

	if got := names(s.scan()); got != "db,web" || s.reads != 2 {
		t.Fatalf("first scan = %q with %d reads, want db,web with 2", got, s.reads)
	}
	s.scan()
	if s.reads != 2 {
		t.Fatalf("unchanged files read again: %d reads, want 2", s.reads)
	}
	writeContainer(t, root, fakeID("web"), spec{name: "web2", driver: DriverJSONFile})
	if got := names(s.scan()); got != "db,web2" || s.reads != 3 {
		t.Fatalf("after rename = %q with %d reads, want db,web2 with 3", got, s.reads)
	}

	cfg := filepath.Join(root, "containers", fakeID("db"), "config.v2.json")
	writeAtomic(t, cfg, `{"ID":`)
	if got := names(s.scan()); got != "web2" {
		t.Fatalf("with db garbled = %q, want web2", got)
	}
	if strings.Contains(logBuf.String(), cfg) {
		t.Errorf("garbled file logged after one poll (it may be half-written):\n%s", logBuf.String())
	}
	s.scan()
	s.scan()
	if n := strings.Count(logBuf.String(), cfg); n != 1 {
		t.Errorf("garbled file logged %d times, want once:\n%s", n, logBuf.String())
	}
}

// TestScannerRootAppearsLater covers a host where Docker is installed after
// moat started: the missing directory is logged once, and containers are
// found once it exists.
func TestScannerRootAppearsLater(t *testing.T) {
	root := filepath.Join(t.TempDir(), "docker")
	var logBuf testkit.Buffer
	s := &scanner{dir: ContainersDir(root), cache: map[string]*cached{}, warned: map[string]string{},
		log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	for range 3 {
		if cs := s.scan(); len(cs) != 0 {
			t.Fatalf("scan of a missing root = %v", cs)
		}
	}
	if n := strings.Count(logBuf.String(), "does not exist"); n != 1 {
		t.Errorf("missing root logged %d times, want once:\n%s", n, logBuf.String())
	}
	writeContainer(t, root, fakeID("web"), spec{name: "web", driver: DriverJSONFile})
	if got := names(s.scan()); got != "web" {
		t.Errorf("scan after docker appeared = %q, want web", got)
	}
}
