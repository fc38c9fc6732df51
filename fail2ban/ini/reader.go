package ini

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Reader reads files with their includes and .local overrides. It caches
// what it parsed; it is not safe for concurrent use.
type Reader struct {
	readFile func(name string) ([]byte, error)
	parsed   map[string]parsed
	visits   int // files visited by the current Files call
}

type parsed struct {
	doc *Doc // nil: the file does not exist
	err error
}

// NewReader returns a Reader that reads a file with readFile. Names are
// '/'-separated paths as fail2ban writes them; readFile gets them as
// joined (not cleaned). A file that does not exist must give an error
// wrapping fs.ErrNotExist.
func NewReader(readFile func(name string) ([]byte, error)) *Reader {
	return &Reader{readFile: readFile, parsed: map[string]parsed{}}
}

// Parse reads and parses one file without its includes; a file that does
// not exist gives (nil, nil).
func (r *Reader) Parse(name string) (*Doc, error) {
	if p, ok := r.parsed[name]; ok {
		return p.doc, p.err
	}
	var p parsed
	data, err := r.readFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		p.err = fmt.Errorf("read %s: %w", name, err)
	default:
		p.doc, p.err = Parse(name, string(data))
	}
	r.parsed[name] = p
	return p.doc, p.err
}

// Files returns the files to read for names, in merge order (see the
// package documentation); files that do not exist are left out.
func (r *Reader) Files(names ...string) ([]string, error) {
	r.visits = 0
	return r.files(names, nil)
}

// Read reads names (see Files) and merges them into one Doc; it also
// returns the files read.
func (r *Reader) Read(names ...string) (*Doc, []string, error) {
	files, err := r.Files(names...)
	if err != nil {
		return nil, nil, err
	}
	doc := New()
	for _, f := range files {
		d, err := r.Parse(f)
		if err != nil {
			return nil, nil, err
		}
		doc.Merge(d)
	}
	return doc, files, nil
}

func (r *Reader) files(names, seen []string) ([]string, error) {
	names, err := r.withLocal(names)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range names {
		sub, err := r.withIncludes(name, seen)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// withLocal follows each X.ext in names by X.local when that is a file
// and not in names already.
func (r *Reader) withLocal(names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		out = append(out, name)
		local := stripExt(name) + ".local"
		if contains(names, local) {
			continue
		}
		if _, err := r.readFile(local); err != nil {
			continue // fail2ban's os.path.isfile
		}
		out = append(out, local)
	}
	return out, nil
}

// withIncludes returns name between its before and after includes.
func (r *Reader) withIncludes(name string, seen []string) ([]string, error) {
	if r.visits++; r.visits > maxFiles {
		return nil, fmt.Errorf("read %s: more than %d files to read", name, maxFiles)
	}
	doc, err := r.Parse(name)
	if err != nil || doc == nil {
		return nil, err
	}
	var lists [2][]string
	if doc.Section("INCLUDES") != nil {
		for i, which := range []string{"before", "after"} {
			val, ok, err := doc.Get("INCLUDES", which, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: [INCLUDES] %s: %w", name, which, err)
			}
			if !ok {
				continue
			}
			for _, inc := range strings.Split(val, "\n") {
				path := joinPath(dirName(name), inc)
				if contains(seen, path) {
					continue
				}
				if len(seen) >= MaxIncludeDepth {
					return nil, fmt.Errorf("include %s from %s: includes nested deeper than %d", inc, name, MaxIncludeDepth)
				}
				sub, err := r.files([]string{path}, append(append([]string(nil), seen...), name))
				if err != nil {
					return nil, fmt.Errorf("include %s from %s: %w", inc, name, err)
				}
				lists[i] = append(lists[i], sub...)
			}
		}
	}
	out := append(lists[0], name)
	return append(out, lists[1]...), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dirName is Python's os.path.dirname.
func dirName(p string) string {
	head := p[:strings.LastIndexByte(p, '/')+1]
	if trimmed := strings.TrimRight(head, "/"); trimmed != "" {
		return trimmed
	}
	return head
}

// joinPath is Python's os.path.join of two parts.
func joinPath(dir, name string) string {
	switch {
	case strings.HasPrefix(name, "/") || dir == "":
		return name
	case strings.HasSuffix(dir, "/"):
		return dir + name
	}
	return dir + "/" + name
}

// stripExt is p without its extension (Python's os.path.splitext).
func stripExt(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	dot := strings.LastIndexByte(base, '.')
	if dot <= 0 || strings.Trim(base[:dot], ".") == "" {
		return p
	}
	return p[:len(p)-len(base)+dot]
}
