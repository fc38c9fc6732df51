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
	"maps"
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
	"github.com/moatproj/moat/sources/journal"
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
	// Journal makes the jail read the systemd journal entries JournalMatch
	// selects (every entry when it is empty), beside LogPath if any.
	Journal      bool
	JournalMatch journal.Match
	// FindTime is how far back the journal is read when no cursor was
	// saved for the jail's match (fail2ban starts at now minus findtime).
	FindTime time.Duration
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
	// streams are the journal streams to read, by key (journal.Match.Key):
	// the jails' journalmatch, and the containers logging to journald.
	streams map[string]*stream
}

// stream is one journal selection and the jails reading it.
type stream struct {
	match journal.Match
	jails []*runJail
	since time.Duration // the longest findtime of its jails
	// container is set for a container's stream: its lines are the
	// program's own (MESSAGE), as with json-file logs.
	container string
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
		if j.Filter == nil && (len(j.LogPath) > 0 || len(rj.selectors) > 0 || j.Journal) {
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
	ns := &Set{jails: set.jails, root: set.root, base: set.base, streams: map[string]*stream{}}
	ns.patterns = slices.Clone(set.base)
	ns.byContainerPath = map[string][]*runJail{}
	ns.containerName = map[string]string{}
	for _, j := range set.jails {
		if j.Journal {
			ns.addStream(j.JournalMatch, j, "")
		}
	}
	for _, c := range cs {
		if docker.DriverProblem(c) != "" {
			continue
		}
		if c.LogDriver == docker.DriverJournald {
			m := journal.Match{{"CONTAINER_ID_FULL=" + c.ID}}
			for _, j := range set.jails {
				if docker.MatchAny(j.selectors, c) {
					ns.addStream(m, j, c.Name)
				}
			}
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

// addStream adds jail j to the stream of m.
func (set *Set) addStream(m journal.Match, j *runJail, container string) {
	key := m.Key()
	st := set.streams[key]
	if st == nil {
		st = &stream{match: m, container: container}
		set.streams[key] = st
	}
	st.jails = append(st.jails, j)
	st.since = max(st.since, j.FindTime)
}

// streamKey is the journal streams of set, for telling whether the
// journal readers must restart.
func (set *Set) streamKey() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(set.streams)) {
		fmt.Fprintf(&b, "%s\x00%v\n", k, set.streams[k].since)
	}
	return b.String()
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
	if st := set.streams[path]; st != nil {
		return slices.Clone(st.jails)
	}
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
	// Journal are the journal readers' options (Since and Logger are set
	// per stream).
	Journal journal.Options
}

// Pipeline runs a set of jails over their logs.
type Pipeline struct {
	opts Options
	log  *slog.Logger

	// set is the jails in force, swapped whole; the dispatcher reads it
	// per line.
	set atomic.Pointer[Set]

	mu sync.Mutex
	// containers is the watcher's latest list.
	containers   []docker.Container
	follower     *follow.Follower
	stopFollower context.CancelFunc // restarts the follower with the current set
	// watcher runs the container watcher for the set's selectors, journal
	// the journal readers for its streams.
	watcher, journal restarter
}

// restarter is a loop that runs for the set in force while what it depends
// on (its key) stays the same, and starts again when a set with another key
// is put in force. With an empty key it runs nothing until then.
type restarter struct {
	key func(*Set) string
	// stop ends the round running for cur. Both are under Pipeline.mu.
	stop context.CancelFunc
	cur  string
}

// restartLocked ends the round when set's key differs from the one it runs
// (the loop starts again with set). Pipeline.mu is held.
func (r *restarter) restartLocked(set *Set) {
	if r.key(set) != r.cur && r.stop != nil {
		r.stop()
	}
}

// loop runs round for the set in force, again after each restart, until
// ctx ends; round returns when its context ends. An error from a round that
// was not stopped ends the loop.
func (p *Pipeline) loop(ctx context.Context, r *restarter, round func(context.Context, *Set) error) error {
	for {
		p.mu.Lock()
		set := p.set.Load()
		key := r.key(set)
		rctx, cancel := context.WithCancel(ctx)
		r.stop, r.cur = cancel, key
		p.mu.Unlock()
		if key == "" {
			<-rctx.Done()
		} else if err := round(rctx, set); err != nil && rctx.Err() == nil {
			cancel()
			return err
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// New is a pipeline running set, once Run is called.
func New(set *Set, opts Options) *Pipeline {
	p := &Pipeline{opts: opts, log: opts.Logger,
		watcher: restarter{key: (*Set).selectorKey}, journal: restarter{key: (*Set).streamKey}}
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
	p.watcher.restartLocked(set)
	p.journal.restartLocked(set)
}

// Run follows the logs and watches the containers until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loops := []func(context.Context) error{p.follow, p.watchContainers, p.readJournal}
	errc := make(chan error, len(loops))
	for _, loop := range loops {
		go func() { errc <- loop(ctx) }()
	}
	var err error
	for range loops {
		if e := <-errc; e != nil && err == nil {
			err = e
			cancel()
		}
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
		var saved []sources.Position
		for _, pos := range p.opts.Engine.Positions() {
			if !strings.HasPrefix(pos.Path, journal.KeyPrefix) {
				saved = append(saved, pos)
			}
		}
		f := follow.New(set.patterns, saved, fo)
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

// dispatcher matches lines against the jails that watch their file (or
// journal stream), and hands failures and positions to the engine. One
// goroutine uses it.
//
// A line with a failure goes to the engine with its position. The positions
// of lines without one are kept per file and handed over every advanceEvery
// lines, whenever the queue runs dry, and at the end; since a file's lines
// come in order, no position is handed over ahead of a failure before it.
type dispatcher struct {
	p       *Pipeline
	set     *Set
	byPath  map[string][]watcher
	pending map[fileKey]sources.Position
	count   int
	fails   []jail.Failure
	old     oldRuns
}

func (p *Pipeline) newDispatcher() *dispatcher {
	return &dispatcher{p: p, pending: map[fileKey]sources.Position{}, old: oldRuns{}}
}

// current is the set in force, and the watchers of this dispatcher made
// afresh when it changed.
func (d *dispatcher) current() *Set {
	if s := d.p.set.Load(); s != d.set {
		d.set, d.byPath = s, map[string][]watcher{}
	}
	return d.set
}

// line matches one line of pos.Path, read at read; ref is the time of a
// line without a date. dry says the queue has run dry. The caller has
// taken the set in force (current) for this line.
func (d *dispatcher) line(ctx context.Context, text string, pos sources.Position, read, ref time.Time, dry bool) {
	set := d.set
	js, ok := d.byPath[pos.Path]
	if !ok {
		for _, j := range set.watching(pos.Path) {
			js = append(js, watcher{j, j.Filter.Stream()})
		}
		d.byPath[pos.Path] = js
	}
	d.fails = d.fails[:0]
	for _, w := range js {
		j := w.jail
		inc(j.Metrics.Lines)
		if m, ok := w.stream.Match(text, ref); ok {
			inc(j.Metrics.Failures)
			d.fails = append(d.fails, jail.Failure{Jail: j.Name, Addr: m.Addr, Time: m.Time})
		}
	}
	key := fileKey{pos.Path, pos.Inode}
	if len(d.fails) == 0 {
		d.pending[key] = pos
		if d.count++; dry {
			d.settle()
		} else if d.count >= advanceEvery {
			d.flush()
		}
		return
	}
	// One call for all jails of the line: a checkpoint holds all of its
	// failures or none.
	delete(d.pending, key)
	bans, dropped, err := d.p.opts.Engine.Failures(ctx, d.fails, pos)
	d.old.add(d.p.log, pos.Path, d.fails, dropped)
	switch {
	case errors.Is(err, jail.ErrUnknownJail):
		// A jail removed by a reload, before the new set is in place.
		d.p.log.Debug("failure for a jail being removed", "error", err)
	case err != nil:
		d.p.log.Error("record failure", "error", err)
	default:
		for _, b := range bans {
			if j := set.byName(b.Jail); j != nil && j.Metrics.Latency != nil {
				j.Metrics.Latency.Observe(time.Since(read).Seconds())
			}
		}
	}
	if dry {
		d.settle()
	}
}

// flush hands the pending positions over.
func (d *dispatcher) flush() {
	for k, pos := range d.pending {
		d.p.opts.Engine.Advance(pos)
		delete(d.pending, k)
	}
	d.count = 0
}

// settle is flush once the queue ran dry (the backlog is read): the runs of
// failures dropped for their age are logged too.
func (d *dispatcher) settle() {
	d.flush()
	d.old.end(d.p.log)
}

// dispatch matches the followed files' lines until lines is closed,
// decoding Docker's json-file entries.
func (p *Pipeline) dispatch(ctx context.Context, lines <-chan follow.Line) {
	d := p.newDispatcher()
	decoders := map[string]*docker.Decoder{}
	for line := range lines {
		set := d.current()
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
		d.line(ctx, text, line.Pos, line.Read, ref, len(lines) == 0)
	}
	d.settle()
}

// dispatchJournal matches journal entries until entries is closed. An
// entry's time is its failure time (fail2ban's journal lines carry no
// date); a container's entry is matched as its program wrote it.
func (p *Pipeline) dispatchJournal(ctx context.Context, entries <-chan journal.Entry) {
	d := p.newDispatcher()
	for e := range entries {
		text := e.Line
		if st := d.current().streams[e.Pos.Path]; st != nil && st.container != "" {
			text = strings.TrimSuffix(e.Fields["MESSAGE"], "\n")
		}
		d.line(ctx, text, e.Pos, time.Now(), e.Time, len(entries) == 0)
	}
	d.settle()
}

// readJournal runs a journal reader per stream of the current set,
// restarting them all when the streams change. All entries of one round
// are dispatched, and their positions handed over, before the next round
// starts from the engine's positions, so no entry is counted twice.
func (p *Pipeline) readJournal(ctx context.Context) error {
	return p.loop(ctx, &p.journal, func(jctx context.Context, set *Set) error {
		entries := make(chan journal.Entry, 4096)
		done := make(chan struct{})
		go func() {
			p.dispatchJournal(ctx, entries)
			close(done)
		}()
		saved := p.opts.Engine.Positions()
		var wg sync.WaitGroup
		for _, st := range set.streams {
			o := p.opts.Journal
			o.Since = st.since
			o.Logger = p.log.With("component", "journal")
			f := journal.New(st.match, saved, o)
			wg.Go(func() {
				if err := f.Run(jctx, entries); err != nil && jctx.Err() == nil {
					p.log.Error("read the journal", "match", st.match.String(), "error", err)
				}
			})
		}
		wg.Wait()
		close(entries)
		<-done
		return nil
	})
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
	return p.loop(ctx, &p.watcher, func(wctx context.Context, set *Set) error {
		w := &docker.Watcher{Root: set.root, Selectors: set.allSelectors(), Interval: p.opts.WatchEvery, Logger: p.log.With("component", "docker")}
		if err := w.Run(wctx, p.setContainers); err != nil {
			return fmt.Errorf("watch containers in %s: %w", set.root, err)
		}
		return nil
	})
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
	p.journal.restartLocked(ns)
	for key, st := range ns.streams {
		if _, ok := cur.streams[key]; !ok && st.container != "" {
			p.log.Info("following container log in the journal", "container", st.container, "match", st.match.String())
		}
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
