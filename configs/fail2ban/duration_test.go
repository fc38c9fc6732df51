package fail2ban

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

var durationTests = []struct {
	in      string
	want    time.Duration
	wantErr bool
}{
	{in: "600", want: 600 * time.Second},
	{in: "-1", want: -time.Second},
	{in: "0", want: 0},
	{in: "10m", want: 10 * time.Minute},
	{in: "1h", want: time.Hour},
	{in: "1d", want: 24 * time.Hour},
	{in: "1w", want: 7 * 24 * time.Hour},
	{in: "48h", want: 48 * time.Hour},
	{in: "1d12h", want: 36 * time.Hour},
	{in: "1h 30m", want: 90 * time.Minute},
	{in: "1h-5m", want: 55 * time.Minute},
	{in: "1.5h", want: 90 * time.Minute},
	{in: "10 minutes", want: 10 * time.Minute},
	{in: "2 Days", want: 48 * time.Hour},
	{in: "30sec", want: 30 * time.Second},
	{in: "1mo", want: 2629800 * time.Second},
	{in: "1y", want: 31557600 * time.Second},
	{in: " 5m ", want: 5 * time.Minute},
	{in: "", wantErr: true},
	{in: "m", wantErr: true},
	{in: "10ms", wantErr: true},
	{in: "10 parsecs", wantErr: true},
	{in: "1..2", wantErr: true},
	{in: "1e400y", wantErr: true},
}

// TestParseDuration checks fail2ban time values: ParseDuration(in) = want.
func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseDuration(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseDurationAgainstFail2ban runs fail2ban's own str2seconds on every
// valid case of the table and compares.
func TestParseDurationAgainstFail2ban(t *testing.T) {
	py := fail2banPython(t)
	var ins []string
	for _, tt := range durationTests {
		if !tt.wantErr {
			ins = append(ins, tt.in)
		}
	}
	script := `import sys
from fail2ban.server.mytime import MyTime
for l in sys.stdin.read().split("\n"):
    if l: print(float(MyTime.str2seconds(l)))`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(ins, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run fail2ban str2seconds: %v", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(ins) {
		t.Fatalf("fail2ban printed %d values for %d inputs", len(lines), len(ins))
	}
	for i, in := range ins {
		f, err := strconv.ParseFloat(lines[i], 64)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseDuration(in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v; fail2ban reads %v s", in, err, f)
			continue
		}
		if got != time.Duration(f*float64(time.Second)) {
			t.Errorf("ParseDuration(%q) = %v, fail2ban reads %v s", in, got, f)
		}
	}
}

// fail2banPython returns the Python interpreter fail2ban-client runs with
// (from its #! line), skipping the test when fail2ban is not installed.
func fail2banPython(t *testing.T) string {
	t.Helper()
	client := testkit.Fail2banClient(t)
	data, err := os.ReadFile(client)
	if err != nil {
		t.Fatalf("read %s: %v", client, err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	py := strings.TrimSpace(strings.TrimPrefix(first, "#!"))
	if !strings.HasPrefix(first, "#!") || exec.Command(py, "-c", "import fail2ban.server.mytime").Run() != nil {
		testkit.Missing(t, "%s is not a Python script that can import fail2ban: cannot compare with fail2ban", client)
	}
	return py
}

func FuzzParseDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseDuration(s)
	})
}
