package fail2ban

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatproj/moat/internal/testkit"
)

// The acceptance test: a jail.local written here enables sshd,
// nginx-http-auth and recidive with overrides on top of Debian's installed
// /etc/fail2ban (copied to a temp dir), and the effective values Load
// computes must equal those `fail2ban-client -c DIR -d` prints for the
// same directory. Nothing of fail2ban's answers is written down here.

const installedDir = "/etc/fail2ban"

// acceptanceLocal is the jail.local of the test; TMP is the temp dir.
const acceptanceLocal = `[DEFAULT]
bantime  = 1h
findtime = 15m
ignoreip = 127.0.0.1/8 ::1, 192.0.2.0/24
# paths-debian.conf's variables, pointed at the test's logs:
syslog_authpriv = TMP/log/auth.log
nginx_error_log = TMP/log/nginx/*error.log
bantime.increment = true
bantime.factor = 2
bantime.maxtime = 5w
bantime.multipliers = 1 2 4 8 16
bantime.rndtime = 10m

[sshd]
enabled  = true
mode     = aggressive
port     = ssh,2222
backend  = polling

[nginx-http-auth]
enabled  = true
bantime  = 2d
findtime = 1h 30m
port     = %(known/port)s,8000:8100
action   = %(action_mw)s

[recidive]
enabled    = true
logpath    = TMP/log/fail2ban.log
ignoreip   = 198.51.100.0/24 203.0.113.7
ignoreself = false
bantime.increment = false

# A journal jail: fail2ban ignores its logpath, and so does moat.
[postfix]
enabled  = true
backend  = systemd
`

// acceptanceJailD is a jail.d pair: the .conf is overridden by jail.local,
// the .local overrides jail.local.
var acceptanceJailD = map[string]string{
	"jail.d/moat-test.conf":  "[sshd]\nmaxretry = 7\nfindtime = 5m\n",
	"jail.d/moat-test.local": "[sshd]\nmaxretry = 3\n[nginx-http-auth]\nmaxretry = 4\n",
}

// f2bJail is what fail2ban-client -d says about one jail.
type f2bJail struct {
	name, backend  string
	set            map[string]any
	ignoreIP       []string
	logPaths       []string
	journalMatch   []string // the arguments of its addjournalmatch commands, "+" between them
	actions        []string
	actionPort     map[string]string // action name → its port option
	filter         string
	logPattern     string // logpath after interpolation, as JailsReader has it
	secondsByField map[string]float64
}

func TestAcceptanceAgainstFail2banClient(t *testing.T) {
	client := testkit.Fail2banClient(t)
	if _, err := os.Stat(filepath.Join(installedDir, "jail.conf")); err != nil {
		testkit.Missing(t, "no %s/jail.conf (Debian package fail2ban): cannot compare with fail2ban", installedDir)
	}
	py := fail2banPython(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "fail2ban")
	copyTree(t, installedDir, dir)
	for _, f := range []string{"log/auth.log", "log/nginx/site-error.log", "log/nginx/other-error.log", "log/fail2ban.log"} {
		writeFile(t, filepath.Join(tmp, f), "")
	}
	writeFile(t, filepath.Join(dir, "jail.local"), strings.ReplaceAll(acceptanceLocal, "TMP", tmp))
	for name, text := range acceptanceJailD {
		writeFile(t, filepath.Join(dir, name), text)
	}

	res, err := Load(dir, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := runFail2banClient(t, client, py, dir)

	var gotNames, wantNames []string
	for _, j := range res.Jails {
		gotNames = append(gotNames, j.Name)
	}
	for _, j := range want {
		wantNames = append(wantNames, j.name)
	}
	if !slices.Equal(gotNames, wantNames) {
		t.Fatalf("enabled jails %v, fail2ban-client: %v", gotNames, wantNames)
	}
	for i, j := range res.Jails {
		w := want[i]
		t.Run(j.Name, func(t *testing.T) {
			compareJail(t, j, w, res.Warnings)
		})
	}
	// The JSON of check --json carries the same values.
	data, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Jails []struct {
			Name     string   `json:"name"`
			MaxRetry int      `json:"maxretry"`
			FindTime float64  `json:"findtime"`
			BanTime  float64  `json:"bantime"`
			Filter   string   `json:"filter"`
			LogPath  []string `json:"logpath"`
		} `json:"jails"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for i, j := range doc.Jails {
		w := want[i]
		if j.Name != w.name || int64(j.MaxRetry) != w.set["maxretry"] || j.FindTime != w.secondsByField["findtime"] ||
			j.BanTime != w.secondsByField["bantime"] || j.Filter != w.filter || !slices.Equal(expandGlobs(j.LogPath), w.logPaths) {
			t.Errorf("JSON jail %+v, fail2ban: %s maxretry %v findtime %v bantime %v filter %q logpath %v",
				j, w.name, w.set["maxretry"], w.secondsByField["findtime"], w.secondsByField["bantime"], w.filter, w.logPaths)
		}
	}
}

// TestAllStockJailsAgainstFail2ban enables every jail of the installed
// jail.conf and compares each one's effective values with fail2ban's:
// this exercises the interpolation of paths-*.conf and every jail's own
// overrides.
func TestAllStockJailsAgainstFail2ban(t *testing.T) {
	client := testkit.Fail2banClient(t)
	if _, err := os.Stat(filepath.Join(installedDir, "jail.conf")); err != nil {
		testkit.Missing(t, "no %s/jail.conf (Debian package fail2ban): cannot compare with fail2ban", installedDir)
	}
	py := fail2banPython(t)
	dir := filepath.Join(t.TempDir(), "fail2ban")
	copyTree(t, installedDir, dir)
	writeFile(t, filepath.Join(dir, "jail.local"), "[DEFAULT]\nenabled = true\n")
	res, err := Load(dir, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := runFail2banClient(t, client, py, dir)
	if len(want) < 50 {
		t.Fatalf("fail2ban-client enabled only %d jails", len(want))
	}
	if len(res.Jails) != len(want) {
		t.Fatalf("%d jails, fail2ban-client %d", len(res.Jails), len(want))
	}
	for i, j := range res.Jails {
		w := want[i]
		if j.Name != w.name {
			t.Fatalf("jail %d is %s, fail2ban-client: %s", i, j.Name, w.name)
		}
		t.Run(j.Name, func(t *testing.T) {
			compareJail(t, j, w, res.Warnings)
		})
	}
}

func compareJail(t *testing.T, j Jail, w *f2bJail, warns []Warning) {
	if j.Backend != w.backend {
		t.Errorf("backend %q, fail2ban %q", j.Backend, w.backend)
	}
	// fail2ban reads the journal for systemd; moat also for auto when
	// fail2ban finds no log file (where fail2ban would not start the jail).
	if journal := strings.HasPrefix(w.backend, "systemd") || w.backend == "auto" && len(w.logPaths) == 0; j.Journal != journal {
		t.Errorf("moat reads the journal: %v; fail2ban's backend %s with log files %v", j.Journal, w.backend, w.logPaths)
	}
	if got := j.JournalMatch.Args(); !slices.Equal(got, w.journalMatch) {
		t.Errorf("journalmatch %q, fail2ban %q", got, w.journalMatch)
	}
	if mr, ok := w.set["maxretry"].(int64); !ok || int64(j.MaxRetry) != mr {
		t.Errorf("maxretry %d, fail2ban %v", j.MaxRetry, w.set["maxretry"])
	}
	for field, got := range map[string]time.Duration{
		"findtime": j.FindTime, "bantime": j.BanTime,
		"bantime.maxtime": j.Increment.MaxTime, "bantime.rndtime": j.Increment.RndTime,
	} {
		want, ok := w.secondsByField[field]
		if !ok {
			if got != 0 && field != "findtime" && field != "bantime" {
				t.Errorf("%s = %v, fail2ban sets none", field, got)
			}
			continue
		}
		if got.Seconds() != want {
			t.Errorf("%s = %v s, fail2ban %v s", field, got.Seconds(), want)
		}
	}
	if inc, _ := w.set["bantime.increment"].(bool); inc != j.Increment.Enabled {
		t.Errorf("bantime.increment %v, fail2ban %v", j.Increment.Enabled, w.set["bantime.increment"])
	}
	if s, ok := w.set["bantime.factor"].(string); ok {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != j.Increment.Factor {
			t.Errorf("bantime.factor %v, fail2ban %q", j.Increment.Factor, s)
		}
	}
	if s, ok := w.set["bantime.multipliers"].(string); ok {
		var want []float64
		for _, f := range strings.Fields(s) {
			v, _ := strconv.ParseFloat(f, 64)
			want = append(want, v)
		}
		if !slices.Equal(j.Increment.Multipliers, want) {
			t.Errorf("bantime.multipliers %v, fail2ban %q", j.Increment.Multipliers, s)
		}
	}
	ignoreSelf := true
	if b, ok := w.set["ignoreself"].(bool); ok {
		ignoreSelf = b
	}
	if j.IgnoreSelf != ignoreSelf {
		t.Errorf("ignoreself %v, fail2ban %v", j.IgnoreSelf, ignoreSelf)
	}
	var ips []string
	for _, p := range j.IgnoreIP {
		ips = append(ips, p.String())
	}
	var wantIPs []string
	for _, s := range w.ignoreIP {
		p, err := parsePrefixForTest(s)
		if err != nil {
			t.Fatalf("fail2ban ignoreip %q: %v", s, err)
		}
		wantIPs = append(wantIPs, p)
	}
	if !slices.Equal(ips, wantIPs) {
		t.Errorf("ignoreip %v, fail2ban %v", ips, wantIPs)
	}
	var patterns []string
	for _, l := range strings.Split(w.logPattern, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.LastIndexByte(l, ' '); i >= 0 && (l[i+1:] == "head" || l[i+1:] == "tail") {
			l = strings.TrimSpace(l[:i])
		}
		if l != "" && !strings.HasPrefix(j.Backend, "systemd") {
			patterns = append(patterns, l)
		}
	}
	if !slices.Equal(j.LogPath, patterns) {
		t.Errorf("logpath %q, fail2ban %q", j.LogPath, patterns)
	}
	if got := expandGlobs(j.LogPath); !slices.Equal(got, w.logPaths) {
		t.Errorf("logpath %v (files %v), fail2ban %v", j.LogPath, got, w.logPaths)
	}
	if j.Filter.Name != w.filter {
		t.Errorf("filter %q, fail2ban %q", j.Filter.Name, w.filter)
	}
	// The ban action's port as fail2ban hands it to the action.
	var banPort string
	found := false
	for _, a := range w.actions {
		if isBanAction(a) {
			banPort, found = w.actionPort[a], true
			continue
		}
		if !slices.ContainsFunc(warns, func(x Warning) bool { return x.Jail == j.Name && x.Option == "action" && x.Value == a }) {
			t.Errorf("fail2ban runs action %s, moat gives no warning for it", a)
		}
	}
	if !found {
		t.Fatalf("fail2ban runs no firewall action among %v", w.actions)
	}
	if j.Port != banPort {
		t.Errorf("port %q, fail2ban's ban action gets %q", j.Port, banPort)
	}
	wantPorts, err := ParsePorts(banPort)
	if err != nil {
		t.Fatalf("fail2ban port %q: %v", banPort, err)
	}
	if !equalRanges(j.Ports, wantPorts) {
		t.Errorf("ports %v, from fail2ban's %q: %v", j.Ports, banPort, wantPorts)
	}
}

// parsePrefixForTest normalises one ignoreip entry as fail2ban printed it
// the way Load reads entries: an address becomes a /32 or /128.
func parsePrefixForTest(s string) (string, error) {
	dir := fmt.Sprintf("[DEFAULT]\nignoreip = %s\n", s)
	doc, err := parseINI("x", dir+"[j]\n")
	if err != nil {
		return "", err
	}
	b := &jailBuilder{doc: doc, name: "j"}
	ps := b.ignoreIP(s)
	if len(ps) != 1 {
		return "", fmt.Errorf("not one prefix: %v %v", ps, b.warns)
	}
	return ps[0].String(), nil
}

// expandGlobs lists the existing files the patterns name, as fail2ban
// does when it hands log paths to its server.
func expandGlobs(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		sort.Strings(m)
		out = append(out, m...)
	}
	return out
}

// runFail2banClient runs fail2ban-client -d on dir and collects each jail's
// settings; durations are converted with fail2ban's own str2seconds and the
// filter option is read with fail2ban's JailsReader (-d does not print it).
func runFail2banClient(t *testing.T, client, py, dir string) []*f2bJail {
	t.Helper()
	cmd := exec.Command(client, "-c", dir, "-d")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fail2ban-client -c %s -d: %v\n%s", dir, err, stderr.String())
	}
	var jails []*f2bJail
	byName := map[string]*f2bJail{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		v, err := parsePyLiteral(line)
		if err != nil {
			t.Fatalf("parse fail2ban-client line %q: %v", line, err)
		}
		l, _ := v.([]any)
		if len(l) < 3 {
			continue
		}
		cmdName, _ := l[0].(string)
		jail, _ := l[1].(string)
		switch {
		case cmdName == "add":
			j := &f2bJail{name: jail, backend: l[2].(string), set: map[string]any{},
				actionPort: map[string]string{}, secondsByField: map[string]float64{}}
			jails = append(jails, j)
			byName[jail] = j
		case cmdName == "set" && byName[jail] != nil:
			j := byName[jail]
			opt, _ := l[2].(string)
			switch opt {
			case "addignoreip":
				for _, x := range l[3:] {
					j.ignoreIP = append(j.ignoreIP, x.(string))
				}
			case "addlogpath":
				j.logPaths = append(j.logPaths, l[3].(string))
			case "addjournalmatch":
				if len(j.journalMatch) > 0 {
					j.journalMatch = append(j.journalMatch, "+")
				}
				for _, x := range l[3:] {
					j.journalMatch = append(j.journalMatch, x.(string))
				}
			case "addaction":
				j.actions = append(j.actions, l[3].(string))
			default:
				if len(l) == 4 {
					j.set[opt] = l[3]
				}
			}
		case cmdName == "multi-set" && len(l) == 5 && l[2] == "action" && byName[jail] != nil:
			act, _ := l[3].(string)
			pairs, _ := l[4].([]any)
			for _, p := range pairs {
				kv, _ := p.([]any)
				if len(kv) == 2 && kv[0] == "port" {
					byName[jail].actionPort[act], _ = kv[1].(string)
				}
			}
		}
	}
	var times []string
	for i := range jails {
		for _, f := range []string{"findtime", "bantime", "bantime.maxtime", "bantime.rndtime"} {
			if s, ok := jails[i].set[f].(string); ok {
				times = append(times, s)
			}
		}
	}
	secs := str2seconds(t, py, times)
	k := 0
	for i := range jails {
		for _, f := range []string{"findtime", "bantime", "bantime.maxtime", "bantime.rndtime"} {
			if _, ok := jails[i].set[f].(string); ok {
				jails[i].secondsByField[f] = secs[k]
				k++
			}
		}
	}
	filters := jailFilters(t, py, dir)
	for i := range jails {
		jails[i].filter = filters[jails[i].name][0]
		jails[i].logPattern = filters[jails[i].name][1]
	}
	return jails
}

func str2seconds(t *testing.T, py string, in []string) []float64 {
	t.Helper()
	script := `import sys
from fail2ban.server.mytime import MyTime
for l in sys.stdin.read().split("\n"):
    if l: print(float(MyTime.str2seconds(l)))`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(in, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run fail2ban str2seconds: %v", err)
	}
	var res []float64
	for _, f := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, v)
	}
	if len(res) != len(in) {
		t.Fatalf("str2seconds gave %d values for %d", len(res), len(in))
	}
	return res
}

func jailFilters(t *testing.T, py, dir string) map[string][2]string {
	t.Helper()
	script := `import sys, json
from fail2ban.client.jailsreader import JailsReader
r = JailsReader(basedir=sys.argv[1])
r.read()
r.getOptions()
print(json.dumps({j.getName(): [j.options.get("filter", ""), j.options.get("logpath") or ""] for j in r.jails}))`
	cmd := exec.Command(py, "-c", script, dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("read filters with fail2ban's JailsReader: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	m := map[string][2]string{}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("JailsReader output %q: %v", out, err)
	}
	return m
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func writeFile(t *testing.T, p, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// parsePyLiteral reads the Python literals fail2ban-client -d prints:
// lists, strings ('…' or "…" with backslash escapes), ints (int64),
// floats, True, False and None.
func parsePyLiteral(s string) (any, error) {
	p := &pyParser{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("trailing text at %d", p.i)
	}
	return v, nil
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *pyParser) value() (any, error) {
	p.space()
	if p.i >= len(p.s) {
		return nil, fmt.Errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '[':
		p.i++
		var out []any
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return out, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
			}
		}
	case c == '\'' || c == '"':
		return p.str(c)
	case c == '-' || c >= '0' && c <= '9':
		j := p.i + 1
		for j < len(p.s) && strings.IndexByte("0123456789.e+-", p.s[j]) >= 0 {
			j++
		}
		num := p.s[p.i:j]
		p.i = j
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			return n, nil
		}
		return strconv.ParseFloat(num, 64)
	default:
		for _, w := range []struct {
			s string
			v any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], w.s) {
				p.i += len(w.s)
				return w.v, nil
			}
		}
		return nil, fmt.Errorf("unexpected %q at %d", c, p.i)
	}
}

func (p *pyParser) str(q byte) (string, error) {
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\' && p.i+1 < len(p.s):
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if p.i+n > len(p.s) {
					return "", fmt.Errorf("short escape")
				}
				r, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
				if err != nil {
					return "", err
				}
				b.WriteRune(rune(r))
				p.i += n
			default:
				b.WriteByte(e)
			}
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			b.WriteRune(r)
			p.i += size
		}
	}
	return "", fmt.Errorf("unterminated string")
}
