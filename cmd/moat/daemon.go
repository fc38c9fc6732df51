package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/firewall/nftables"
	"github.com/moatproj/moat/firewall/none"
	"github.com/moatproj/moat/jail"
	"github.com/moatproj/moat/jail/control"
	"github.com/moatproj/moat/pipeline"
	"github.com/moatproj/moat/proxy"
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
	logFormat := fs.String("log-format", "", "text or json (default $MOAT_LOG_FORMAT, else text when standard error is a terminal, JSON otherwise)")
	pos, err := parseArgs(fs, args, io)
	if err != nil {
		return err
	}
	if *logFormat == "" {
		*logFormat = io.getenv("MOAT_LOG_FORMAT")
	}
	switch *logFormat {
	case "", "text", "json":
	default:
		return fmt.Errorf("%w: --log-format (or $MOAT_LOG_FORMAT) is text or json, got %q", errUsage, *logFormat)
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
	logger := newLogger(io, *logFormat)
	cfg, f2b, err := loadConfig(*path, *f2bDir, io)
	if err != nil {
		printConfigError(io, err)
		return errors.New("configuration is not valid; nothing started")
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", keyError, w.Error())
	}
	if f2b != nil {
		for _, w := range f2b.Warnings {
			logger.Warn("fail2ban option not carried out", keyJail, w.Jail, "option", w.Option, "value", w.Value, "reason", w.Reason)
		}
	}
	d := &daemon{io: io, cfgPath: *path, f2bDir: *f2bDir, logger: logger, hup: hup, usr1: usr1}
	return d.run(ctx, cfg)
}

// newLogger builds the one slog handler of the process: format "text" or
// "json", or for "" text on a terminal and JSON otherwise (a service
// manager, a pipe, a container without a tty). MOAT_LOG_LEVEL=debug|warn|error.
func newLogger(io stdio, format string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(io.getenv("MOAT_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" || format == "" && io.stderrIsTerminal {
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

	// pipe follows the jails' logs into the engine.
	pipe *pipeline.Pipeline

	// proxy is the reverse proxy (nil without a proxy: section) and the
	// configuration it runs.
	proxy    *proxy.Proxy
	proxyCfg *proxy.Config

	reloadMu sync.Mutex // one reload at a time
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
	d.metrics.status = engine.Status
	set, err := d.compile(cfg)
	if err != nil {
		return err
	}
	if err := engine.Configure(ctx, jailConfigs(cfg)); err != nil {
		return fmt.Errorf("configure jails: %w", err)
	}
	d.pipe = pipeline.New(set, pipeline.Options{Engine: engine, Logger: log})

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
	d.describe(cfg)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error {
		return control.Serve(gctx, ln, control.NewHandler(service{d}, log.With(keyComponent, "control")))
	})
	g.Go(func() error { return d.pipe.Run(gctx) })
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

// compile builds the jails of cfg with their filters.
func (d *daemon) compile(cfg *configs.Config) (*pipeline.Set, error) {
	jails := make([]pipeline.Jail, 0, len(cfg.Jails))
	for _, jc := range cfg.Jails {
		m := d.metrics.forJail(jc.Name)
		j := pipeline.Jail{Name: jc.Name, LogPath: jc.LogPath, Containers: jc.Containers, FindTime: jc.FindTime,
			Metrics: pipeline.Metrics{Lines: m.lines, Failures: m.failures, Latency: m.latency}}
		if jc.Journal {
			// The journal instead of the files (backend systemd, or auto
			// without any of them when the configuration was loaded).
			j.LogPath, j.Journal, j.JournalMatch = nil, true, jc.JournalMatch
		}
		if len(j.LogPath) > 0 || len(jc.Containers) > 0 || j.Journal {
			// (The proxy's jail without a log has no filter: its failures
			// come from the proxy only.)
			f, err := buildFilter(jc.Filter, jc.Name)
			if err != nil {
				return nil, fmt.Errorf("jail %s: filter: %w", jc.Name, err)
			}
			j.Filter = f
		}
		jails = append(jails, j)
	}
	return pipeline.Compile(cfg.Docker.Root, jails)
}

func jailConfigs(cfg *configs.Config) []jail.Config {
	out := make([]jail.Config, len(cfg.Jails))
	for i, j := range cfg.Jails {
		out[i] = j.Config
	}
	return out
}

// describe logs what the daemon watches and what is missing.
func (d *daemon) describe(cfg *configs.Config) {
	for _, j := range cfg.Jails {
		if j.Journal {
			attrs := []any{keyJail, j.Name, "backend", j.Backend, "journalmatch", j.JournalMatch.String(),
				"filter", filterLabel(j.Filter), "maxretry", j.MaxRetry, "findtime", j.FindTime.String(), "bantime", banTimeLabel(j.BanTime)}
			if len(j.LogPath) > 0 {
				// auto, because none of its files existed.
				attrs = append(attrs, "missing", j.LogPath)
			}
			d.logger.Info("jail reading the journal", attrs...)
			if len(j.Containers) > 0 {
				d.logger.Info("jail watching containers", keyJail, j.Name, "containers", j.Containers, "docker_root", cfg.Docker.Root)
			}
			continue
		}
		if len(j.LogPath) == 0 && len(j.Containers) == 0 {
			d.logger.Info("jail counting the proxy's rate-limit rejections", keyJail, j.Name,
				"maxretry", j.MaxRetry, "findtime", j.FindTime.String(), "bantime", banTimeLabel(j.BanTime))
			continue
		}
		if len(j.Containers) > 0 {
			d.logger.Info("jail watching containers", keyJail, j.Name, "containers", j.Containers, "docker_root", cfg.Docker.Root)
		}
		var found, missing []string
		for _, p := range j.LogPath {
			m, _ := filepath.Glob(p)
			if len(m) == 0 {
				missing = append(missing, p)
			}
			found = append(found, m...)
		}
		d.logger.Info("jail watching", keyJail, j.Name, "filter", filterLabel(j.Filter), "files", found,
			"maxretry", j.MaxRetry, "findtime", j.FindTime.String(), "bantime", banTimeLabel(j.BanTime))
		if len(missing) > 0 {
			d.logger.Warn("no such log file yet; moat keeps running and reads it when it appears", keyJail, j.Name, "logpath", missing)
		}
	}
	if len(cfg.Jails) == 0 {
		d.logger.Warn("no jail is enabled: nothing is watched")
	}
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
			if err := d.reload(ctx, ""); err != nil {
				d.logger.Error("reload refused; the configuration in force stays", keyError, err)
			}
		}
	}
}

// reload applies a new configuration: jails added, removed or changed.
// A configuration that does not load changes nothing (a
// *control.ReloadError), nor does one without the jail want names when
// want is not "" (an error wrapping jail.ErrUnknownJail): the control
// API's reload of one jail reloads them all. Reloads (SIGHUP, the control
// API) run one at a time.
func (d *daemon) reload(ctx context.Context, want string) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, _, err := loadConfig(d.cfgPath, d.f2bDir, d.io)
	if err != nil {
		return &control.ReloadError{Err: err}
	}
	if want != "" && !slices.ContainsFunc(cfg.Jails, func(j configs.Jail) bool { return j.Name == want }) {
		return fmt.Errorf("reload: jail %q: %w", want, jail.ErrUnknownJail)
	}
	set, err := d.compile(cfg)
	if err != nil {
		return &control.ReloadError{Err: err}
	}
	if old := d.cfg; cfg.StateDir != old.StateDir || cfg.Socket != old.Socket || cfg.Firewall != old.Firewall || cfg.Metrics != old.Metrics {
		d.logger.Warn("state_dir, socket, firewall and metrics changes take effect at the next start; the running values stay")
	}
	names := make([]string, len(cfg.Jails))
	for i, j := range cfg.Jails {
		names[i] = j.Name
	}
	if err := d.engine.Configure(ctx, jailConfigs(cfg)); err != nil {
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
	d.pipe.Use(set)
	d.logger.Info("configuration reloaded", "config", cfg.File, "jails", strings.Join(names, ","))
	d.describe(cfg)
	return nil
}

// service is what the control API serves: the engine, with the followed
// files added to the status.
type service struct{ d *daemon }

func (s service) Status(name string) ([]jail.Status, error) {
	sts, err := s.d.engine.Status(name)
	if err != nil {
		return nil, err
	}
	for i := range sts {
		sts[i].Files = s.d.pipe.Files(sts[i].Jail)
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

func (s service) Version() string { return moatVersion() }

// Reload is SIGHUP's reload, asked through the control socket: every jail
// is reloaded, also when name names one. It runs to its end even if the
// client goes away, so that the engine and the log followers never run
// different configurations.
func (s service) Reload(ctx context.Context, name string) error {
	return s.d.reload(context.WithoutCancel(ctx), name)
}

func (s service) JailConfig(name string) (jail.Config, error) { return s.d.engine.JailConfig(name) }

func (s service) AddIgnoreIP(name string, ps ...netip.Prefix) ([]netip.Prefix, error) {
	return s.d.engine.AddIgnoreIP(name, ps...)
}

func (s service) DelIgnoreIP(name string, p netip.Prefix) ([]netip.Prefix, error) {
	return s.d.engine.DelIgnoreIP(name, p)
}
