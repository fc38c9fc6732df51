package configs

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// SystemPath is where Load looks for a configuration when given no path.
const SystemPath = "/etc/moat/moat.yaml"

// EmbeddedName is Config.File for the embedded default.
const EmbeddedName = "(embedded default)"

// DefaultYAML is the text of the embedded default configuration: it guards
// sshd through /var/log/auth.log, or through the systemd journal where
// that file does not exist, and, being commented, serves as the minimal
// example (`moat check` may print it). Do not modify it.
//
//go:embed default.yaml
var DefaultYAML []byte

// ExampleYAML is a fuller example configuration (several nginx jails,
// escalation, ignore lists, ports). Do not modify it.
//
//go:embed example.yaml
var ExampleYAML []byte

// Env is what the defaults depend on: who runs moat and where the XDG base
// directories are.
type Env struct {
	// Root is true when running as root (effective UID 0).
	Root bool
	// XDGStateHome and XDGRuntimeDir are $XDG_STATE_HOME and
	// $XDG_RUNTIME_DIR; relative values are ignored, as the XDG
	// specification asks.
	XDGStateHome, XDGRuntimeDir string
	// Home is the user's home directory.
	Home string
	UID  int
}

// EnvFromOS reads Env from the running process.
func EnvFromOS() Env {
	home, err := os.UserHomeDir()
	if err != nil {
		home = ""
	}
	return Env{
		Root:          os.Geteuid() == 0,
		XDGStateHome:  os.Getenv("XDG_STATE_HOME"),
		XDGRuntimeDir: os.Getenv("XDG_RUNTIME_DIR"),
		Home:          home,
		UID:           os.Getuid(),
	}
}

// Options are the inputs of Parse besides the text.
type Options struct {
	// Env picks the defaults of state_dir, socket and firewall.backend.
	Env Env
	// CheckFilter, when not nil, is called once for the filter of every
	// enabled jail; an error it returns becomes an *Error at the jail's
	// filter: line (its message is included). It must be safe to call from
	// the goroutine calling Parse.
	CheckFilter func(f Filter) error
	// Fail2ban, when set, is a fail2ban configuration directory whose
	// enabled jails join the file's (`moat run --fail2ban DIR`); the file
	// may then have no jails of its own.
	Fail2ban string
	// LogExists says whether a logpath pattern names an existing file, for
	// the jails with backend: auto (Jail.Journal). Load uses LogExists
	// when it is nil; Parse takes every pattern as existing.
	LogExists func(pattern string) bool
}

// Load reads and parses the configuration at path. An empty path means
// SystemPath when that file exists, else the embedded default (Config.File
// is then EmbeddedName; with opts.Fail2ban, without its jails). A named file that does not exist gives an error
// wrapping ErrNotFound (and fs.ErrNotExist); a bad file gives *Error values
// as Parse does.
func Load(path string, opts Options) (*Config, error) {
	return load(path, SystemPath, opts)
}

func load(path, systemPath string, opts Options) (*Config, error) {
	if opts.LogExists == nil {
		opts.LogExists = LogExists
	}
	if path == "" {
		data, err := os.ReadFile(systemPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return Default(opts)
		case err != nil:
			return nil, fmt.Errorf("read config: %w", err)
		}
		return Parse(systemPath, data, opts)
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read config: %w: %w", ErrNotFound, err)
	case err != nil:
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, opts)
}

// Default parses the embedded default configuration. With opts.Fail2ban
// it has no jails: the fail2ban directory is the configuration, and the
// default gives only its other settings (state directory, socket,
// firewall).
func Default(opts Options) (*Config, error) {
	cfg, err := Parse(EmbeddedName, DefaultYAML, opts)
	if err == nil && opts.Fail2ban != "" {
		cfg.Jails, cfg.Warnings = nil, nil
	}
	return cfg, err
}
