// Command soak is the engine of bench/soak.sh, the soak test of issue 11:
// what moat lists as banned is exactly what the kernel drops, always.
//
// It runs `moat run` inside a network namespace that bench/soak.sh made
// (so that the nftables table lives there only), with four jails reading
// four log files that writers append failures to at a steady rate, keeping
// an exact ledger of what must be banned. Meanwhile it disturbs the daemon:
// SIGHUP (the configuration rewritten identically or with one jail's ports
// changed), `nft flush ruleset`, `kill -9` and a restart, log rotations
// under the live writers (rename + create, and copytruncate), and a few
// manual bans and unbans per second through the CLI, overlapping on purpose.
// One manual ban of a jail whose configuration never changes is watched
// across the reloads: it must never be missing from the kernel.
//
// At the end it checks that `moat bans --json` lists exactly what the ledger
// says, that the kernel covers every listed ban (and keeps it as long as moat
// says), and that it covers nothing else, prints a summary and exits 1 on any
// discrepancy. Run it through bench/soak.sh, which builds moat and this
// program, makes the namespace and cleans up:
//
//	bash bench/soak.sh 2m
//
// Flags (set by soak.sh): -moat BINARY -dir TMPDIR -netns NAME -duration D
// [-seed N].
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	moat := flag.String("moat", "", "the moat binary to run")
	dir := flag.String("dir", "", "a scratch directory (logs, state, socket, config)")
	ns := flag.String("netns", "", "the network namespace to run the daemon in (made by soak.sh)")
	dur := flag.Duration("duration", 2*time.Minute, "how long to write and disturb before the final check")
	seed := flag.Uint64("seed", 0, "random seed (0: from the clock; printed so a run can be repeated)")
	flag.Parse()
	if *moat == "" || *dir == "" || *ns == "" {
		fmt.Fprintln(os.Stderr, "soak: -moat, -dir and -netns are required (run bench/soak.sh)")
		os.Exit(2)
	}
	if *dur < 30*time.Second {
		fmt.Fprintln(os.Stderr, "soak: -duration must be at least 30s")
		os.Exit(2)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	s := newSoak(*moat, *dir, *ns, *dur, *seed)
	os.Exit(s.main())
}

// soak is one run.
type soak struct {
	moat, dir, ns string
	dur           time.Duration
	seed          uint64
	sock, cfgPath string
	logDir        string
	daemonLog     string

	ctx    context.Context
	cancel context.CancelFunc
	begin  time.Time
	end    time.Time // when writing and disturbing stop

	jails []*jailSpec
	d     *daemon
	led   *ledger
	man   *manual
	probe *probe
	logs  *logScan

	// opsMu is held around each mutating CLI call and by a kill and
	// restart, so that no ban or unban is cut in the middle: its outcome
	// would be unknown and the ledger could not be exact.
	opsMu sync.Mutex

	cfgMu    sync.Mutex
	cfgAlt   bool // the web jail's alternate port list is in the file
	cfgWrote int

	hups, flushes, kills atomic.Int64
	statMu               sync.Mutex
	flushBack            []time.Duration // flush → probe element back
	restartReady         []time.Duration // kill → daemon answers again

	probs    problems
	verified *verifyStats
	events   evRing
}

func newSoak(moat, dir, ns string, dur time.Duration, seed uint64) *soak {
	s := &soak{
		moat: moat, dir: dir, ns: ns, dur: dur, seed: seed,
		sock:      filepath.Join(dir, "moat.sock"),
		cfgPath:   filepath.Join(dir, "moat.yaml"),
		logDir:    filepath.Join(dir, "logs"),
		daemonLog: filepath.Join(dir, "daemon.log"),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.jails = jailSpecs(s.logDir)
	s.led = newLedger()
	s.d = &daemon{s: s}
	s.logs = &logScan{path: s.daemonLog}
	return s
}

// rng returns a generator for one goroutine, derived from the run's seed.
func (s *soak) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.seed, stream))
}

// fatal ends the run early with a failure.
func (s *soak) fatal(format string, args ...any) {
	s.probs.fail("fatal", format, args...)
	s.cancel()
}

// sleep waits d or until the run is cancelled; false when cancelled.
func (s *soak) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *soak) elapsed() string {
	return fmt.Sprintf("t+%.1fs", time.Since(s.begin).Seconds())
}

func (s *soak) logf(format string, args ...any) {
	fmt.Printf("soak %s: %s\n", s.elapsed(), fmt.Sprintf(format, args...))
}

func (s *soak) main() int {
	s.begin = time.Now()
	s.end = s.begin.Add(s.dur)
	fmt.Printf("soak: %s of writes and disturbances, seed %d, netns %s, dir %s\n", s.dur, s.seed, s.ns, s.dir)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			s.probs.fail("fatal", "interrupted by %s", sig)
			s.cancel()
		case <-s.ctx.Done():
		}
	}()
	// The watchdog: the whole run must end within the duration plus a
	// minute (soak.sh's promise to CI).
	watchdog := time.AfterFunc(s.dur+50*time.Second, func() {
		s.fatal("watchdog: still running %s after the start (duration %s + 50s)", time.Since(s.begin).Round(time.Second), s.dur)
	})
	defer watchdog.Stop()

	ok := s.setup()
	var wg sync.WaitGroup
	stopWork := make(chan struct{})
	var writers []*writer
	if ok {
		for i, j := range s.jails {
			w := newWriter(s, j, uint64(100+i))
			writers = append(writers, w)
			wg.Add(1)
			go func() { defer wg.Done(); w.run(stopWork) }()
		}
		s.man = newManual(s)
		wg.Add(1)
		go func() { defer wg.Done(); s.man.run(stopWork) }()
		probeDone := s.probe.start()
		s.schedule()
		close(stopWork)
		wg.Wait()
		s.finish(writers)
		s.probe.stop()
		<-probeDone
	}
	s.d.stop()
	return s.report(writers)
}

// setup writes the configuration and the empty logs, starts the daemon,
// makes the probe's manual ban and checks the kernel has it.
func (s *soak) setup() bool {
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		s.fatal("%v", err)
		return false
	}
	for _, j := range s.jails {
		f, err := os.OpenFile(j.file, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			s.fatal("%v", err)
			return false
		}
		f.Close()
	}
	if err := s.writeConfig(false); err != nil {
		s.fatal("write config: %v", err)
		return false
	}
	if err := s.d.start(); err != nil {
		s.fatal("start daemon: %v", err)
		return false
	}
	if _, err := s.d.waitReady(30 * time.Second); err != nil {
		s.fatal("daemon not answering after start: %v", err)
		return false
	}
	s.probe = newProbe(s, "sshd", mustAddr("203.0.113.250"))
	// The probe's ban: long, in a jail whose configuration never changes,
	// never lifted by the manual operations.
	out, errOut, err := s.cli("ban", "--jail", s.probe.jail, "--for", "3h", s.probe.addr.String())
	if err != nil {
		s.fatal("probe ban: moat ban %s --jail %s: %v: %s%s", s.probe.addr, s.probe.jail, err, out, errOut)
		return false
	}
	if res, detail := s.probe.nftGet(); res != pollFound {
		s.fatal("probe ban %s not in the kernel set %s right after `moat ban`: %s", s.probe.addr, s.probe.set, detail)
		return false
	}
	s.logf("daemon up (pid %d), probe ban %s in %s (set %s)", s.d.pid(), s.probe.addr, s.probe.jail, s.probe.set)
	return true
}

// writeConfig writes moat.yaml atomically; alt selects the web jail's
// alternate port list.
func (s *soak) writeConfig(alt bool) error {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# written by bench/soak (issue 11 soak test)\n")
	fmt.Fprintf(&b, "state_dir: %s\n", filepath.Join(s.dir, "state"))
	fmt.Fprintf(&b, "socket: %s\n", s.sock)
	fmt.Fprintf(&b, "firewall:\n  backend: nftables\n  check: 1s\n")
	fmt.Fprintf(&b, "defaults:\n  findtime: 1h\n  bantime: 1h\n")
	fmt.Fprintf(&b, "jails:\n")
	for _, j := range s.jails {
		b.WriteString(j.yaml(alt))
	}
	tmp := s.cfgPath + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.cfgPath); err != nil {
		return err
	}
	s.cfgAlt = alt
	s.cfgWrote++
	return nil
}

// event is one disturbance of the schedule.
type event struct {
	at   time.Duration
	kind string // hup, flush, kill, burst
}

// plan lays out the disturbances over the run: SIGHUP about every 15 s,
// a flush about every 45 s, kill -9 about every 2.5 minutes (at least
// once), and the burst of reloads near the end. Events are kept at least
// 3 s apart.
func (s *soak) plan() []event {
	r := s.rng(7)
	jit := func(d time.Duration) time.Duration { return time.Duration((r.Float64()*2 - 1) * float64(d)) }
	var ev []event
	burst := s.dur - 14*time.Second
	for t := 8 * time.Second; t < burst-6*time.Second; t += 15*time.Second + jit(3*time.Second) {
		ev = append(ev, event{t, "hup"})
	}
	for t := 22 * time.Second; t < burst-8*time.Second; t += 45*time.Second + jit(5*time.Second) {
		ev = append(ev, event{t, "flush"})
	}
	kills := int((s.dur + 75*time.Second) / (150 * time.Second))
	if kills < 1 {
		kills = 1
	}
	for i := 0; i < kills; i++ {
		t := time.Duration((float64(i) + 0.5) / float64(kills) * float64(burst-10*time.Second))
		ev = append(ev, event{t + jit(2*time.Second), "kill"})
	}
	sort.Slice(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	for i := 1; i < len(ev); i++ {
		if ev[i].at < ev[i-1].at+3*time.Second {
			ev[i].at = ev[i-1].at + 3*time.Second
		}
	}
	return append(ev, event{burst, "burst"})
}

// schedule carries out the plan, one event at a time, then waits for the
// end of the writing phase.
func (s *soak) schedule() {
	for _, e := range s.plan() {
		if !s.sleep(time.Until(s.begin.Add(e.at))) {
			return
		}
		switch e.kind {
		case "hup":
			s.reload(s.rng(uint64(e.at)).IntN(2) == 0)
		case "flush":
			s.flush()
		case "kill":
			s.kill()
		case "burst":
			s.burst()
		}
		if s.ctx.Err() != nil {
			return
		}
	}
	s.sleep(time.Until(s.end))
}

// reload rewrites the configuration (identical, or with the web jail's
// port list toggled) and sends SIGHUP, with the probe polling as fast as
// it can from just before to 1.5 s after.
func (s *soak) reload(changePorts bool) {
	alt := s.cfgAlt
	if changePorts {
		alt = !alt
	}
	if err := s.writeConfig(alt); err != nil {
		s.fatal("write config: %v", err)
		return
	}
	leave := s.probe.enter(phaseReload)
	defer leave()
	s.sleep(200 * time.Millisecond)
	s.mark("SIGHUP (web ports %s)", map[bool]string{false: "main", true: "alternate"}[alt])
	if err := s.d.signal(syscall.SIGHUP); err != nil {
		s.fatal("SIGHUP: %v", err)
		return
	}
	s.hups.Add(1)
	s.sleep(1500 * time.Millisecond)
}

// burst sends SIGHUPs at 50 ms intervals until the daemon has logged 50
// reloads since the burst began (at most 200 signals), the configuration
// alternating between the two port lists of the web jail.
func (s *soak) burst() {
	leave := s.probe.enter(phaseReload)
	defer leave()
	s.sleep(200 * time.Millisecond)
	base := s.logs.scan().reloads
	sent := 0
	for ; sent < 200; sent++ {
		if got := s.logs.scan().reloads - base; got >= 50 {
			break
		}
		if err := s.writeConfig(sent%2 == 0); err != nil {
			s.fatal("write config: %v", err)
			return
		}
		s.mark("SIGHUP %d of the burst", sent+1)
		if err := s.d.signal(syscall.SIGHUP); err != nil {
			s.fatal("SIGHUP: %v", err)
			return
		}
		s.hups.Add(1)
		if !s.sleep(50 * time.Millisecond) {
			return
		}
	}
	s.sleep(time.Second)
	s.logf("reload burst: %d SIGHUPs, %d reloads logged", sent, s.logs.scan().reloads-base)
}

// flush runs `nft flush ruleset` in the namespace and waits until the
// daemon has rebuilt its table (the probe's element is back); then the
// probe polls as fast as it can for 3 s more: once back, the element must
// stay.
func (s *soak) flush() {
	leave := s.probe.enter(phaseFlush)
	defer func() { leave() }()
	t0 := time.Now()
	s.mark("nft flush ruleset")
	if out, err := nftCmd(s.ns, "flush", "ruleset"); err != nil {
		s.fatal("nft flush ruleset: %v: %s", err, out)
		return
	}
	s.flushes.Add(1)
	for time.Since(t0) < 15*time.Second {
		if res, _ := s.probe.nftGet(); res == pollFound {
			s.statMu.Lock()
			s.flushBack = append(s.flushBack, time.Since(t0))
			s.statMu.Unlock()
			s.logf("nft flush ruleset: table rebuilt after %s", time.Since(t0).Round(time.Millisecond))
			leave()
			leave = s.probe.enter(phaseAfterFlush)
			s.sleep(3 * time.Second)
			return
		}
		if !s.sleep(50 * time.Millisecond) {
			return
		}
	}
	s.probs.fail("flush", "after `nft flush ruleset` at %s the probe element %s was not back in %s within 15s (firewall.check is 1s)",
		t0.Format("15:04:05.000"), s.probe.addr, s.probe.set)
}

// kill sends SIGKILL to the daemon, waits a moment (the writers keep
// writing) and starts it again; no manual ban or unban is in flight.
func (s *soak) kill() {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	leave := s.probe.enter(phaseRestart)
	defer leave()
	t0 := time.Now()
	s.mark("kill -9")
	if err := s.d.kill9(); err != nil {
		s.fatal("kill -9: %v", err)
		return
	}
	s.kills.Add(1)
	s.sleep(700 * time.Millisecond)
	s.mark("restart")
	if err := s.d.start(); err != nil {
		s.fatal("restart after kill -9: %v", err)
		return
	}
	if _, err := s.d.waitReady(30 * time.Second); err != nil {
		s.fatal("daemon not answering 30s after its restart: %v", err)
		return
	}
	s.statMu.Lock()
	s.restartReady = append(s.restartReady, time.Since(t0))
	s.statMu.Unlock()
	s.logf("kill -9 and restart: answering again after %s (pid %d)", time.Since(t0).Round(time.Millisecond), s.d.pid())
	s.sleep(time.Second)
}

// finish waits for the daemon to read everything: a sentinel address
// (maxretry failures in a row, in the ledger like any other) written to
// each log must be listed, then the list must stop changing.
func (s *soak) finish(writers []*writer) {
	if s.ctx.Err() != nil {
		return
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			if k, err := w.barrier(30 * time.Second); err != nil {
				s.probs.fail("catch-up", "jail %s: the final sentinel %s (written %d times after the last line) was not listed within 30s: %v",
					w.j.name, fmtPrefix(k.key), w.j.maxretry, err)
			}
		}()
	}
	wg.Wait()
	var last string
	stable := time.Now()
	for time.Since(t0) < 40*time.Second && s.ctx.Err() == nil {
		out, _, err := s.cli("bans", "--json")
		if err != nil {
			s.fatal("moat bans --json: %v", err)
			return
		}
		if out != last {
			last, stable = out, time.Now()
		} else if time.Since(stable) >= 3*time.Second {
			break
		}
		s.sleep(300 * time.Millisecond)
	}
	s.logf("caught up: sentinels listed and bans unchanged for 3s (%s)", time.Since(t0).Round(time.Millisecond))
	s.verify()
}

// evRing keeps the latest disturbances and manual operations, so that a
// lapse the probe sees can be put beside what happened just before.
type evRing struct {
	mu  sync.Mutex
	evs []evItem
}

type evItem struct {
	t    time.Time
	what string
}

func (s *soak) mark(format string, args ...any) {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	s.events.evs = append(s.events.evs, evItem{time.Now(), fmt.Sprintf(format, args...)})
	if len(s.events.evs) > 400 {
		s.events.evs = append([]evItem(nil), s.events.evs[200:]...)
	}
}

// recent lists what happened in the window d before now.
func (s *soak) recent(d time.Duration) string {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	now := time.Now()
	var ss []string
	for _, e := range s.events.evs {
		if now.Sub(e.t) <= d {
			ss = append(ss, fmt.Sprintf("%s %s", e.t.Format("15:04:05.000"), e.what))
		}
	}
	if len(ss) == 0 {
		return "nothing"
	}
	if len(ss) > 8 {
		ss = ss[len(ss)-8:]
	}
	return strings.Join(ss, "; ")
}

// problems collects discrepancies (which fail the run) and notes.
type problems struct {
	mu    sync.Mutex
	fails []string
	notes []string
	byCat map[string]int
}

const maxPrinted = 40 // per category

func (p *problems) fail(cat, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byCat == nil {
		p.byCat = map[string]int{}
	}
	p.byCat[cat]++
	if p.byCat[cat] <= maxPrinted {
		p.fails = append(p.fails, fmt.Sprintf("[%s] %s", cat, fmt.Sprintf(format, args...)))
	} else if p.byCat[cat] == maxPrinted+1 {
		p.fails = append(p.fails, fmt.Sprintf("[%s] … further %s discrepancies not printed", cat, cat))
	}
}

func (p *problems) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.notes) < 100 {
		p.notes = append(p.notes, fmt.Sprintf(format, args...))
	}
}

func (p *problems) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.byCat {
		n += c
	}
	return n
}

// logScan reads the daemon's JSON log incrementally.
type logScan struct {
	mu       sync.Mutex
	path     string
	off      int64
	partial  []byte
	lines    int
	reloads  int
	errors   int
	warns    int
	errLines []string
}

type logCounts struct{ lines, reloads, errors, warns int }

func (l *logScan) scan() logCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if err == nil {
		defer f.Close()
		if _, err := f.Seek(l.off, 0); err == nil {
			br := bufio.NewReaderSize(f, 64<<10)
			for {
				b, err := br.ReadBytes('\n')
				l.off += int64(len(b))
				if err != nil {
					l.partial = append(l.partial, b...)
					break
				}
				if len(l.partial) > 0 {
					b = append(l.partial, b...)
					l.partial = nil
				}
				l.line(b)
			}
		}
	}
	return logCounts{l.lines, l.reloads, l.errors, l.warns}
}

func (l *logScan) line(b []byte) {
	l.lines++
	var m struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal(b, &m) != nil {
		return
	}
	switch {
	case m.Msg == "configuration reloaded":
		l.reloads++
	case m.Level == "ERROR":
		l.errors++
		if len(l.errLines) < 8 {
			l.errLines = append(l.errLines, strings.TrimSpace(string(b)))
		}
	case m.Level == "WARN":
		l.warns++
	}
}

// tail returns the last n lines of the daemon's log.
func (s *soak) tail(n int) []string {
	b, err := os.ReadFile(s.daemonLog)
	if err != nil {
		return []string{"(cannot read the daemon log: " + err.Error() + ")"}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func (s *soak) report(writers []*writer) int {
	lc := s.logs.scan()
	total := time.Since(s.begin)
	fmt.Println()
	fmt.Println("=== soak summary (issue 11: what moat lists as banned is exactly what the kernel drops) ===")
	fmt.Printf("duration        %s of writes and disturbances, %s in all (seed %d)\n", s.dur, total.Round(100*time.Millisecond), s.seed)
	var lines, fails, rn, ct, skipped int
	var per []string
	for _, w := range writers {
		w.mu.Lock()
		lines += w.lines
		fails += w.failLines
		rn += w.rotRename
		ct += w.rotCopy
		skipped += w.rotSkipped
		per = append(per, fmt.Sprintf("%s %d", w.j.name, w.lines))
		w.mu.Unlock()
	}
	fmt.Printf("lines written   %d (%d failures) [%s]\n", lines, fails, strings.Join(per, ", "))
	fmt.Printf("rotations       %d rename+create, %d copytruncate, %d skipped (daemon not caught up)\n", rn, ct, skipped)
	if s.man != nil {
		fmt.Printf("manual ops      %s\n", s.man.summary())
	}
	if v := s.verified; v != nil {
		fmt.Printf("bans            expected %d (auto %d, manual %d), listed %d, enforced in the kernel %d; kernel elements %d\n",
			v.expected, v.expAuto, v.expManual, v.listed, v.enforced, v.kernelElems)
		fmt.Printf("not banned      %d addresses checked against the kernel's sets (%d with nft get element), %d covered wrongly\n",
			v.negatives, v.negSampled, v.negCovered)
	} else {
		fmt.Printf("bans            not verified (the run ended early)\n")
	}
	s.statMu.Lock()
	fmt.Printf("reloads         %d SIGHUPs sent, %d reloads logged by the daemon; config written %d times\n", s.hups.Load(), lc.reloads, s.cfgWrote)
	fmt.Printf("flushes         %d (table back after %s)\n", s.flushes.Load(), durs(s.flushBack))
	fmt.Printf("kills           %d kill -9 + restart (answering after %s)\n", s.kills.Load(), durs(s.restartReady))
	s.statMu.Unlock()
	if s.probe != nil {
		for _, l := range s.probe.summary(lc.reloads) {
			fmt.Printf("lapse probe     %s\n", l)
		}
	}
	fmt.Printf("daemon log      %d lines, %d errors, %d warnings (%s)\n", lc.lines, lc.errors, lc.warns, s.daemonLog)
	s.logs.mu.Lock()
	for _, l := range s.logs.errLines {
		fmt.Printf("  daemon error: %s\n", clip(l, 400))
	}
	s.logs.mu.Unlock()
	s.probs.mu.Lock()
	notes, fl := s.probs.notes, s.probs.fails
	s.probs.mu.Unlock()
	for _, n := range notes {
		fmt.Printf("note: %s\n", n)
	}
	n := s.probs.count()
	if n == 0 {
		fmt.Println("RESULT: PASS — every expected ban listed, every listed ban in the kernel, nothing else in the kernel, the probe never missing")
		return 0
	}
	fmt.Printf("RESULT: FAIL — %d discrepancies:\n", n)
	for _, f := range fl {
		fmt.Printf("  %s\n", f)
	}
	if s.probe != nil {
		s.probe.mu.Lock()
		eps := append([]*episode(nil), s.probe.episodes...)
		s.probe.mu.Unlock()
		sort.Slice(eps, func(i, k int) bool { return eps[i].first.Before(eps[k].first) })
		shown := time.Time{}
		for i, e := range eps {
			if i >= 3 || (!shown.IsZero() && e.first.Sub(shown) < 2*time.Second) {
				continue
			}
			shown = e.first
			fmt.Printf("--- the daemon's log from 0.5s before to 0.1s after the lapse at %s ---\n", e.first.Format("15:04:05.000000"))
			for _, l := range s.logAround(e.first.Add(-500*time.Millisecond), e.first.Add(100*time.Millisecond), 25) {
				fmt.Println(l)
			}
		}
	}
	fmt.Printf("--- last 40 lines of the daemon log (%s) ---\n", s.daemonLog)
	for _, l := range s.tail(40) {
		fmt.Println(clip(l, 700))
	}
	return 1
}

// logAround returns up to n lines of the daemon's log stamped between
// from and to, leaving out bans, control requests and the nftables
// backend's per-change debug lines (counted at the end), and folding runs
// of lines with the same message into one.
func (s *soak) logAround(from, to time.Time, n int) []string {
	b, err := os.ReadFile(s.daemonLog)
	if err != nil {
		return nil
	}
	var out []string
	left := map[string]int{}
	lastMsg, same := "", 0
	flush := func() {
		if same > 0 {
			out = append(out, fmt.Sprintf("  … and %d more %q lines", same, lastMsg))
		}
		same = 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		var m struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &m) != nil || m.Time.Before(from) || m.Time.After(to) {
			continue
		}
		switch m.Msg {
		case "ban", "unban", "control request", "nftables transaction failed":
			left[m.Msg]++
			continue
		}
		if m.Msg == lastMsg {
			same++
			continue
		}
		flush()
		lastMsg = m.Msg
		if len(out) < n {
			out = append(out, clip(l, 600))
		}
	}
	flush()
	if len(left) > 0 {
		var ks []string
		for k, c := range left {
			ks = append(ks, fmt.Sprintf("%d %q", c, k))
		}
		sort.Strings(ks)
		out = append(out, "  (not shown: "+strings.Join(ks, ", ")+" lines)")
	}
	return out
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func durs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	var ss []string
	for _, d := range ds {
		ss = append(ss, d.Round(10*time.Millisecond).String())
	}
	return strings.Join(ss, ", ")
}

var errNotReady = errors.New("daemon not answering")
