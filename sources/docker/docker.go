// Package docker reads Docker containers' logs without the Docker socket.
//
// It learns containers from Docker's data root (root/containers/<id>/
// config.v2.json and hostconfig.json), picks them with selectors (by name, by
// label, by id prefix), says where the json-file driver writes each one's log,
// and decodes that log's lines back into the program's own lines. A Watcher
// polls the data root and reports when the set of selected containers changes.
// It is moat's one reader of the data root: a Container also holds what the
// container may do (its user, capabilities, limits, network and published
// ports), which moat audit judges.
//
// It only reads files: it never talks to the Docker daemon, never writes under
// the data root, and does not follow files itself (sources/follow does) nor
// match failures (the filters do).
package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moatproj/moat/internal/jsonerr"
)

// Log drivers named in hostconfig.json's LogConfig.Type.
const (
	// DriverJSONFile is the only driver whose log moat can read.
	DriverJSONFile = "json-file"
	driverLocal    = "local"
	// DriverJournald's entries are in the systemd journal, which moat
	// reads for containers too (sources/journal, by CONTAINER_ID_FULL).
	DriverJournald = "journald"
	driverNone     = "none"
)

// File names inside root/containers/<id>/, as Docker writes them.
const (
	configFile     = "config.v2.json"
	hostConfigFile = "hostconfig.json"
	jsonLogSuffix  = "-json.log"
	containersDir  = "containers"
)

// maxConfigSize bounds how much of a container's JSON files is read. Real
// config.v2.json files are a few KiB (tens with many mounts or env vars).
const maxConfigSize = 4 << 20

// Container is what moat knows of one container, read from its files.
type Container struct {
	// ID is the 64-hex-digit id, also the directory name.
	ID string
	// Name is the container's name without Docker's leading '/'.
	Name string
	// Labels are Config.Labels (never nil after Scan).
	Labels map[string]string
	// LogDriver is hostconfig.json's LogConfig.Type; "" if hostconfig.json
	// does not say (Docker then uses the daemon's default, json-file unless
	// configured otherwise).
	LogDriver string
	// LogPath is the log path Docker recorded (as Docker sees it; "" until the
	// container first started with json-file). Prefer JSONLogPath.
	LogPath string
	// Running is State.Running.
	Running bool
	// Created is when the container was created.
	Created time.Time

	// User is Config.User, the container's configuration merged with its
	// image's: "" means the image names no user, so it runs as root.
	User string
	// ExposedPorts are the keys of Config.ExposedPorts ("80/tcp"), sorted.
	ExposedPorts []string
	// Networks are NetworkSettings.Networks, by network name.
	Networks map[string]Network
	// Host is what hostconfig.json says of the container's privileges,
	// limits, network and published ports.
	Host HostConfig
}

// Network is what moat reads of a container's endpoint on one network.
type Network struct {
	IPAddress         string
	GlobalIPv6Address string
}

// HostConfig is the part of hostconfig.json, beyond the log driver, that
// moat reads, with the field names of moby's api/types/container.HostConfig.
type HostConfig struct {
	Privileged bool
	CapAdd     []string
	// Memory is the memory limit in bytes; 0 is none.
	Memory int64
	// PidsLimit is nil, 0 or negative for no limit.
	PidsLimit *int64
	// PortBindings are the published ports, by container port ("80/tcp").
	PortBindings    map[string][]PortBinding
	PublishAllPorts bool
	NetworkMode     string
	ReadonlyRootfs  bool
	SecurityOpt     []string
	UsernsMode      string
}

// PortBinding is one host address and port a container port is published
// on; empty fields are Docker's defaults (the daemon's "ip", a port it picks).
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// configV2 is the subset of config.v2.json that moat reads. Field names are
// those of moby's daemon/container.Container, which has no json tags on them.
type configV2 struct {
	ID      string
	Name    string
	Created time.Time
	LogPath string
	State   *struct {
		Running bool
	}
	Config *struct {
		Labels       map[string]string
		User         string
		ExposedPorts map[string]struct{}
	}
	NetworkSettings *struct {
		Networks map[string]Network
	}
}

// logConfig is the log driver part of hostconfig.json (moby's
// api/types/container.HostConfig).
type logConfig struct {
	LogConfig struct {
		Type string
	}
}

// A ContainerError is a container that Scan skipped because one of its
// files could not be read or decoded.
type ContainerError struct {
	// ID is the container's directory name, and Dir that directory.
	ID, Dir string
	// File is the file at fault: config.v2.json or hostconfig.json.
	File string
	// Decoding is true when File was read but is not what Docker writes:
	// Err then names the line and column, or the mismatch.
	Decoding bool
	// Err is why: for a file that could not be read, an error from os
	// naming it.
	Err error
}

func (e *ContainerError) Error() string {
	what := "container config"
	if e.File == hostConfigFile {
		what = "container host config"
	}
	if e.Decoding {
		return fmt.Sprintf("parse %s %s: %v", what, filepath.Join(e.Dir, e.File), e.Err)
	}
	return fmt.Sprintf("read %s: %v", what, e.Err)
}

func (e *ContainerError) Unwrap() error { return e.Err }

// ContainersDir is root/containers, where Docker keeps one directory per
// container.
func ContainersDir(root string) string {
	return filepath.Join(root, containersDir)
}

// JSONLogPath is where the json-file driver writes c's log:
// root/containers/<id>/<id>-json.log. Docker rotates it by renaming it to
// <path>.1 (after shifting .1 to .2, and so on).
//
// The path is derived from root and the id rather than taken from c.LogPath,
// because LogPath is the path as the Docker daemon sees it, and moat may see
// the data root at another place (a read-only bind mount in moat's own
// container); for json-file Docker always writes it at this place under its
// root.
func JSONLogPath(root string, c Container) string {
	return filepath.Join(root, containersDir, c.ID, c.ID+jsonLogSuffix)
}

// Scan reads every container under root/containers. A container whose
// config.v2.json or hostconfig.json is missing, unreadable or garbled is
// skipped, with a *ContainerError naming the file in errs; the others are
// returned, sorted by name then id. A missing or unreadable root/containers
// is one error in errs, wrapping os.ReadDir's. Scan is safe for concurrent
// use.
func Scan(root string) (cs []Container, errs []error) {
	dir := ContainersDir(root)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read containers directory: %w", err)}
	}
	for _, e := range ents {
		if !e.IsDir() || !isID(e.Name()) {
			continue
		}
		c, err := readContainer(filepath.Join(dir, e.Name()), e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c)
	}
	sortContainers(cs)
	return cs, errs
}

func sortContainers(cs []Container) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Name != cs[j].Name {
			return cs[i].Name < cs[j].Name
		}
		return cs[i].ID < cs[j].ID
	})
}

// readContainer reads the container in dir, whose directory name is id.
// An error is a *ContainerError.
func readContainer(dir, id string) (Container, error) {
	fail := func(file string, decoding bool, err error) (Container, error) {
		return Container{}, &ContainerError{ID: id, Dir: dir, File: file, Decoding: decoding, Err: err}
	}
	b, err := readSmall(filepath.Join(dir, configFile))
	if err != nil {
		return fail(configFile, false, err)
	}
	c, err := parseConfig(b, id)
	if err != nil {
		return fail(configFile, true, err)
	}
	b, err = readSmall(filepath.Join(dir, hostConfigFile))
	if err != nil {
		return fail(hostConfigFile, false, err)
	}
	// Two passes, so that a type error names the key as the file has it
	// (an embedded struct would prefix it with its type's name).
	var lc logConfig
	if err := json.Unmarshal(b, &lc); err != nil {
		return fail(hostConfigFile, true, jsonerr.Describe(b, err))
	}
	if err := json.Unmarshal(b, &c.Host); err != nil {
		return fail(hostConfigFile, true, jsonerr.Describe(b, err))
	}
	c.LogDriver = lc.LogConfig.Type
	return c, nil
}

// readSmall reads a file of at most maxConfigSize bytes. Errors from os name
// the file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	if fi.Size() > maxConfigSize {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", maxConfigSize)}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", maxConfigSize)}
	}
	return b, nil
}

// parseConfig decodes config.v2.json for the container in directory id.
func parseConfig(b []byte, id string) (Container, error) {
	var cfg configV2
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Container{}, jsonerr.Describe(b, err)
	}
	if cfg.ID != id {
		return Container{}, fmt.Errorf("id %q does not match its directory %q", cfg.ID, id)
	}
	c := Container{
		ID:      cfg.ID,
		Name:    strings.TrimPrefix(cfg.Name, "/"),
		LogPath: cfg.LogPath,
		Created: cfg.Created,
		Labels:  map[string]string{},
	}
	if cfg.State != nil {
		c.Running = cfg.State.Running
	}
	if cfg.Config != nil {
		for k, v := range cfg.Config.Labels {
			c.Labels[k] = v
		}
		c.User = cfg.Config.User
		for p := range cfg.Config.ExposedPorts {
			c.ExposedPorts = append(c.ExposedPorts, p)
		}
		sort.Strings(c.ExposedPorts)
	}
	if cfg.NetworkSettings != nil {
		c.Networks = cfg.NetworkSettings.Networks
	}
	return c, nil
}

// isID reports whether s looks like a container id: 64 lowercase hex digits.
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	return isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// DriverProblem says, in one line, why moat cannot read c's log and what to
// configure instead, or "" when c uses the json-file driver (or does not say,
// which means the daemon default).
func DriverProblem(c Container) string {
	fix := `set "log-driver": "json-file" (or "journald") in /etc/docker/daemon.json (or "logging: {driver: json-file}" in its compose service, or --log-driver json-file) and recreate the container`
	name := c.Name
	if name == "" {
		name = shortID(c.ID)
	}
	switch c.LogDriver {
	case "", DriverJSONFile, DriverJournald:
		return ""
	case driverNone:
		return fmt.Sprintf("container %s has logging disabled (log driver none), so moat has no log to read: %s", name, fix)
	case driverLocal:
		return fmt.Sprintf("container %s uses the local log driver, whose files are in a private binary format moat does not read: %s", name, fix)
	default:
		return fmt.Sprintf("container %s uses the %s log driver, whose log moat cannot read from disk: %s", name, c.LogDriver, fix)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
