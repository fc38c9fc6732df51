// Command filterrate measures moat's built-in sshd filter against the real
// peer on the same input in the same run: it writes a generated 1M-line
// mixed auth.log (about 15% failures), times moat's filter over it, then
// times `fail2ban-regex` (Debian's fail2ban, with its own sshd filter) over
// the same file when it is installed, and prints both rates and the ratio.
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
	start = time.Now()
	out, err := exec.Command("fail2ban-regex", path, "/etc/fail2ban/filter.d/sshd.conf").CombinedOutput()
	if err != nil {
		return fmt.Errorf("fail2ban-regex: %v\n%s", err, out)
	}
	took := time.Since(start)
	f2b := float64(lines) / took.Seconds()
	m := regexp.MustCompile(`Lines: (\d+) lines, (\d+) ignored, (\d+) matched`).FindSubmatch(out)
	peerMatched := "?"
	if m != nil {
		peerMatched = string(m[3])
	}
	fmt.Printf("fail2ban-regex sshd:  %d lines, %s matched, %.0f lines/s (%s)\n", lines, peerMatched, f2b, took.Round(time.Millisecond))
	fmt.Printf("ratio moat/fail2ban:  %.1fx\n", moat/f2b)
	return nil
}

// matchFile runs filter over every line of path, as the daemon does.
func matchFile(filter *filters.Filter, path string) (matched, lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	now := time.Now()
	for sc.Scan() {
		lines++
		if _, ok := filter.Match(sc.Text(), now); ok {
			matched++
		}
	}
	return matched, lines, sc.Err()
}
