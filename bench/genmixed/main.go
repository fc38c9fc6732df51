// Command genmixed writes the generated logs of a host running ten commonly
// jailed services (testgen.MixedLogs) into a directory, and prints one line
// per file: its name, its line count and the stock filters that read it.
//
//	go run ./bench/genmixed -dir /tmp/mixed -lines 1000000
//
// With -sshd FILE it writes testgen.GenerateSSHDLog's auth.log instead.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moatproj/moat/filters/testgen"
)

func main() {
	dir := flag.String("dir", ".", "directory to write the logs into")
	lines := flag.Int("lines", 1_000_000, "lines in all files together")
	seed := flag.Int64("seed", 42, "generator seed")
	sshd := flag.String("sshd", "", "write only the multi-line sshd auth.log of -lines lines to this file")
	flag.Parse()
	if err := run(*dir, *sshd, *lines, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genmixed:", err)
		os.Exit(1)
	}
}

func run(dir, sshd string, lines int, seed int64) error {
	if sshd != "" {
		return write(sshd, func(f *os.File) error { return testgen.GenerateSSHDLog(f, lines, seed) })
	}
	for _, l := range testgen.MixedLogs {
		n := int(float64(lines) * l.Share)
		path := filepath.Join(dir, l.Name)
		if err := write(path, func(f *os.File) error { return l.Generate(f, n, seed) }); err != nil {
			return err
		}
		fmt.Printf("%s %d %s\n", path, n, strings.Join(l.Filters, ","))
	}
	return nil
}

func write(path string, gen func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	if err := gen(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
