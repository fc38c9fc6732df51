package emulate

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatproj/moat/filters"
)

// regexOpts are the options of `moat regex`, named as fail2ban-regex names
// them.
type regexOpts struct {
	config        string
	datepattern   string
	maxlines      int
	raw           bool
	out           string
	allMatched    bool
	allMissed     bool
	allIgnored    bool
	noMissed      bool
	noIgnored     bool
	verbose       bool
	printLimit    int
	hasIgnoreArgs bool
	encoding      string // what the header says the log is read as
	// journalmatch is -m/--journalmatch (nil: not given), which overrides
	// the filter's journalmatch for systemd-journal.
	journalmatch *string
	// logtype is "journal" when LOG is systemd-journal: the filter is
	// loaded for journal lines, as fail2ban-regex loads it for the
	// systemd backend.
	logtype string
}

// Regex is `fail2ban-regex [OPTIONS] LOG FILTER [IGNOREREGEX]` (moat
// regex): it runs a filter over a log file (or one log line) and prints on
// std.Stdout what fail2ban-regex prints for the same arguments: the Results
// block, or with -o one line per failure. now gives the reference time of
// the run (a date in the log without a year takes its year from it).
func Regex(args []string, std IO, now func() time.Time) error {
	fs := flag.NewFlagSet("moat regex", flag.ContinueOnError)
	var o regexOpts
	str := func(p *string, def, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, def, usage)
		}
	}
	boolean := func(p *bool, usage string, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, false, usage)
		}
	}
	str(&o.config, "/etc/fail2ban", "configuration directory: filters are looked up in `DIR`/filter.d, then among moat's built-ins", "c", "config")
	str(&o.datepattern, "", "date pattern of the log lines (the filter's datepattern syntax)", "d", "datepattern")
	fs.IntVar(&o.maxlines, "L", 0, "lines buffered for multi-line regexes (moat's engine matches single lines only)")
	fs.IntVar(&o.maxlines, "maxlines", 0, "same as -L")
	boolean(&o.raw, "take a host name a regex captured as it is (no lookup): it counts as matched", "r", "raw")
	str(&o.out, "", "print only failures: id, fid, ip, row, msg, a tag name (user, ip4, …) or a template such as '<fid>\\t<time>'", "o", "out")
	boolean(&o.allMatched, "print all matched lines", "print-all-matched")
	boolean(&o.allMissed, "print all missed lines, however many", "print-all-missed")
	boolean(&o.allIgnored, "print all ignored lines, however many", "print-all-ignored")
	boolean(&o.noMissed, "print no missed lines", "print-no-missed")
	boolean(&o.noIgnored, "print no ignored lines", "print-no-ignored")
	boolean(&o.verbose, "list every regex with the failures it found", "v", "verbose")
	for _, n := range []string{"m", "journalmatch"} {
		fs.Func(n, "journal `MATCH` (journalctl style, as a filter's journalmatch) for systemd-journal, overriding the filter's", func(v string) error {
			o.journalmatch = &v
			return nil
		})
	}
	pos, err := parseOptions(fs, args, std.Stderr)
	if err != nil {
		return err
	}
	if o.noMissed && o.allMissed {
		return fmt.Errorf("%w: --print-no-missed and --print-all-missed are mutually exclusive", ErrUsage)
	}
	if o.noIgnored && o.allIgnored {
		return fmt.Errorf("%w: --print-no-ignored and --print-all-ignored are mutually exclusive", ErrUsage)
	}
	if len(pos) != 2 && len(pos) != 3 {
		return fmt.Errorf("%w: regex wants LOG FILTER [IGNOREREGEX]", ErrUsage)
	}
	o.printLimit = 20
	if o.maxlines > 0 {
		o.printLimit = o.maxlines
	}
	var ignore *string
	if len(pos) == 3 {
		ignore = &pos[2]
	}
	o.encoding = localeEncoding(std.Getenv)
	if isJournalLog(pos[0]) {
		o.logtype = "journal"
	}
	return runRegex(std.Stdout, o, pos[0], pos[1], ignore, now)
}

// regexStats counts what fail2ban-regex counts.
type regexStats struct {
	tested, matched, missed, ignored     int
	matchedLines, missedLines, ignLines  []string
	failHits, ignoreHits                 []int
	failHitList                          [][]regexHit
	prefMatched                          int
	prefregex                            string
	prefGroups                           []string
	dateHits                             []filters.TemplateHits
	elapsed                              time.Duration
	failregexes, ignoreregexes           []string
	headerFilter, headerOpts, headerLine []string
	// noDates: no date detector, no "Date template hits" (journal)
	noDates bool
}

// regexHit is one failure a failregex found, for -v.
type regexHit struct {
	fid string
	t   time.Time
	// multi is fail2ban's "multiple regex matched" flag: set when at
	// least two failures came before this hit on the same line.
	multi bool
}

// filterNameRE is what fail2ban-regex takes for a filter name or file
// (possibly with options) rather than a regex.
var filterNameRE = regexp.MustCompile(`(?s)^/{0,3}[\w/\-.]+(?:\[.*\])?$`)

// loadRegexFilter resolves FILTER as fail2ban-regex does and returns the
// filter and the "Use …" header lines.
func loadRegexFilter(o regexOpts, spec string, ignore *string) (*filters.Filter, []string, error) {
	var header []string
	var extra []string
	if o.datepattern != "" {
		q, err := quoteOption(o.datepattern)
		if err != nil {
			return nil, nil, fmt.Errorf("-d: %w", err)
		}
		extra = append(extra, "datepattern="+q)
	}
	if o.maxlines > 0 {
		extra = append(extra, "maxlines="+strconv.Itoa(o.maxlines))
	}
	if filterNameRE.MatchString(spec) {
		name, opts, _ := strings.Cut(spec, "[")
		opts = strings.TrimSuffix(opts, "]")
		if ignore != nil {
			q, err := quoteOption(escapePercent(*ignore))
			if err != nil {
				return nil, nil, fmt.Errorf("ignoreregex: %w", err)
			}
			extra = append(extra, "ignoreregex="+q)
		}
		all := opts
		if len(extra) > 0 {
			if strings.TrimSpace(all) != "" {
				all += ", "
			}
			all += strings.Join(extra, ", ")
		}
		withOpts := func(n string) string {
			if all == "" {
				return n
			}
			return n + "[" + all + "]"
		}
		optLine := func() {
			if strings.TrimSpace(opts) != "" {
				header = append(header, "Use   filter options : "+pyOptions(opts))
			}
		}
		if strings.Contains(name, "/") {
			tries := []string{name}
			if tail := name[max(0, len(name)-6):]; !strings.Contains(tail, ".") {
				tries = append(tries, name+".conf", name+".local")
			}
			for _, p := range tries {
				if st, err := os.Stat(p); err != nil || st.IsDir() {
					continue
				}
				l := &filters.Loader{MatchTimeout: regexMatchTimeout}
				if filepath.Base(filepath.Dir(p)) == "filter.d" {
					base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(p), ".conf"), ".local")
					header = append(header, fmt.Sprintf("Use %11s filter file : %s, basedir: %s", "failregex", base, filepath.Dir(filepath.Dir(p))))
				} else {
					header = append(header, fmt.Sprintf("Use %11s file : %s", "failregex", name))
				}
				optLine()
				f, err := l.LoadLogType(withOpts(p), o.logtype)
				return f, header, err
			}
		} else {
			dir := filepath.Join(o.config, "filter.d")
			if filepath.Base(o.config) == "filter.d" {
				dir = o.config
			}
			l := &filters.Loader{Dirs: []string{dir}, MatchTimeout: regexMatchTimeout}
			f, err := l.LoadLogType(withOpts(name), o.logtype)
			switch {
			case err == nil && f.Source().File == "":
				// fail2ban-regex would take the name for a regex; moat
				// says which filter it ran instead (filters.Resolve).
				header = append(header, fmt.Sprintf("Use %11s filter file : %s (none in %s)", "failregex", f.Source(), dir))
				optLine()
				return f, header, nil
			case err == nil:
				basedir := o.config
				if filepath.Base(basedir) == "filter.d" {
					basedir = filepath.Dir(basedir)
				}
				header = append(header, fmt.Sprintf("Use %11s filter file : %s, basedir: %s", "failregex", name, basedir))
				optLine()
				return f, header, nil
			case !errors.Is(err, filters.ErrNoFilter):
				return nil, nil, err
			}
		}
	}
	// A regex.
	header = append(header, fmt.Sprintf("Use %11s line : %s", "failregex", shortstr(spec)))
	var ig []string
	if ignore != nil {
		ig = []string{escapePercent(*ignore)}
	}
	var f *filters.Filter
	var err error
	if o.datepattern == "" && o.maxlines == 0 {
		f, err = (&filters.Loader{MatchTimeout: regexMatchTimeout}).Inline("regex", []string{escapePercent(spec)}, ig)
	} else {
		f, err = loadInlineFile(spec, ignore, o)
	}
	return f, header, err
}

// loadInlineFile writes the regexes, the date pattern and maxlines to a
// temporary filter file (Inline takes neither) and loads it.
func loadInlineFile(spec string, ignore *string, o regexOpts) (*filters.Filter, error) {
	dir, err := os.MkdirTemp("", "moat-regex-")
	if err != nil {
		return nil, fmt.Errorf("regex filter: %w", err)
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	b.WriteString("[Definition]\n")
	fmt.Fprintf(&b, "failregex = %s\n", escapePercent(spec))
	if ignore != nil {
		fmt.Fprintf(&b, "ignoreregex = %s\n", escapePercent(*ignore))
	}
	if o.datepattern != "" {
		fmt.Fprintf(&b, "datepattern = %s\n", escapePercent(o.datepattern))
	}
	if o.maxlines > 0 {
		fmt.Fprintf(&b, "maxlines = %d\n", o.maxlines)
	}
	p := filepath.Join(dir, "regex.conf")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("regex filter: %w", err)
	}
	return (&filters.Loader{MatchTimeout: regexMatchTimeout}).Load(p)
}

func escapePercent(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quoteOption quotes v for a name[key=value] option list.
func quoteOption(v string) (string, error) {
	switch {
	case !strings.Contains(v, `"`):
		return `"` + v + `"`, nil
	case !strings.Contains(v, `'`):
		return `'` + v + `'`, nil
	}
	return "", fmt.Errorf("value %q has both kinds of quote", v)
}

// failure is one failure found in a line, as -o prints it.
type failure struct {
	fid, host, user string
	t               time.Time
	line            string
	// lines are the lines of the failure's connection group, as
	// fail2ban lists its matches (nil: just line)
	lines []string
	// fields are fail2ban's dictionary of the failure (-o row)
	fields []filters.Field
}

// lineVerdict is what fail2ban-regex makes of a line.
type lineVerdict int

const (
	verdictMissed lineVerdict = iota
	verdictMatched
	verdictIgnored
)

// classify turns a filters.Result into fail2ban-regex's verdict: an
// ignoreregex or a <F-NOFAIL>/<F-MLFGAINED> match is "ignored"; a host name
// (never resolved) or an unspecified address is "missed" unless -r.
func classify(r filters.Result, line string, raw bool) (lineVerdict, *failure) {
	if r.Ignored {
		return verdictIgnored, nil
	}
	if r.Failregex < 0 {
		return verdictMissed, nil
	}
	if r.Failure {
		fid := pyAddr(r.Match.Addr)
		if p := r.Match.Prefix; p.IsValid() && p.Bits() < p.Addr().BitLen() {
			// fail2ban names a subnet by its masked address and length
			// (but for length 0, which it leaves out).
			fid = pyAddr(p.Addr())
			if p.Bits() > 0 {
				fid += "/" + strconv.Itoa(p.Bits())
			}
		}
		if r.Match.ID != "" {
			fid = r.Match.ID
		}
		return verdictMatched, &failure{fid: fid, host: r.Host, user: r.Match.User, t: r.Match.Time, line: line, lines: r.Match.Lines, fields: r.Match.Fields}
	}
	if r.Host == "" && r.Match.ID != "" {
		// An <F-ID> that is no address: fail2ban prints it as the id.
		return verdictMatched, &failure{fid: r.Match.ID, user: r.Match.User, t: r.Match.Time, line: line, lines: r.Match.Lines, fields: r.Match.Fields}
	}
	if r.Host == "" {
		return verdictIgnored, nil
	}
	a, err := netip.ParseAddr(r.Host)
	if err != nil {
		a, err = netip.ParseAddr(strings.TrimSuffix(r.Host, ":"))
	}
	switch {
	case err == nil && !a.IsUnspecified():
		return verdictIgnored, nil // <F-NOFAIL> or <F-MLFGAINED>
	case err != nil && (raw || looksLikeAddr(r.Host)):
		// fail2ban takes an address it cannot parse ("999.1.2.3") as
		// written, and a host name too with -r.
		return verdictMatched, &failure{fid: r.Host, host: r.Host, user: r.Match.User, t: r.Match.Time, line: line}
	}
	return verdictMissed, nil
}

// hitEntry is what fail2ban-regex's report makes of one failregex match
// (filters.Hit): whether it is an entry, counted as a hit of its regex (an
// address, an id, or a connection still waiting for its address; a host
// name is looked up, and moat never resolves), and the failure, if any.
func hitEntry(h filters.Hit, line string, raw bool) (*failure, bool) {
	if h.Pending {
		return nil, true
	}
	r := filters.Result{Failregex: h.Failregex, Match: h.Match, Failure: h.Failure, Host: h.Host}
	if h.NoFail {
		r.Failure = false
	}
	v, fl := classify(r, line, raw)
	return fl, v != verdictMissed
}

// fillTime gives fl the line's time when the match left it zero (the host
// was no address); Filter.Examine still finds it.
func fillTime(f *filters.Filter, fl *failure, line string, ref time.Time) {
	if fl != nil && fl.t.IsZero() {
		fl.t = f.Examine(line, ref).Match.Time
	}
}

// looksLikeAddr reports whether s is written like an IP address (digits and
// dots, or hex digits and colons) even if it is not a valid one.
func looksLikeAddr(s string) bool {
	if s == "" {
		return false
	}
	colon := strings.Contains(s, ":")
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9', c == '.':
		case colon && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')):
		default:
			return false
		}
	}
	return !colon || strings.Count(s, ":") >= 2
}

// localeEncoding is the encoding fail2ban-regex names for the log: Python's
// preferred encoding, "UTF-8" under a UTF-8 locale such as C.UTF-8 and
// "utf-8" (Python's UTF-8 mode) without one. moat reads logs as UTF-8
// bytes either way.
func localeEncoding(getenv func(string) string) string {
	loc := getenv("LC_ALL")
	if loc == "" {
		loc = getenv("LC_CTYPE")
	}
	if loc == "" {
		loc = getenv("LANG")
	}
	if _, codeset, ok := strings.Cut(loc, "."); ok {
		if c := strings.ToLower(codeset); c == "utf-8" || c == "utf8" {
			return "UTF-8"
		}
	}
	return "utf-8"
}

// logLines returns the lines of LOG (a file, or the argument itself) and
// the header lines that describe it. A log given as text is one line unless
// it holds a newline or the filter reads several lines at once (maxLines >
// 1), as in fail2ban-regex.
func logLines(log, encoding string, maxLines int) ([]string, []string, error) {
	if st, err := os.Stat(log); err == nil && !st.IsDir() {
		data, err := os.ReadFile(log)
		if err != nil {
			return nil, nil, fmt.Errorf("read log: %w", err)
		}
		// One string for the file, the lines slices of it: no copy per
		// line. A line ends at '\n', less the '\r's before it. As in
		// fail2ban-regex, which waits for a line's end, a last line
		// without '\n' is not read, unless it ends in '\r' (which
		// fail2ban takes for an end too).
		text := string(data)
		lines := make([]string, 0, bytes.Count(data, []byte{'\n'})+1)
		for len(text) > 0 {
			l := text
			if i := strings.IndexByte(text, '\n'); i >= 0 {
				l, text = text[:i], text[i+1:]
			} else if text = ""; !strings.HasSuffix(l, "\r") {
				break
			}
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
		return lines, []string{"Use         log file : " + log, "Use         encoding : " + encoding}, nil
	}
	if !strings.Contains(log, "\n") && maxLines <= 1 {
		return []string{log}, []string{"Use      single line : " + shortstr(log)}, nil
	}
	lines := strings.Split(log, "\n")
	header := []string{fmt.Sprintf("Use      multi line : %d line(s)", len(lines))}
	for i, l := range lines {
		if i >= 5 {
			header = append(header, "| ...")
			break
		}
		n := strconv.Itoa(i + 1)
		if len(n) < 2 {
			n = " " + n
		}
		header = append(header, fmt.Sprintf("| %s: %s", n[:2], shortstr(l)))
	}
	header = append(header, "`-")
	return lines, header, nil
}

// runRegex is the body of `moat regex`, with the clock injected.
func runRegex(w io.Writer, o regexOpts, log, spec string, ignore *string, now func() time.Time) error {
	bw := bufio.NewWriterSize(w, 64*1024)
	defer bw.Flush()
	out := func(s string) { bw.WriteString(s); bw.WriteByte('\n') }
	if o.out == "" {
		out("")
		out("Running tests")
		out("=============")
		out("")
	}
	f, header, err := loadRegexFilter(o, spec, ignore)
	if err != nil {
		return fmt.Errorf("regex: %w", err)
	}
	var lines, shown, logHeader []string
	var refs []time.Time
	if o.logtype == "journal" {
		lines, shown, refs, logHeader, err = journalLines(o, log, f)
	} else {
		lines, logHeader, err = logLines(log, o.encoding, f.MaxLines())
	}
	if err != nil {
		return fmt.Errorf("regex: %w", err)
	}
	if o.out == "" {
		if o.maxlines > 0 {
			out(fmt.Sprintf("Use         maxlines : %d", o.maxlines))
		}
		if o.datepattern != "" {
			out("Use      datepattern : " + o.datepattern + " : " + f.DateTemplates().Description())
		}
		for _, h := range header {
			out(h)
		}
		// The filter's own maxlines and datepattern, unless -L or -d
		// set them.
		if o.maxlines == 0 && f.MaxLinesSet() {
			out(fmt.Sprintf("Use         maxlines : %d", f.MaxLines()))
		}
		if dp, ok := f.DatePatternOption(); ok && o.datepattern == "" {
			out("Use      datepattern : " + dp + " : " + f.DateTemplates().Description())
		}
		if ignore != nil {
			out(fmt.Sprintf("Use %11s line : %s", "ignoreregex", shortstr(*ignore)))
		}
		for _, h := range logHeader {
			out(h)
		}
		out("")
	}
	st := regexStats{failregexes: f.ShownFailregexes(), ignoreregexes: f.ShownIgnoreregexes(), prefregex: f.ShownPrefregex()}
	if ignore != nil {
		st.ignoreregexes = []string{*ignore}
	}
	st.failHits = make([]int, len(st.failregexes))
	st.failHitList = make([][]regexHit, len(st.failregexes))
	st.ignoreHits = make([]int, len(st.ignoreregexes))
	emit := outputFunc(o.out, out)
	start := time.Now()
	ref := now()
	// A Stream keeps what fail2ban keeps between lines: connection
	// groups (<F-MLFID>) and the last maxlines lines.
	stream := f.Stream()
	stream.KeepMatches = o.out != ""
	stream.KeepFields = o.out == "row"
	dates := f.DateTemplates()
	// fail2ban-regex dates a journal line by its entry and has no date
	// detector for it unless -d or the filter set a date pattern.
	_, filterDates := f.DatePatternOption()
	noDates := refs != nil && o.datepattern == "" && !filterDates
	// For a multi-line filter, fail2ban-regex moves the very buffered lines
	// a match takes (Result.Consumed, without their dates) from missed to
	// matched: recent finds them as read.
	var recent map[string]string
	if f.MaxLines() > 1 && o.out == "" {
		recent = map[string]string{}
	}
	// fail2ban checks the ignoreregexes before the prefregex when there
	// are fewer of them than failregexes less two; a line they ignore
	// leaves the prefregex's last result as it was.
	upfront := len(f.Ignoreregexes()) > 0 && len(f.Ignoreregexes()) < len(f.Failregexes())-2
	prefMatched, prefGroups := false, "{}"
	// The lines are matched in batches on every core (see
	// filters.Stream.ExamineLines) and taken in order.
	// Journal lines are matched as they are, each with its entry's time
	// as the time of a line without a date, and shown with that time in
	// front, as fail2ban-regex shows them.
	todo := lines
	if refs == nil {
		todo = make([]string, 0, len(lines))
		for _, line := range lines {
			for line != "" && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
				line = line[:len(line)-1]
			}
			if line != "" && !strings.HasPrefix(line, "#") {
				todo = append(todo, line)
			}
		}
	}
	buf := make([]filters.Result, min(len(todo), regexBatch))
	var results []filters.Result
	base := 0
	for k, line := range todo {
		shownLine := line
		if refs != nil {
			ref, shownLine = refs[k], shown[k]
		}
		if k == base+len(results) {
			// A batch: lines sharing one reference time.
			n := min(regexBatch, len(todo)-k)
			if refs != nil {
				n = sameTime(refs[k : k+n])
			}
			base, results = k, buf[:n]
			stream.ExamineLines(todo[k:k+n], ref, o.out == "", runtime.GOMAXPROCS(0), results)
		}
		r := results[k-base]
		if o.out != "" {
			// -o prints what fail2ban's daemon would take: the first
			// failregex that matches decides.
			if v, fl := classify(r, shownLine, o.raw); v == verdictMatched {
				if refs != nil && len(fl.lines) == 1 && fl.lines[0] == line {
					fl.lines = []string{shownLine}
				}
				fillTime(f, fl, line, ref)
				emit(fl)
			}
			continue
		}
		// The report tried every failregex on every line.
		if refs == nil {
			dates.Observe(line, ref)
		}
		if recent != nil {
			if len(recent) > 4*f.MaxLines() {
				clear(recent)
			}
			recent[f.StripDate(line, ref)] = shownLine
		}
		if st.prefregex != "" {
			wantGroups := o.verbose && len(st.prefGroups) <= o.printLimit
			if !(r.Ignored && len(r.Hits) == 0 && upfront) {
				prefMatched = r.PrefMatched
				if prefMatched && wantGroups {
					_, groups := f.PrefregexMatch(line, ref, true)
					prefGroups = pyGroups(groups)
				}
			}
			if prefMatched {
				st.prefMatched++
				if wantGroups {
					// (after an ignored line, the groups of the last match)
					if len(st.prefGroups) < o.printLimit {
						st.prefGroups = append(st.prefGroups, prefGroups)
					} else {
						st.prefGroups = append(st.prefGroups, "...")
					}
				}
			}
		}
		v := verdictMissed
		fails := 0
		for _, h := range r.Hits {
			fl, entry := hitEntry(h, shownLine, o.raw)
			if !entry {
				continue
			}
			multi := fails > 1
			if !h.NoFail {
				fails++
			}
			if h.NoFail {
				v = verdictIgnored
			} else if v == verdictMissed {
				v = verdictMatched
			}
			st.failHits[h.Failregex]++
			hit := regexHit{fid: h.Host, t: h.Match.Time}
			if h.Pending {
				hit.fid = "None" // Python's None: no id yet
			}
			if fl != nil {
				fillTime(f, fl, line, ref)
				hit = regexHit{fid: fl.fid, t: fl.t}
			}
			hit.multi = multi
			st.failHitList[h.Failregex] = append(st.failHitList[h.Failregex], hit)
		}
		if r.Ignored {
			v = verdictIgnored
			f.IgnoreregexHits(line, ref, st.ignoreHits)
		}
		// A multi-line match used up earlier buffered lines: fail2ban
		// counts them matched, not missed.
		for _, c := range r.Consumed {
			org, ok := recent[c]
			if !ok {
				org = c
			}
			if i := slices.Index(st.missedLines, org); i >= 0 {
				st.missedLines = slices.Delete(st.missedLines, i, i+1)
			}
			if o.allMatched {
				st.matchedLines = append(st.matchedLines, org)
			}
			st.matched++
			st.missed--
		}
		switch v {
		case verdictIgnored:
			st.ignored++
			if !o.noIgnored && (o.allIgnored || st.ignored <= o.printLimit+1) {
				st.ignLines = append(st.ignLines, shownLine)
			}
		case verdictMatched:
			st.matched++
			if o.allMatched {
				st.matchedLines = append(st.matchedLines, shownLine)
			}
		default:
			st.missed++
			if !o.noMissed && (o.allMissed || st.missed <= o.printLimit+1) {
				st.missedLines = append(st.missedLines, shownLine)
			}
		}
		st.tested++
	}
	st.elapsed = time.Since(start)
	st.dateHits = dates.Hits()
	st.noDates = noDates
	if o.out == "" {
		printRegexStats(out, o, &st)
	}
	if n := f.Timeouts(); n > 0 {
		// Those lines were counted as not matched: the results are
		// not what fail2ban-regex would print.
		return fmt.Errorf("regex: %d matches ran past the %v limit of a backtracking regex and were counted as no match", n, regexMatchTimeout)
	}
	return nil
}

// regexMatchTimeout bounds one backtracking match in moat regex: far above
// what any sane regex takes, even on a loaded machine (the daemon keeps
// filters.DefaultMatchTimeout), so the results do not depend on the load.
const regexMatchTimeout = 10 * time.Second

// regexBatch is how many lines moat regex matches at a time.
const regexBatch = 8192

// outputFunc returns what -o prints for one failure.
func outputFunc(ofmt string, out func(string)) func(*failure) {
	switch {
	case ofmt == "id" || ofmt == "fid" || ofmt == "ip":
		return func(fl *failure) { out(fl.fid) }
	case ofmt == "msg":
		return func(fl *failure) {
			if fl.lines == nil {
				out(pyText(fl.line))
			}
			for _, l := range fl.lines {
				out(pyText(l))
			}
		}
	case ofmt == "row":
		return func(fl *failure) {
			out(fmt.Sprintf("[%s,\t%s,\t%s],", pyRepr(fl.fid), pyTime(fl.t), fl.rowData()))
		}
	case !strings.Contains(ofmt, "<"):
		return func(fl *failure) { out(fl.tag(ofmt)) }
	}
	return func(fl *failure) { out(expandTemplate(ofmt, fl)) }
}

// tag is the value fail2ban-regex prints for -o TAG (Python's None when
// the failure has no such value).
func (fl *failure) tag(name string) string {
	a, err := netip.ParseAddr(fl.host)
	switch name {
	case "user":
		if fl.user != "" {
			return fl.user
		}
	case "ip4":
		if err == nil && a.Is4() {
			return fl.host
		}
	case "ip6":
		if err == nil && a.Is6() {
			return fl.host
		}
	case "dns":
		if err != nil && fl.host != "" {
			return fl.host
		}
	case "matches":
		return fl.line
	}
	return "None"
}

// rowData approximates the data dict of fail2ban's row output with the
// values moat knows.
func (fl *failure) rowData() string {
	if fl.fields != nil {
		parts := make([]string, 0, len(fl.fields))
		for _, f := range fl.fields {
			v := pyRepr(f.Str)
			switch {
			case f.None:
				v = "None"
			case f.Set != nil:
				items := make([]string, len(f.Set))
				for i, x := range f.Set {
					items[i] = pyRepr(x)
				}
				v = "{" + strings.Join(items, ", ") + "}"
			}
			parts = append(parts, pyRepr(f.Key)+": "+v)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	var parts []string
	if fl.user != "" {
		parts = append(parts, "'user': "+pyRepr(fl.user))
	}
	for _, k := range []string{"ip4", "ip6", "dns"} {
		v := fl.tag(k)
		if v == "None" {
			parts = append(parts, pyRepr(k)+": None")
		} else {
			parts = append(parts, pyRepr(k)+": "+pyRepr(v))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

var templateTagRE = regexp.MustCompile(`<([^<>\s]+)>`)

// expandTemplate substitutes the tags fail2ban's actions know in a -o
// template; others stay as written.
func expandTemplate(tmpl string, fl *failure) string {
	return templateTagRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		switch m[1 : len(m)-1] {
		case "ip", "fid":
			return fl.fid
		case "time":
			return pyTime(fl.t)
		case "msg", "matches":
			return pyText(fl.line)
		case "F-USER":
			if fl.user != "" {
				return fl.user
			}
		}
		return m
	})
}

func printRegexStats(out func(string), o regexOpts, st *regexStats) {
	out("")
	out("Results")
	out("=======")
	list := func(title string, res []string, hits []int, hitList [][]regexHit) {
		total := 0
		var l []string
		for i, re := range res {
			total += hits[i]
			if hits[i] > 0 || o.verbose {
				l = append(l, fmt.Sprintf("%2d) [%d] %s", i+1, hits[i], re))
			}
			if o.verbose && hitList != nil {
				for _, h := range hitList[i] {
					multi := ""
					if h.multi {
						multi = " (multiple regex matched)"
					}
					l = append(l, fmt.Sprintf("    %s  %s%s", h.fid, h.t.Local().Format("Mon Jan 02 15:04:05 2006"), multi))
				}
			}
		}
		out(fmt.Sprintf("\n%s: %d total", title, total))
		pprintList(out, l, " #) [# of hits] regular expression")
	}
	if st.prefregex != "" {
		l := []string{st.prefregex}
		if o.verbose {
			for _, g := range st.prefGroups {
				l = append(l, "    "+g)
			}
		}
		out(fmt.Sprintf("\nPrefregex: %d total", st.prefMatched))
		pprintList(out, l, "")
	}
	list("Failregex", st.failregexes, st.failHits, st.failHitList)
	list("Ignoreregex", st.ignoreregexes, st.ignoreHits, nil)
	if !st.noDates {
		out("\nDate template hits:")
		var dl []string
		for _, h := range st.dateHits {
			if h.Hits > 0 || o.verbose {
				dl = append(dl, fmt.Sprintf("[%d] %s", h.Hits, h.Name))
			}
		}
		pprintList(out, dl, "[# of hits] date format")
	}
	out(fmt.Sprintf("\nLines: %d lines, %d ignored, %d matched, %d missed", st.tested, st.ignored, st.matched, st.missed))
	out(fmt.Sprintf("[processed in %.2f sec]", st.elapsed.Seconds()))
	out("")
	print := func(kind string, n int, l []string, all bool) {
		if n == 0 {
			return
		}
		header := strings.ToUpper(kind[:1]) + kind[1:] + " line(s):"
		if n < o.printLimit || all {
			trimmed := make([]string, len(l))
			for i, s := range l {
				trimmed[i] = strings.TrimRightFunc(pyText(s), pySpace)
			}
			pprintList(out, trimmed, header)
			return
		}
		out(fmt.Sprintf("%s too many to print.  Use --print-all-%s to print all %d lines", header, kind, n))
	}
	if o.allMatched {
		print("matched", st.matched, st.matchedLines, true)
	}
	if !o.noIgnored {
		print("ignored", st.ignored, st.ignLines, o.allIgnored)
	}
	if !o.noMissed {
		print("missed", st.missed, st.missedLines, o.allMissed)
	}
}
