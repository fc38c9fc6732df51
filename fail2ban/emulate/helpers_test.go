package emulate

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// result is what a command printed and the exit code moat gives it.
type result struct {
	stdout, stderr string
	code           int
}

// moatRegex runs Regex as `moat regex ARGS...` does, with env as the
// environment, and returns its output and moat's exit code for its error
// (0, 2 for ErrUsage, else 1; the message on stderr).
func moatRegex(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	err := Regex(args, IO{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, time.Now)
	code := 0
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, ErrUsage):
		code = 2
	default:
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(&errb, "moat: %v\n", err)
	}
	return result{out.String(), errb.String(), code}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// normalizeReport is fail2ban-regex's report without what differs from
// run to run: the "[processed in …]" line, and the case of the encoding's
// name (Python's name for it depends on the locales installed).
func normalizeReport(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "[processed in "):
			continue
		case strings.HasPrefix(l, "Use         encoding : "):
			l = strings.ToLower(l)
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
