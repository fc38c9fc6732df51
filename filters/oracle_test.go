package filters

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatproj/moat/filters/testgen"

	"github.com/moatproj/moat/internal/testkit"
)

// stockFilterDir is where a fail2ban install keeps its filters.
const stockFilterDir = "/etc/fail2ban/filter.d"

// TestAgainstFail2banRegex runs fail2ban-regex, when it is installed, as an
// oracle: on every sample log, moat must report the same failures (address,
// time, user, in order) as fail2ban does, both with moat's built-in filters
// and with fail2ban's own filters where they are installed. Lines fail2ban
// matches with something that is not an address (a host name it would
// resolve, "999.1.2.3") are left out: moat never resolves names.
func TestAgainstFail2banRegex(t *testing.T) {
	bin := testkit.Fail2banRegex(t)
	if testing.Short() {
		t.Skip("short: the fail2ban oracle runs a Python process per case")
	}
	type oracleCase struct {
		name, log, spec, f2bArg string
		loader                  *Loader
	}
	var cases []oracleCase
	moat := &Loader{Location: time.UTC}
	for _, c := range goldenCases {
		name, opts, _ := strings.Cut(c.spec, "[")
		arg := filepath.Join("builtin", name+".conf")
		if opts != "" {
			arg += "[" + opts
		}
		cases = append(cases, oracleCase{"moat/" + c.spec, c.log, c.spec, arg, moat})
	}
	if _, err := os.Stat(stockFilterDir); err == nil {
		stock := &Loader{Dirs: []string{stockFilterDir}, Location: time.UTC}
		for _, c := range goldenCases {
			name, opts, _ := strings.Cut(c.spec, "[")
			if strings.Contains(opts, "zones") {
				continue // an option of moat's filter only
			}
			arg := filepath.Join(stockFilterDir, name+".conf")
			if opts != "" {
				arg += "[" + opts
			}
			cases = append(cases, oracleCase{"fail2ban/" + c.spec, c.log, c.spec, arg, stock})
		}
	}
	// A generated auth.log, larger and more varied than the sample.
	gen := filepath.Join(t.TempDir(), "auth.log")
	var buf bytes.Buffer
	if err := testgen.GenerateAuthLog(&buf, 20000, 7); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gen, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, oracleCase{"moat/sshd/generated", gen, "sshd", filepath.Join("builtin", "sshd.conf"), moat})
	if _, err := os.Stat(stockFilterDir); err == nil {
		stock := &Loader{Dirs: []string{stockFilterDir}, Location: time.UTC}
		cases = append(cases, oracleCase{"fail2ban/sshd/generated", gen, "sshd", filepath.Join(stockFilterDir, "sshd.conf"), stock})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logPath := c.log
			if !filepath.IsAbs(logPath) {
				logPath = filepath.Join("testdata", c.log)
			}
			cmd := exec.Command(bin, "-o", "<ip>\t<time>\t<F-USER>", logPath, c.f2bArg)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fail2ban-regex %s: %v\n%s", c.f2bArg, err, out)
			}
			want := parseOracle(t, out)
			f, err := c.loader.Load(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			ref := time.Now()
			var got []string
			st := f.Stream()
			for _, line := range readLinesAt(t, logPath) {
				if line == "" || strings.HasPrefix(line, "#") {
					continue // fail2ban-regex skips them
				}
				if m, ok := st.Match(line, ref); ok {
					got = append(got, fmt.Sprintf("%s\t%d\t%s", m.Addr, m.Time.Unix(), m.User))
				}
			}
			if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
				t.Errorf("moat and fail2ban-regex differ on %s with %s\nmoat:\n%s\nfail2ban:\n%s", c.log, c.f2bArg, g, w)
			}
		})
	}
}

// parseOracle reads fail2ban-regex -o '<ip>\t<time>\t<F-USER>' output.
func parseOracle(t *testing.T, out []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("fail2ban-regex printed %q", sc.Text())
		}
		a, err := netip.ParseAddr(parts[0])
		if err != nil || a.IsUnspecified() {
			continue
		}
		sec, err := strconv.ParseFloat(parts[1], 64)
		if err != nil {
			t.Fatalf("fail2ban-regex time %q: %v", parts[1], err)
		}
		lines = append(lines, fmt.Sprintf("%s\t%d\t%s", a.Unmap(), int64(sec), parts[2]))
	}
	return lines
}
