// Package testkit is what moat's tests share. It is imported only by
// tests and by test helper packages (such as nftest): no program code may
// import it.
package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
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

// Fail2banRegex is the path of fail2ban-regex, or the test ends (Missing).
func Fail2banRegex(t testing.TB) string {
	t.Helper()
	return tool(t, "fail2ban-regex", "Debian's fail2ban")
}

// Fail2banClient is the path of fail2ban-client, or the test ends
// (Missing).
func Fail2banClient(t testing.TB) string {
	t.Helper()
	return tool(t, "fail2ban-client", "Debian's fail2ban")
}

func tool(t testing.TB, name, from string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (it comes with %s; .ci/run installs it): %v", name, from, err)
	}
	return p
}

// Race says whether the test binary was built with -race, which makes
// timing-bound work several times slower.
func Race() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
