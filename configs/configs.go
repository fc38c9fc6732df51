// Package configs owns moat's YAML configuration: the schema, its defaults,
// strict decoding, validation with file:line errors, and the embedded default
// configuration. It must not touch the network or the firewall.
package configs

import (
	"time"

	"github.com/moatproj/moat/jail/jailconfig"
	"github.com/moatproj/moat/proxy/proxyconfig"
)

// Config is a whole, validated configuration.
type Config struct {
	// File is where the configuration came from ("(embedded default)" for the default).
	File     string
	StateDir string
	Socket   string
	Firewall Firewall
	Metrics  Metrics
	// Proxy is the reverse proxy's settings; nil when there is no proxy:
	// section. Its jail (proxyconfig.DefaultJail) is among Jails, without
	// logpath unless the configuration gives one.
	Proxy *proxyconfig.Config
	// Docker is where container logs are read from.
	Docker Docker
	// Jails are the enabled jails, in file order.
	Jails []Jail
	// Fail2ban is a fail2ban configuration directory (the fail2ban: key or
	// Options.Fail2ban) whose enabled jails are added by the caller with
	// package configs/fail2ban; "" for none.
	Fail2ban string
	// Warnings are problems that do not stop the configuration (a journal
	// jail without journalmatch), in the form of errors, sorted by line.
	Warnings []*Error
}

// Docker is the docker section: Docker's data root, read for container
// names, labels and json-file logs (never the Docker socket).
type Docker struct {
	Root string
}

// Firewall is the firewall section.
type Firewall struct {
	// Backend is "auto", "nftables" or "none".
	Backend string
	// Table is the name of the nftables table moat owns (inet family).
	Table string
	// Check is how often the table is checked for having been flushed.
	Check time.Duration
}

// Metrics is the metrics section; an empty Listen serves no metrics.
type Metrics struct {
	Listen string
}

// Jail is one jail as configured: the engine's settings plus where its
// failures come from.
type Jail struct {
	jailconfig.Config
	Filter Filter
	// LogPath lists paths and globs to follow.
	LogPath []string
	// Containers selects Docker containers whose json-file logs are
	// followed too: names, or label:KEY[=VALUE] selectors.
	Containers []string
	// Backend is the backend: setting as written, with fail2ban's names:
	// "auto" (LogPath when one of its patterns matches an existing file
	// when the configuration is loaded, else the journal), "polling" and
	// "pyinotify" (LogPath, followed the same way whichever is named),
	// "systemd" (the journal; no LogPath); "" when not set, which reads
	// LogPath. It never concerns Containers, which are read either way.
	Backend string
	// Journal is set when the jail reads the systemd journal, through
	// JournalMatch, instead of LogPath: for backend systemd, and for auto
	// when none of LogPath's patterns matched a file at load. Load works
	// it out at each load, so at start and at each reload (SIGHUP): an
	// auto jail moves to its files at the first reload after they appear,
	// never by itself. LogPath is kept as written either way.
	Journal bool
	// JournalMatch selects the journal entries the jail reads when
	// Journal is set (the journalmatch: setting); nil reads them all.
	JournalMatch JournalMatch
	// Line is the line of the jail's key in the file, for messages.
	Line int
}

// Filter names a filter (a built-in name, a name with options such as
// "sshd[mode=aggressive]", or a path to a filter.d file) or gives the
// regexes inline.
type Filter struct {
	// Dirs are filter.d directories searched for Name before moat's
	// built-ins (a fail2ban jail's filters come from its filter.d).
	Dirs        []string
	Name        string
	FailRegex   []string
	IgnoreRegex []string
	// LogType is the kind of line the jail's source gives the filter, as
	// fail2ban's logtype option: "journal" for a jail reading the journal;
	// a fail2ban jail's is "file" otherwise. A filter.d filter that reads
	// logtype gets it (filters.Loader.LoadLogType) unless it pins its own;
	// "" leaves the filter as it is.
	LogType string
}
