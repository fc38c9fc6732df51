package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/moatproj/moat/sources/docker"
)

// Container logs: jails with containers: follow the json-file logs of the
// containers their selectors pick, read from Docker's data root (never
// the Docker socket). A watcher rescans the root every second; when the
// containers or their log paths change, the jail set is rebuilt with the
// new paths and the follower restarted from the engine's positions, so a
// container started later is followed within about two seconds.

// selectors parses a jail's container selectors (configs checked them).
func selectors(specs []string) ([]docker.Selector, error) {
	out := make([]docker.Selector, 0, len(specs))
	for _, s := range specs {
		sel, err := docker.ParseSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

// withContainers is set with the log paths of cs added for the jails whose
// selectors pick them: its patterns are the jails' logpath plus those
// paths. set itself is not changed.
func withContainers(set *jailSet, cs []docker.Container) *jailSet {
	ns := &jailSet{jails: set.jails, root: set.root, base: set.base, containers: cs}
	ns.patterns = slices.Clone(set.base)
	ns.byContainerPath = map[string][]*runJail{}
	ns.containerName = map[string]string{}
	for _, c := range cs {
		if docker.DriverProblem(c) != "" {
			continue
		}
		path := docker.JSONLogPath(set.root, c)
		for _, j := range set.jails {
			if docker.MatchAny(j.selectors, c) {
				ns.byContainerPath[path] = append(ns.byContainerPath[path], j)
			}
		}
		if len(ns.byContainerPath[path]) > 0 {
			ns.patterns = append(ns.patterns, path)
			ns.containerName[path] = c.Name
		}
	}
	slices.Sort(ns.patterns)
	ns.patterns = slices.Compact(ns.patterns)
	return ns
}

// selectorKey is the selectors of all jails of set, for telling whether a
// reload changed what the watcher must pick.
func selectorKey(set *jailSet) string {
	var b strings.Builder
	for _, j := range set.jails {
		for _, s := range j.selectors {
			b.WriteString(s.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// allSelectors is the selectors of every jail of set.
func allSelectors(set *jailSet) []docker.Selector {
	var out []docker.Selector
	for _, j := range set.jails {
		out = append(out, j.selectors...)
	}
	return out
}

// watchContainers runs the container watcher for the current set's
// selectors, restarting it when a reload changes them, until ctx ends.
// Without any jail that names containers it waits for a reload that adds
// one.
func (d *daemon) watchContainers(ctx context.Context) error {
	for {
		d.mu.Lock()
		set := d.set.Load()
		key := selectorKey(set)
		wctx, cancel := context.WithCancel(ctx)
		d.stopWatcher, d.watcherKey = cancel, key
		d.mu.Unlock()
		if key == "" {
			<-wctx.Done()
		} else {
			w := &docker.Watcher{Root: set.root, Selectors: allSelectors(set), Logger: d.logger.With(keyComponent, "docker")}
			if err := w.Run(wctx, d.setContainers); err != nil && ctx.Err() == nil {
				cancel()
				return fmt.Errorf("watch containers in %s: %w", set.root, err)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// setContainers takes the watcher's new list of containers: the jail set
// gets their log paths, and the follower restarts when its paths changed.
// (The watcher itself warns about containers whose log driver moat cannot
// read.)
func (d *daemon) setContainers(cs []docker.Container) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers = cs
	cur := d.set.Load()
	ns := withContainers(cur, cs)
	d.set.Store(ns)
	if !slices.Equal(cur.patterns, ns.patterns) && d.stopFollower != nil {
		d.stopFollower()
	}
	for path, name := range ns.containerName {
		if _, ok := cur.containerName[path]; !ok {
			var jails []string
			for _, j := range ns.byContainerPath[path] {
				jails = append(jails, j.cfg.Name)
			}
			d.logger.Info("following container log", "container", name, "path", path, "jails", jails)
		}
	}
}
