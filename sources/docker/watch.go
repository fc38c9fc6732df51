package docker

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// DefaultInterval is how often a Watcher polls by default.
const DefaultInterval = time.Second

// Log attribute keys.
const (
	keyErr       = "err"
	keyDir       = "dir"
	keyContainer = "container"
	keyCount     = "containers"
	keyProblem   = "problem"
)

// Watcher polls root/containers and reports the containers matched by any of
// its selectors whenever that set changes: a container created, removed or
// renamed, or whose log path or log driver changed. With the default
// Interval, a change is reported within about a second.
//
// It re-reads a container's JSON files only when their size, mtime or inode
// changed, so a poll costs one directory read and two stats per container.
// It does not use fsnotify: Docker replaces its JSON files by rename, and a
// one-second poll is cheap and works on every filesystem.
type Watcher struct {
	// Root is Docker's data root, such as /var/lib/docker.
	Root string
	// Selectors pick the containers to report.
	Selectors []Selector
	// Interval is the poll period; 0 means DefaultInterval.
	Interval time.Duration
	// Logger receives Info events for containers that appear or go, and Warn
	// events for containers whose files cannot be read (once per problem) or
	// whose log driver moat cannot read. Nil discards.
	Logger *slog.Logger
}

// Run polls until ctx is done, calling changed (from Run's goroutine) with
// the matched containers, sorted by name then id: once after the first poll,
// even if none match, then after every poll where the matched set differs
// from the last one reported. A container whose files cannot be read is left
// out until they can. Run returns nil when ctx is done, and an error only if
// changed is nil. Run must not be called twice at once on one Watcher.
func (w *Watcher) Run(ctx context.Context, changed func([]Container)) error {
	if changed == nil {
		return errors.New("docker watcher: nil callback")
	}
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &scanner{
		dir:    ContainersDir(w.Root),
		cache:  map[string]*cached{},
		log:    log,
		warned: map[string]string{},
	}
	var last []Container
	first := true
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		all := s.scan()
		var matched []Container
		for _, c := range all {
			if MatchAny(w.Selectors, c) {
				matched = append(matched, c)
			}
		}
		if first || !sameSet(last, matched) {
			w.logChanges(log, last, matched, first)
			first = false
			last = matched
			changed(slices.Clone(matched))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// logChanges logs the containers that appeared and went, and the log driver
// problems of those that appeared.
func (w *Watcher) logChanges(log *slog.Logger, old, now []Container, first bool) {
	before := map[string]Container{}
	for _, c := range old {
		before[c.ID] = c
	}
	for _, c := range now {
		o, ok := before[c.ID]
		delete(before, c.ID)
		if ok && o.Name == c.Name && o.LogDriver == c.LogDriver {
			continue
		}
		if !ok {
			log.Info("container selected", keyContainer, c.Name, "id", shortID(c.ID))
		} else if o.Name != c.Name {
			log.Info("container renamed", keyContainer, c.Name, "was", o.Name, "id", shortID(c.ID))
		}
		if p := DriverProblem(c); p != "" {
			log.Warn("container log cannot be read", keyContainer, c.Name, keyProblem, p)
		}
	}
	for _, c := range before {
		log.Info("container gone", keyContainer, c.Name, "id", shortID(c.ID))
	}
	if first {
		log.Info("watching docker containers", keyDir, ContainersDir(w.Root), keyCount, len(now))
	}
}

// sameSet reports whether a and b (sorted alike) hold the same containers
// with the same names, labels, log paths and drivers.
func sameSet(a, b []Container) bool {
	return slices.EqualFunc(a, b, func(x, y Container) bool {
		return x.ID == y.ID && x.Name == y.Name && x.LogPath == y.LogPath &&
			x.LogDriver == y.LogDriver && maps.Equal(x.Labels, y.Labels)
	})
}

// scanner reads containers, keeping what it read last so that unchanged
// files are not read again. Not safe for concurrent use.
type scanner struct {
	dir   string
	cache map[string]*cached // by id
	log   *slog.Logger
	// warned holds, by file or directory, the last problem logged, so each
	// problem is logged once; pendingErr holds problems seen once, so that a
	// container caught half-written is not reported.
	warned     map[string]string
	pendingErr map[string]string
	reads      int // containers read, for tests
}

type cached struct {
	cfg, hc fileStamp
	c       Container
	err     error
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
	ok    bool
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// scan returns the readable containers, sorted by name then id.
func (s *scanner) scan() []Container {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.problem(s.dir, "cannot read docker containers directory", err)
		clear(s.cache)
		return nil
	}
	s.resolved(s.dir)
	seen := make(map[string]bool, len(ents))
	var cs []Container
	for _, e := range ents {
		id := e.Name()
		if !e.IsDir() || !isID(id) {
			continue
		}
		seen[id] = true
		dir := filepath.Join(s.dir, id)
		cfg, hc := stamp(filepath.Join(dir, configFile)), stamp(filepath.Join(dir, hostConfigFile))
		ce := s.cache[id]
		if ce == nil || ce.cfg != cfg || ce.hc != hc || !cfg.ok || !hc.ok {
			c, err := readContainer(dir, id)
			s.reads++
			ce = &cached{cfg: cfg, hc: hc, c: c, err: err}
			s.cache[id] = ce
		}
		if ce.err != nil {
			s.problem(dir, "cannot read docker container, skipped", ce.err)
			continue
		}
		s.resolved(dir)
		cs = append(cs, ce.c)
	}
	for id := range s.cache {
		if !seen[id] {
			delete(s.cache, id)
			key := filepath.Join(s.dir, id)
			delete(s.warned, key)
			delete(s.pendingErr, key)
		}
	}
	sortContainers(cs)
	return cs
}

// problem logs err for key once it has been seen on two polls in a row, and
// then only when it changes.
func (s *scanner) problem(key, msg string, err error) {
	text := err.Error()
	if s.pendingErr == nil {
		s.pendingErr = map[string]string{}
	}
	if s.pendingErr[key] != text {
		s.pendingErr[key] = text
		return
	}
	if s.warned[key] == text {
		return
	}
	s.warned[key] = text
	if errors.Is(err, fs.ErrNotExist) && key == s.dir {
		msg = "docker containers directory does not exist (is docker.root right?)"
	}
	s.log.Warn(msg, keyDir, key, keyErr, text)
}

func (s *scanner) resolved(key string) {
	delete(s.pendingErr, key)
	delete(s.warned, key)
}
