// Command filterrate measures moat's built-in sshd filter against the real
// peer on the same input in the same run: it writes a generated 1M-line
// mixed auth.log (about 15% failures), times moat's filter over it (one
// Stream, Stream.Match per line: the daemon's path), then times
// `fail2ban-regex` (Debian's fail2ban) over the same file when it is
// installed — once with moat's own sshd filter file (the same regexes: the
// failure counts must agree) and once with fail2ban's stock sshd filter —
// and prints the rates and the ratios. Run it from the repository root.
//
//	go run ./bench/filterrate [-lines 1000000] [-peer=false]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/filters/testgen"
)

func main() {
	n := flag.Int("lines", 1_000_000, "lines of auth.log to generate")
	peer := flag.Bool("peer", true, "also run fail2ban-regex on the same file")
	flag.Parse()
	if err := run(*n, *peer); err != nil {
		fmt.Fprintln(os.Stderr, "filterrate:", err)
		os.Exit(1)
	}
}

func run(n int, peer bool) error {
	dir, err := os.MkdirTemp("", "filterrate")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "auth.log")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := testgen.GenerateAuthLog(f, n, 42); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	filter, err := (&filters.Loader{Location: time.Local}).Load("sshd")
	if err != nil {
		return err
	}
	start := time.Now()
	matched, lines, err := matchFile(filter, path)
	if err != nil {
		return err
	}
	moat := float64(lines) / time.Since(start).Seconds()
	fmt.Printf("moat sshd filter:     %d lines, %d failures, %.0f lines/s (reading the file included)\n", lines, matched, moat)

	if !peer {
		return nil
	}
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		fmt.Println("fail2ban-regex:       not installed (apt-get install fail2ban), no ratio")
		return nil
	}
	// moat's filter files, as fail2ban-regex reads them: sshd.conf includes
	// common.conf from its own directory.
	fdir := filepath.Join(dir, "filter.d")
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"sshd.conf", "common.conf"} {
		data, err := os.ReadFile(filepath.Join("filters", "builtin", name))
		if err != nil {
			return fmt.Errorf("read moat's filter (run from the repository root): %w", err)
		}
		if err := os.WriteFile(filepath.Join(fdir, name), data, 0o644); err != nil {
			return err
		}
	}
	for _, peer := range []struct{ label, filter string }{
		{"moat's sshd.conf", filepath.Join(fdir, "sshd.conf")},
		{"stock sshd.conf", "/etc/fail2ban/filter.d/sshd.conf"},
	} {
		start = time.Now()
		out, err := exec.Command("fail2ban-regex", path, peer.filter).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fail2ban-regex: %v\n%s", err, out)
		}
		took := time.Since(start)
		f2b := float64(lines) / took.Seconds()
		peerMatched := "?"
		if m := regexp.MustCompile(`Lines: \d+ lines, \d+ ignored, (\d+) matched`).FindSubmatch(out); m != nil {
			peerMatched = string(m[1])
		}
		fmt.Printf("fail2ban-regex, %s: %d lines, %s matched, %.0f lines/s (%s); moat/fail2ban %.1fx\n",
			peer.label, lines, peerMatched, f2b, took.Round(time.Millisecond), moat/f2b)
	}
	return nil
}

// matchFile runs filter over every line of path as the daemon does: through
// one Stream for the file (Stream.Match per line).
func matchFile(filter *filters.Filter, path string) (matched, lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	now := time.Now()
	stream := filter.Stream()
	for sc.Scan() {
		lines++
		if _, ok := stream.Match(sc.Text(), now); ok {
			matched++
		}
	}
	return matched, lines, sc.Err()
}
