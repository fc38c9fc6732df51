// Command moat guards a Docker host: it follows logs, turns repeated
// failures into bans and enforces them with nftables. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one stops waiting for shutdown.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], newIO()))
}
