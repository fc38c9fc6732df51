// Command genlog writes the generated mixed auth.log the benchmarks use
// (about 12% sshd failures, documentation addresses) to standard output.
//
//	go run ./bench/genlog -lines 1000000 > auth.log
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/moatproj/moat/filters/testgen"
)

func main() {
	n := flag.Int("lines", 1_000_000, "lines to write")
	seed := flag.Int64("seed", 42, "generator seed")
	flag.Parse()
	if err := testgen.GenerateAuthLog(os.Stdout, *n, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genlog:", err)
		os.Exit(1)
	}
}
