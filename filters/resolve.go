package filters

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Source is where the definition of a filter was found: a file, or a
// filter compiled into moat.
type Source struct {
	// File is the absolute path of the file read: NAME.conf in a
	// filter.d (its NAME.local beside it is read after it, as fail2ban
	// does; File is the .local when there is no .conf), or the path a
	// spec named. Empty for a built-in.
	File string
	// Builtin is the built-in filter's name when File is empty.
	Builtin string
}

// String is the file, or "built-in NAME".
func (s Source) String() string {
	if s.File == "" {
		return "built-in " + s.Builtin
	}
	return s.File
}

// Resolve says which definition a filter spec stands for. It is the one
// lookup of moat: the daemon's jails (through Loader.Load, with a jail's
// Dirs) and `moat regex` (with the filter.d of its -c directory) both go
// through it, so a name means the same file in both, and every report
// can name it. For spec's name (its [options] are ignored here):
//
//  1. a path — the name contains '/' or ends in ".conf" or ".local" — is
//     that file, relative to the working directory;
//  2. otherwise each of dirs in order (filter.d directories: a fail2ban
//     jail's, or `moat regex -c DIR`'s DIR/filter.d) is searched for
//     NAME.conf or NAME.local; the first holding either wins;
//  3. otherwise the built-in filter NAME.
//
// A name found nowhere gives an error wrapping ErrNoFilter that lists
// where it looked.
func Resolve(spec string, dirs []string) (Source, error) {
	name, _, err := parseSpec(spec)
	if err != nil {
		return Source{}, fmt.Errorf("load filter %q: %w", spec, err)
	}
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".conf") || strings.HasSuffix(name, ".local") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return Source{}, fmt.Errorf("load filter %q: %w", spec, err)
		}
		return Source{File: abs}, nil
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		base := strings.TrimPrefix(filepath.Join(abs, name), "/")
		switch {
		case exists(base + ".conf"):
			return Source{File: "/" + base + ".conf"}, nil
		case exists(base + ".local"):
			return Source{File: "/" + base + ".local"}, nil
		}
	}
	if _, err := fs.Stat(builtinFS, "builtin/"+name+".conf"); err == nil {
		return Source{Builtin: name}, nil
	}
	where := append(append([]string{}, dirs...), "the built-in filters")
	return Source{}, fmt.Errorf("load filter %q: %w (looked in %s)", spec, ErrNoFilter, strings.Join(where, ", "))
}
