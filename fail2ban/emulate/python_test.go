package emulate

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// TestPyReprMatchesPython compares pyRepr with Python 3's own repr on texts
// with quotes, escapes, control bytes, Unicode that Python prints and
// Unicode it escapes, and bytes that are not UTF-8 (which fail2ban decodes
// as U+FFFD).
func TestPyReprMatchesPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		testkit.Missing(t, "python3 is not installed (it comes with Debian's fail2ban): %v", err)
	}
	cases := []string{
		"", "plain", "it's", `a"b`, `both ' and "`, `back\slash`, "tab\tnl\ncr\r", "nul\x00bel\x07del\x7f",
		"café", "\u0085next line", "\u00a0nbsp", "\u2028ls\u2029ps", "\u200bzwsp", "😀 emoji", "\U000e0001tag",
		"\ufeffbom", "\ue000private", "\U0010ffff", "日本語", "bad \xff byte", "\xc3 cut", "x\uFFFDreplacement",
		"Found 192.0.2.1 - 2026-12-07 10:00:00", "jail 'sshd'",
	}
	// Python reads each case as bytes, decoded the way fail2ban reads log
	// lines (UTF-8, errors replaced), and prints its repr.
	var in []string
	for _, c := range cases {
		in = append(in, string(hexBytes(c)))
	}
	script := `import sys, json
for h in json.load(sys.stdin):
    print(repr(bytes.fromhex(h).decode('utf-8', 'replace')))`
	cmd := exec.Command(py, "-c", script)
	b, _ := json.Marshal(in)
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(want) != len(cases) {
		t.Fatalf("python3 printed %d lines for %d cases:\n%s", len(want), len(cases), out)
	}
	for i, c := range cases {
		if got := pyRepr(c); got != want[i] {
			t.Errorf("pyRepr(%q) = %s, Python's repr %s", c, got, want[i])
		}
	}
	if got, w := pyList([]string{"a", "it's"}), `['a', "it's"]`; got != w {
		t.Errorf("pyList = %s, want %s", got, w)
	}
}

func hexBytes(s string) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, digits[s[i]>>4], digits[s[i]&15])
	}
	return out
}
