// Package testkit is what moat's tests share. It is imported only by
// tests and by test helper packages (such as nftest): no program code may
// import it.
package testkit

import (
	"fmt"
	"os"
	"testing"
)

// CI says whether the tests run in moat's CI (.ci/run sets MOAT_CI=1),
// where every tool and privilege a test needs is there.
func CI() bool { return os.Getenv("MOAT_CI") == "1" }

// Missing ends a test that cannot run here because a tool, a file or a
// privilege it needs is missing: it skips, with the reason, or under
// MOAT_CI=1 it fails, so that a test that did not run never passes in CI.
// Tests that leave themselves out on purpose (-short, -race) call t.Skip
// instead.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("MOAT_CI=1, and this test cannot run: %s", msg)
	}
	t.Skip(msg)
}
