// Package pipeline joins the log sources, the filters and the jail engine:
// it follows the files and container logs the jails read, decodes Docker's
// json-file entries, matches each line against the filters of the jails that
// watch its file, hands failures to the engine in one call per line, and
// hands read positions over exactly once, so that a restart resumes where
// the last line was counted and no line is counted twice.
//
// It owns the running set of jails (swapped whole on reload), the follower
// (restarted from the engine's positions when the set of followed paths
// changes) and the container watcher. It must not decide bans (the engine
// does), touch the firewall, read configuration files, or serve anything.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/sources"
	"github.com/moatproj/moat/sources/docker"
	"github.com/moatproj/moat/sources/follow"
)

// Engine is what the pipeline needs of the jail engine (*jail.Engine).
type Engine interface {
	// Failures records the failures of one line, all or none, and hands
	// over its position with them. It returns the bans they triggered and
	// the failures it dropped for being older than their jail's findtime.
	Failures(ctx context.Context, fs []jail.Failure, pos sources.Position) ([]jail.Ban, []jail.TooOld, error)
	// Advance hands over the position of lines without a failure.
	Advance(pos sources.Position)
	// Positions is where each file was read to, for a follower to resume.
	Positions() []sources.Position
	// ForgetPositions drops the positions of paths stale says so of.
	ForgetPositions(stale func(path string) bool) []string
}

// Counter and Observer are the metrics a jail's lines feed (Prometheus'
// Counter and Observer satisfy them).
type (
	Counter  interface{ Inc() }
	Observer interface{ Observe(float64) }
)

// Metrics are one jail's series: lines read, failures found, and the time
// from reading a line to the ban it triggered being in force.
type Metrics struct {
	Lines, Failures Counter
	Latency         Observer
}

// Jail is one jail as the pipeline runs it.
type Jail struct {
	Name string
	// LogPath is the jail's files (globs allowed).
	LogPath []string
	// Containers is the jail's container selectors (docker.ParseSelector).
	Containers []string
	// Filter matches the jail's lines; nil for a jail without a log (the
	// proxy's, whose failures come from the proxy).
	Filter *filters.Filter
	// Metrics may have nil members.
	Metrics Metrics
}

// runJail is a Jail with its selectors parsed.
type runJail struct {
	Jail
	selectors []docker.Selector
}

// Set is the jails of one configuration, with the container logs they
// follow now. It is not changed once built.
type Set struct {
	jails []*runJail
	root  string   // Docker's data root
	base  []string // the union of the jails' logpath, sorted
	// patterns is base plus the followed containers' log paths, sorted:
	// what the follower follows.
	patterns []string
	// byContainerPath is, per followed container log, the jails reading it;
	// containerName names its container.
	byContainerPath map[string][]*runJail
	containerName   map[string]string
}

// Compile checks and builds the set of jails, whose containers are found in
// Docker's data root.
func Compile(root string, jails []Jail) (*Set, error) {
	set := &Set{root: root}
	seen := map[string]bool{}
	for _, j := range jails {
		sels, err := docker.ParseSelectors(j.Containers)
		if err != nil {
			return nil, fmt.Errorf("jail %s: containers: %w", j.Name, err)
		}
		rj := &runJail{Jail: j, selectors: sels}
		if j.Filter == nil && (len(j.LogPath) > 0 || len(rj.selectors) > 0) {
			return nil, fmt.Errorf("jail %s: has logs to read but no filter", j.Name)
		}
		set.jails = append(set.jails, rj)
		for _, p := range j.LogPath {
			if !seen[p] {
				seen[p] = true
				set.base = append(set.base, p)
			}
		}
	}
	slices.Sort(set.base)
	return set.withContainers(nil), nil
}

// withContainers is set with the log paths of cs added for the jails whose
// selectors pick them: its patterns are the jails' logpath plus those
// paths. set itself is not changed.
func (set *Set) withContainers(cs []docker.Container) *Set {
	ns := &Set{jails: set.jails, root: set.root, base: set.base}
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

// selectorKey is the selectors of all jails, for telling whether a reload
// changed what the watcher must pick.
func (set *Set) selectorKey() string {
	var b strings.Builder
	for _, j := range set.jails {
		for _, s := range j.selectors {
			b.WriteString(s.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (set *Set) allSelectors() []docker.Selector {
	var out []docker.Selector
	for _, j := range set.jails {
		out = append(out, j.selectors...)
	}
	return out
}

// byName is the jail of that name, or nil.
func (set *Set) byName(name string) *runJail {
	for _, j := range set.jails {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// watching is the jails whose logpath matches path, or that read the
// container log at path.
func (set *Set) watching(path string) []*runJail {
	out := slices.Clone(set.byContainerPath[path])
	for _, j := range set.jails {
		if matchesAny(j.LogPath, path) && !slices.Contains(out, j) {
			out = append(out, j)
		}
	}
	return out
}

func matchesAny(patterns []string, path string) bool {
	for _, p := range patterns {
		if p == path {
			return true
		}
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}

// Options configure a Pipeline.
type Options struct {
	Engine Engine
	// Logger receives the pipeline's events; nil discards.
	Logger *slog.Logger
	// Follow are the follower's options (its Logger is set from Logger).
	Follow follow.Options
	// WatchEvery is how often Docker's data root is polled; 0 means
	// docker.DefaultInterval.
	WatchEvery time.Duration
}

// Pipeline runs a set of jails over their logs.
type Pipeline struct {
	opts Options
	log  *slog.Logger

	// set is the jails in force, swapped whole; the dispatcher reads it
	// per line.
	set atomic.Pointer[Set]

	mu sync.Mutex
	// containers is the watcher's latest list; stopWatcher restarts the
	// watcher, watcherKey is the selectors it runs with.
	containers   []docker.Container
	stopWatcher  context.CancelFunc
	watcherKey   string
	follower     *follow.Follower
	stopFollower context.CancelFunc // restarts the follower with the current set
}

// New is a pipeline running set, once Run is called.
func New(set *Set, opts Options) *Pipeline {
	p := &Pipeline{opts: opts, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.set.Store(set)
	return p
}

// Use puts set in force: lines read from now on are matched against its
// jails, with the containers the watcher found (also those found since set
// was compiled); the follower restarts from the engine's positions when the
// paths to follow changed, the watcher when the selectors did.
func (p *Pipeline) Use(set *Set) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set = set.withContainers(p.containers)
	prev := p.set.Swap(set)
	if !slices.Equal(prev.patterns, set.patterns) && p.stopFollower != nil {
		p.stopFollower()
	}
	if set.selectorKey() != p.watcherKey && p.stopWatcher != nil {
		p.stopWatcher()
	}
}

// Run follows the logs and watches the containers until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- p.follow(ctx) }()
	go func() { errc <- p.watchContainers(ctx) }()
	err := <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// Files is the files followed now for the named jail.
func (p *Pipeline) Files(name string) []string {
	p.mu.Lock()
	f := p.follower
	p.mu.Unlock()
	var out []string
	set := p.set.Load()
	j := set.byName(name)
	if f == nil || j == nil {
		return out
	}
	for _, path := range f.Files() {
		if matchesAny(j.LogPath, path) || slices.Contains(set.byContainerPath[path], j) {
			out = append(out, path)
		}
	}
	return out
}

// follow runs the follower over the current set's patterns, restarting it
// when the set's patterns change. Lines of one follower are dispatched in
// order by one goroutine, and all of them before the next follower starts
// from the engine's positions, so no line is read twice.
func (p *Pipeline) follow(ctx context.Context) error {
	for {
		p.forgetGone(p.set.Load())
		// The set is read and the follower's cancel stored under mu, where
		// Use swaps the set: a swap either sees this follower and stops it,
		// or happened before and its set is the one used here.
		p.mu.Lock()
		set := p.set.Load()
		fctx, cancel := context.WithCancel(ctx)
		fo := p.opts.Follow
		fo.Logger = p.log.With("component", "follow")
		f := follow.New(set.patterns, p.opts.Engine.Positions(), fo)
		p.follower, p.stopFollower = f, cancel
		p.mu.Unlock()

		lines := make(chan follow.Line, 4096)
		errc := make(chan error, 1)
		go func() {
			errc <- f.Run(fctx, lines)
			close(lines)
		}()
		p.dispatch(ctx, lines)
		err := <-errc
		cancel()
		// Every line delivered has been dispatched: hand the follower's
		// final positions over, so the next follower starts exactly there.
		for _, pos := range f.Positions() {
			p.opts.Engine.Advance(pos)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow logs: %w", err)
		}
	}
}

// forgetGone drops the saved read positions of files that no jail of set
// reads and that are gone from disk, such as a removed container's log, so
// that they do not pile up in the state db on a host whose containers come
// and go. A file a jail still reads keeps its position even while it is
// missing (between a rotation's rename and the new file).
func (p *Pipeline) forgetGone(set *Set) {
	gone := p.opts.Engine.ForgetPositions(func(path string) bool {
		if len(set.watching(path)) > 0 {
			return false
		}
		_, err := os.Lstat(path)
		return errors.Is(err, fs.ErrNotExist)
	})
	if len(gone) > 0 {
		p.log.Info("forgot the read positions of files gone", "paths", gone)
	}
}

// advanceEvery is how many lines without a failure may pass before their
// position is handed to the engine (it is also handed over whenever the
// queue runs dry).
const advanceEvery = 256

// watcher is a jail that watches one log, with the filter's state for that
// log (multi-line filters group lines by connection id, or buffer the last
// maxlines lines). It is used by the dispatching goroutine only.
type watcher struct {
	jail   *runJail
	stream *filters.Stream
}

// fileKey is one file: the path it was found at and its inode.
type fileKey struct {
	path  string
	inode uint64
}

// dispatch matches each line against the jails that watch its file, and
// hands failures and positions to the engine, until lines is closed.
//
// A line with a failure goes to the engine with its position. The positions
// of lines without one are kept per file and handed over every advanceEvery
// lines, whenever the queue runs dry, and at the end; since a file's lines
// come in order, no position is handed over ahead of a failure before it.
func (p *Pipeline) dispatch(ctx context.Context, lines <-chan follow.Line) {
	var (
		set      *Set
		byPath   map[string][]watcher
		decoders = map[string]*docker.Decoder{}
		pending  = map[fileKey]sources.Position{}
		count    int
		fails    []jail.Failure
		engine   = p.opts.Engine
		old      = oldRuns{}
	)
	flush := func() {
		for k, pos := range pending {
			engine.Advance(pos)
			delete(pending, k)
		}
		count = 0
	}
	for line := range lines {
		if s := p.set.Load(); s != set {
			set, byPath = s, map[string][]watcher{}
		}
		js, ok := byPath[line.Pos.Path]
		if !ok {
			for _, j := range set.watching(line.Pos.Path) {
				js = append(js, watcher{j, j.Filter.Stream()})
			}
			byPath[line.Pos.Path] = js
		}
		text, ref := line.Text, time.Now()
		if _, ok := set.byContainerPath[line.Pos.Path]; ok {
			// A json-file entry: the program's line and the time Docker
			// stamped it with, the failure time when the line has no date.
			dec := decoders[line.Pos.Path]
			if dec == nil {
				dec = docker.NewDecoder()
				decoders[line.Pos.Path] = dec
			}
			t, tm, complete, err := dec.Decode([]byte(line.Text))
			if err != nil || !complete {
				// A piece of a line Docker split: its position is not
				// handed over, so a restart reads the whole line again.
				continue
			}
			text = t
			if !tm.IsZero() {
				ref = tm
			}
		}
		fails = fails[:0]
		for _, w := range js {
			j := w.jail
			inc(j.Metrics.Lines)
			if m, ok := w.stream.Match(text, ref); ok {
				inc(j.Metrics.Failures)
				fails = append(fails, jail.Failure{Jail: j.Name, Addr: m.Addr, Time: m.Time})
			}
		}
		key := fileKey{line.Pos.Path, line.Pos.Inode}
		if len(fails) == 0 {
			pending[key] = line.Pos
			if count++; count >= advanceEvery || len(lines) == 0 {
				flush()
			}
			continue
		}
		// One call for all jails of the line: a checkpoint holds all of its
		// failures or none.
		delete(pending, key)
		bans, dropped, err := engine.Failures(ctx, fails, line.Pos)
		old.add(p.log, line.Pos.Path, fails, dropped)
		switch {
		case errors.Is(err, jail.ErrUnknownJail):
			// A jail removed by a reload, before the new set is in place.
			p.log.Debug("failure for a jail being removed", "error", err)
		case err != nil:
			p.log.Error("record failure", "error", err)
		default:
			for _, b := range bans {
				if j := set.byName(b.Jail); j != nil && j.Metrics.Latency != nil {
					j.Metrics.Latency.Observe(time.Since(line.Read).Seconds())
				}
			}
		}
		if len(lines) == 0 {
			flush()
			old.end(p.log)
		}
	}
	flush()
	old.end(p.log)
}

// oldRuns counts, per file and jail, the failures the engine dropped in a
// row for being older than findtime, so that a log read from its start
// says once what it skipped rather than nothing or a line per failure.
type oldRuns map[[2]string]*oldRun

type oldRun struct {
	n           int
	findTime    time.Duration
	first, last time.Time
}

// add counts the dropped failures of one line of path, and ends the runs
// of the jails whose failure on it was recorded.
func (o oldRuns) add(log *slog.Logger, path string, fails []jail.Failure, dropped []jail.TooOld) {
	for _, d := range dropped {
		k := [2]string{path, d.Jail}
		r := o[k]
		if r == nil {
			r = &oldRun{first: d.Time}
			o[k] = r
		}
		r.n++
		r.findTime, r.last = d.FindTime, d.Time
	}
	for _, f := range fails {
		k := [2]string{path, f.Jail}
		if r := o[k]; r != nil && !slices.ContainsFunc(dropped, func(d jail.TooOld) bool { return d.Jail == f.Jail }) {
			o.log(log, k, r)
			delete(o, k)
		}
	}
}

// end logs and forgets every run (the queue ran dry: the backlog is read).
func (o oldRuns) end(log *slog.Logger) {
	for k, r := range o {
		o.log(log, k, r)
		delete(o, k)
	}
}

func (oldRuns) log(log *slog.Logger, k [2]string, r *oldRun) {
	log.Info(fmt.Sprintf("%d failures in %s older than findtime (%s) skipped: they cannot lead to a ban", r.n, k[0], r.findTime),
		"jail", k[1], "file", k[0], "count", r.n, "findtime", r.findTime.String(),
		"first", r.first.Format(time.RFC3339), "last", r.last.Format(time.RFC3339))
}

func inc(c Counter) {
	if c != nil {
		c.Inc()
	}
}

// watchContainers runs the container watcher for the current set's
// selectors, restarting it when the selectors change, until ctx ends.
// Without any jail that names containers it waits for a set that has one.
func (p *Pipeline) watchContainers(ctx context.Context) error {
	for {
		p.mu.Lock()
		set := p.set.Load()
		key := set.selectorKey()
		wctx, cancel := context.WithCancel(ctx)
		p.stopWatcher, p.watcherKey = cancel, key
		p.mu.Unlock()
		if key == "" {
			<-wctx.Done()
		} else {
			w := &docker.Watcher{Root: set.root, Selectors: set.allSelectors(), Interval: p.opts.WatchEvery, Logger: p.log.With("component", "docker")}
			if err := w.Run(wctx, p.setContainers); err != nil && ctx.Err() == nil {
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

// setContainers takes the watcher's new list of containers: the set gets
// their log paths, and the follower restarts when its paths changed. (The
// watcher itself warns about containers whose log driver moat cannot read.)
func (p *Pipeline) setContainers(cs []docker.Container) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.containers = cs
	cur := p.set.Load()
	ns := cur.withContainers(cs)
	p.set.Store(ns)
	if !slices.Equal(cur.patterns, ns.patterns) && p.stopFollower != nil {
		p.stopFollower()
	}
	for path, name := range ns.containerName {
		if _, ok := cur.containerName[path]; !ok {
			var jails []string
			for _, j := range ns.byContainerPath[path] {
				jails = append(jails, j.Name)
			}
			p.log.Info("following container log", "container", name, "path", path, "jails", jails)
		}
	}
}
