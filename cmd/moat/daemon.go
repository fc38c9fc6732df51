package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/none"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/jail/control"
	"github.com/moatproj/moat/proxy"
	"github.com/moatproj/moat/sources/docker"
	"github.com/moatproj/moat/sources/follow"
)

// Attribute keys of the daemon's log lines.
const (
	keyComponent = "component"
	keyError     = "error"
	keyJail      = "jail"
)

func cmdRun(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default /etc/moat/moat.yaml, else the embedded default)")
	f2bDir := fs.String("fail2ban", "", "also run the enabled jails of this fail2ban configuration directory (such as /etc/fail2ban)")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: run takes no arguments, got %q", errUsage, pos)
	}
	// Catch SIGHUP from the start: a reload sent while moat is still
	// starting (a logrotate postrotate, say) must not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR1 (reopen the access log) likewise.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	logger := newLogger(io)
	cfg, f2b, err := loadConfig(*path, *f2bDir, io)
	if err != nil {
		printConfigError(io, err)
		return errors.New("configuration is not valid; nothing started")
	}
	if f2b != nil {
		for _, w := range f2b.Warnings {
			logger.Warn("fail2ban option not carried out", keyJail, w.Jail, "option", w.Option, "value", w.Value, "reason", w.Reason)
		}
	}
	d := &daemon{io: io, cfgPath: *path, f2bDir: *f2bDir, logger: logger, hup: hup, usr1: usr1}
	return d.run(ctx, cfg)
}

// newLogger builds the one slog handler of the process: text on a
// terminal, JSON under a service manager. MOAT_LOG_LEVEL=debug|warn|error.
func newLogger(io stdio) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(io.getenv("MOAT_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if io.stderrIsTerminal {
		return slog.New(slog.NewTextHandler(io.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(io.stderr, opts))
}

// daemon wires the parts together: followers → filters → engine →
// firewall, the control socket and the metrics listener.
type daemon struct {
	io      stdio
	cfgPath string
	f2bDir  string // --fail2ban, read again on reload
	logger  *slog.Logger
	hup     <-chan os.Signal // SIGHUP: reload
	usr1    <-chan os.Signal // SIGUSR1: reopen the access log

	cfg     *configs.Config // the configuration moat started with (its state_dir, socket, firewall and metrics stay)
	engine  *jail.Engine
	fwName  string // the firewall backend's name
	metrics *metrics

	// set is the jails in force, swapped whole on reload; the dispatcher
	// reads it per line.
	set atomic.Pointer[jailSet]

	// containers is the watcher's latest list (under mu); stopWatcher
	// restarts the watcher, watcherKey is the selectors it runs with.
	containers  []docker.Container
	stopWatcher context.CancelFunc
	watcherKey  string

	// proxy is the reverse proxy (nil without a proxy: section) and the
	// configuration it runs.
	proxy    *proxy.Proxy
	proxyCfg *proxy.Config

	mu           sync.Mutex
	follower     *follow.Follower
	stopFollower context.CancelFunc // restarts the follower with the current set
}

// runJail is a configured jail with its compiled filter.
type runJail struct {
	cfg       configs.Jail
	filter    *filters.Filter
	selectors []docker.Selector // the containers whose logs it reads too
	m         jailMetrics
}

// jailSet is the jails of one configuration, with the container logs they
// follow now.
type jailSet struct {
	jails []*runJail
	root  string   // Docker's data root
	base  []string // the union of the jails' logpath, sorted
	// patterns is base plus the followed containers' log paths, sorted:
	// what the follower follows.
	patterns   []string
	containers []docker.Container // the containers the watcher picked
	// byContainerPath is, per followed container log, the jails reading it;
	// containerName names its container.
	byContainerPath map[string][]*runJail
	containerName   map[string]string
}

func (d *daemon) run(ctx context.Context, cfg *configs.Config) error {
	log := d.logger
	fw, err := openFirewall(cfg, log)
	if err != nil {
		return err
	}
	defer fw.Close()
	d.fwName = fw.Name()
	d.metrics = newMetrics()
	d.cfg = cfg
	engine, err := jail.Open(jail.Options{
		StateDir:   cfg.StateDir,
		Firewall:   fw,
		Logger:     log.With(keyComponent, "jail"),
		Notify:     d.metrics.event,
		CheckEvery: cfg.Firewall.Check,
	})
	if err != nil {
		return fmt.Errorf("open state in %s: %w", cfg.StateDir, err)
	}
	defer engine.Close()
	d.engine = engine
	d.metrics.activeBans = engine.Bans
	d.metrics.firewall = engine.FirewallStatus
	set, err := d.compile(cfg, nil)
	if err != nil {
		return err
	}
	if err := engine.Configure(ctx, jailConfigs(set)); err != nil {
		return fmt.Errorf("configure jails: %w", err)
	}
	d.set.Store(set)

	var pbans *proxyBans
	if cfg.Proxy != nil {
		p, b, err := d.startProxy(ctx, cfg)
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		d.proxy, d.proxyCfg, pbans = p, cfg.Proxy, b
	}

	ln, err := control.Listen(cfg.Socket, 0o600)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	log.Info("moat started", "version", moatVersion(), "config", cfg.File, "state_dir", cfg.StateDir,
		"socket", cfg.Socket, "firewall", fw.Name(), "table", cfg.Firewall.Table)
	d.describe(set)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error {
		return control.Serve(gctx, ln, control.NewHandler(service{d}, log.With(keyComponent, "control")))
	})
	g.Go(func() error { return d.follow(gctx) })
	g.Go(func() error { return d.watchContainers(gctx) })
	g.Go(func() error { return d.reloadOnHUP(gctx) })
	if cfg.Metrics.Listen != "" {
		g.Go(func() error { return d.metrics.serve(gctx, cfg.Metrics.Listen, log) })
	}
	if d.proxy != nil {
		g.Go(func() error { return pbans.run(gctx) })
		g.Go(func() error { return d.proxy.Run(gctx) })
		g.Go(func() error { return d.reopenOnUSR1(gctx) })
	}
	err = g.Wait()
	log.Info("moat stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// openFirewall picks the backend: nftables when configured or usable
// (auto), otherwise none, which says loudly that nothing is enforced.
func openFirewall(cfg *configs.Config, log *slog.Logger) (firewall.Backend, error) {
	nft := func() (firewall.Backend, error) {
		b, err := nftables.New(nftables.Options{Table: cfg.Firewall.Table, Logger: log.With(keyComponent, "nftables")})
		if err != nil {
			return nil, fmt.Errorf("firewall backend nftables: %w", err)
		}
		return b, nil
	}
	switch cfg.Firewall.Backend {
	case "nftables":
		return nft()
	case "none":
		log.Warn("firewall backend is none: bans are logged and refused by nothing in the kernel")
		return none.New(log.With(keyComponent, "firewall")), nil
	default: // auto
		if err := nftables.Probe(0); err != nil {
			log.Warn("FIREWALL NOT ENFORCING: nftables is not usable here, so bans are only logged (backend none); "+
				"run as root or with CAP_NET_ADMIN to enforce them, or set firewall.backend: none to say you mean it",
				keyError, err)
			return none.New(log.With(keyComponent, "firewall")), nil
		}
		return nft()
	}
}

// compile builds the jails of cfg with their filters, following the
// container logs of cs.
func (d *daemon) compile(cfg *configs.Config, cs []docker.Container) (*jailSet, error) {
	set := &jailSet{root: cfg.Docker.Root}
	seen := map[string]bool{}
	for _, jc := range cfg.Jails {
		sels, err := selectors(jc.Containers)
		if err != nil {
			return nil, fmt.Errorf("jail %s: containers: %w", jc.Name, err)
		}
		if len(jc.LogPath) == 0 && len(sels) == 0 {
			// The proxy's jail without a log: its failures come from the
			// proxy only.
			set.jails = append(set.jails, &runJail{cfg: jc, m: d.metrics.forJail(jc.Name)})
			continue
		}
		f, err := buildFilter(jc.Filter, jc.Name)
		if err != nil {
			return nil, fmt.Errorf("jail %s: filter: %w", jc.Name, err)
		}
		set.jails = append(set.jails, &runJail{cfg: jc, filter: f, selectors: sels, m: d.metrics.forJail(jc.Name)})
		for _, p := range jc.LogPath {
			if !seen[p] {
				seen[p] = true
				set.base = append(set.base, p)
			}
		}
	}
	slices.Sort(set.base)
	return withContainers(set, cs), nil
}

func jailConfigs(set *jailSet) []jail.Config {
	out := make([]jail.Config, len(set.jails))
	for i, j := range set.jails {
		out[i] = j.cfg.Config
	}
	return out
}

// describe logs what the daemon watches and what is missing.
func (d *daemon) describe(set *jailSet) {
	for _, j := range set.jails {
		if len(j.cfg.LogPath) == 0 && len(j.selectors) == 0 {
			d.logger.Info("jail counting the proxy's rate-limit rejections", keyJail, j.cfg.Name,
				"maxretry", j.cfg.MaxRetry, "findtime", j.cfg.FindTime.String(), "bantime", banTimeLabel(j.cfg.BanTime))
			continue
		}
		if len(j.selectors) > 0 {
			d.logger.Info("jail watching containers", keyJail, j.cfg.Name, "containers", j.cfg.Containers, "docker_root", set.root)
		}
		var found, missing []string
		for _, p := range j.cfg.LogPath {
			m, _ := filepath.Glob(p)
			if len(m) == 0 {
				missing = append(missing, p)
			}
			found = append(found, m...)
		}
		d.logger.Info("jail watching", keyJail, j.cfg.Name, "filter", filterLabel(j.cfg.Filter), "files", found,
			"maxretry", j.cfg.MaxRetry, "findtime", j.cfg.FindTime.String(), "bantime", banTimeLabel(j.cfg.BanTime))
		if len(missing) > 0 {
			d.logger.Warn("no such log file yet; moat keeps running and reads it when it appears", keyJail, j.cfg.Name, "logpath", missing)
		}
	}
	if len(set.jails) == 0 {
		d.logger.Warn("no jail is enabled: nothing is watched")
	}
}

// follow runs the follower over the current set's patterns, restarting it
// when a reload changes them. Lines of one follower are dispatched in order
// by one goroutine, and all of them before the next follower starts from
// the engine's positions, so no line is read twice.
func (d *daemon) follow(ctx context.Context) error {
	for {
		d.forgetGone(d.set.Load())
		// The set is read and the follower's cancel stored under mu, where
		// reload swaps the set: a reload either sees this follower and
		// stops it, or happened before and its set is the one used here.
		d.mu.Lock()
		set := d.set.Load()
		fctx, cancel := context.WithCancel(ctx)
		f := follow.New(set.patterns, d.engine.Positions(), follow.Options{Logger: d.logger.With(keyComponent, "follow")})
		d.follower, d.stopFollower = f, cancel
		d.mu.Unlock()

		lines := make(chan follow.Line, 4096)
		errc := make(chan error, 1)
		go func() {
			errc <- f.Run(fctx, lines)
			close(lines)
		}()
		d.dispatch(ctx, lines)
		err := <-errc
		cancel()
		// Every line delivered has been dispatched: hand the follower's
		// final positions over, so the next follower starts exactly there.
		for _, p := range f.Positions() {
			d.engine.Advance(p)
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
func (d *daemon) forgetGone(set *jailSet) {
	gone := d.engine.ForgetPositions(func(path string) bool {
		if len(set.watching(path)) > 0 {
			return false
		}
		_, err := os.Lstat(path)
		return errors.Is(err, fs.ErrNotExist)
	})
	if len(gone) > 0 {
		d.logger.Info("forgot the read positions of files gone", "paths", gone)
	}
}

// advanceEvery is how many lines without a failure may pass before their
// position is handed to the engine (it is also handed over whenever the
// queue runs dry).
const advanceEvery = 256

// dispatch matches each line against the jails that watch its file, and
// hands failures and positions to the engine, until lines is closed.
//
// A line with a failure goes to the engine with its position. The positions
// of lines without one are kept per file and handed over every advanceEvery
// lines, whenever the queue runs dry, and at the end; since a file's lines
// come in order, no position is handed over ahead of a failure before it.
func (d *daemon) dispatch(ctx context.Context, lines <-chan follow.Line) {
	var (
		set      *jailSet
		byPath   map[string][]watcher
		decoders = map[string]*docker.Decoder{}
		pending  = map[fileKey]follow.Position{}
		count    int
		fails    []jail.Failure
	)
	flush := func() {
		for k, p := range pending {
			d.engine.Advance(p)
			delete(pending, k)
		}
		count = 0
	}
	for line := range lines {
		if s := d.set.Load(); s != set {
			set, byPath = s, map[string][]watcher{}
		}
		js, ok := byPath[line.Pos.Path]
		if !ok {
			for _, j := range set.watching(line.Pos.Path) {
				js = append(js, watcher{j, j.filter.Stream()})
			}
			byPath[line.Pos.Path] = js
		}
		now := time.Now()
		text, ref := line.Text, now
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
			j.m.lines.Inc()
			if m, ok := w.stream.Match(text, ref); ok {
				j.m.failures.Inc()
				fails = append(fails, jail.Failure{Jail: j.cfg.Name, Addr: m.Addr, Time: m.Time})
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
		bans, err := d.engine.Failures(ctx, fails, line.Pos)
		switch {
		case errors.Is(err, jail.ErrUnknownJail):
			// A jail removed by a reload, before the new set is in place.
			d.logger.Debug("failure for a jail being removed", keyError, err)
		case err != nil:
			d.logger.Error("record failure", keyError, err)
		default:
			for _, b := range bans {
				if j := set.byName(b.Jail); j != nil {
					j.m.latency.Observe(time.Since(line.Read).Seconds())
				}
			}
		}
		if len(lines) == 0 {
			flush()
		}
	}
	flush()
}

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

// byName is the jail of that name, or nil.
func (s *jailSet) byName(name string) *runJail {
	for _, j := range s.jails {
		if j.cfg.Name == name {
			return j
		}
	}
	return nil
}

// watching is the jails whose logpath matches path, or that read the
// container log at path.
func (s *jailSet) watching(path string) []*runJail {
	out := slices.Clone(s.byContainerPath[path])
	for _, j := range s.jails {
		if matchesAny(j.cfg.LogPath, path) && !slices.Contains(out, j) {
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

// reopenOnUSR1 reopens the proxy's access log on each SIGUSR1 (after a
// rotation that moved it; a rename is also noticed by itself).
func (d *daemon) reopenOnUSR1(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.usr1:
			if err := d.proxy.ReopenLog(); err != nil {
				d.logger.Error("reopen access log", keyError, err)
			} else {
				d.logger.Info("access log reopened")
			}
		}
	}
}

// reloadOnHUP reloads the configuration on each SIGHUP.
func (d *daemon) reloadOnHUP(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.hup:
			if err := d.reload(ctx); err != nil {
				d.logger.Error("reload refused; the configuration in force stays", keyError, err)
			}
		}
	}
}

// reload applies a new configuration: jails added, removed or changed.
// A configuration that does not load changes nothing.
func (d *daemon) reload(ctx context.Context) error {
	cfg, _, err := loadConfig(d.cfgPath, d.f2bDir, d.io)
	if err != nil {
		return err
	}
	d.mu.Lock()
	cs := d.containers
	d.mu.Unlock()
	set, err := d.compile(cfg, cs)
	if err != nil {
		return err
	}
	if old := d.cfg; cfg.StateDir != old.StateDir || cfg.Socket != old.Socket || cfg.Firewall != old.Firewall || cfg.Metrics != old.Metrics {
		d.logger.Warn("state_dir, socket, firewall and metrics changes take effect at the next start; the running values stay")
	}
	names := make([]string, len(set.jails))
	for i, j := range set.jails {
		names[i] = j.cfg.Name
	}
	if err := d.engine.Configure(ctx, jailConfigs(set)); err != nil {
		// Configure changes nothing on a validation error; past that
		// (a firewall sync that failed) the engine runs the new jails,
		// and the daemon must follow it. Run retries the sync.
		got := d.engine.Jails()
		slices.Sort(got)
		want := slices.Sorted(slices.Values(names))
		if !slices.Equal(got, want) {
			return fmt.Errorf("configure jails: %w", err)
		}
		d.logger.Error("reload applied, but the firewall sync failed; it is retried", keyError, err)
	}
	d.reloadProxy(cfg)
	d.mu.Lock()
	// Containers the watcher reported since compile are taken too.
	set = withContainers(set, d.containers)
	prev := d.set.Swap(set)
	if !slices.Equal(prev.patterns, set.patterns) && d.stopFollower != nil {
		d.stopFollower()
	}
	if selectorKey(set) != d.watcherKey && d.stopWatcher != nil {
		d.stopWatcher()
	}
	d.mu.Unlock()
	d.logger.Info("configuration reloaded", "config", cfg.File, "jails", strings.Join(names, ","))
	d.describe(set)
	return nil
}

// files is the files followed now for one jail.
func (d *daemon) files(j *runJail) []string {
	d.mu.Lock()
	f := d.follower
	d.mu.Unlock()
	var out []string
	if f == nil {
		return out
	}
	set := d.set.Load()
	for _, p := range f.Files() {
		if matchesAny(j.cfg.LogPath, p) || slices.Contains(set.byContainerPath[p], j) {
			out = append(out, p)
		}
	}
	return out
}

// service is what the control API serves: the engine, with the followed
// files added to the status.
type service struct{ d *daemon }

func (s service) Status(name string) ([]jail.Status, error) {
	sts, err := s.d.engine.Status(name)
	if err != nil {
		return nil, err
	}
	set := s.d.set.Load()
	for i := range sts {
		if j := set.byName(sts[i].Jail); j != nil {
			sts[i].Files = s.d.files(j)
		}
	}
	return sts, nil
}

func (s service) Bans(name string) []jail.Ban { return s.d.engine.Bans(name) }

func (s service) FirewallStatus() jail.FirewallStatus {
	st := s.d.engine.FirewallStatus()
	st.Backend = s.d.fwName
	return st
}

func (s service) Ban(ctx context.Context, name string, p netip.Prefix, dur time.Duration) (jail.Ban, error) {
	return s.d.engine.Ban(ctx, name, p, dur)
}

func (s service) Unban(ctx context.Context, p netip.Prefix, name string) ([]jail.Ban, error) {
	return s.d.engine.Unban(ctx, p, name)
}

func (s service) UnbanAll(ctx context.Context) (int, error) { return s.d.engine.UnbanAll(ctx) }
