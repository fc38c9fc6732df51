package emulate

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moatproj/moat/filters"
	"github.com/moatproj/moat/sources/journal"
)

// This file is `moat regex systemd-journal FILTER`: the lines are the
// entries of the system journal, read from its start to its end.

// isJournalLog reports whether LOG names the systemd journal
// ("systemd-journal", possibly with options) rather than a file.
func isJournalLog(log string) bool {
	if st, err := os.Stat(log); err == nil && !st.IsDir() {
		return false
	}
	return strings.HasPrefix(log, "systemd-journal")
}

// journalOptions reads the options of systemd-journal[...]: moat takes
// journalmatch (used when -m is not given); fail2ban's journalflags,
// journalpath and journalfiles are not supported.
func journalOptions(log string) (*string, error) {
	rest := strings.TrimPrefix(log, "systemd-journal")
	if rest == "" {
		return nil, nil
	}
	if !strings.HasPrefix(rest, "[") || !strings.HasSuffix(rest, "]") {
		return nil, fmt.Errorf("%q: want systemd-journal or systemd-journal[journalmatch=MATCH]", log)
	}
	k, v, ok := strings.Cut(rest[1:len(rest)-1], "=")
	if !ok || strings.TrimSpace(k) != "journalmatch" {
		return nil, fmt.Errorf("%q: the only option supported is journalmatch", log)
	}
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	return &v, nil
}

// journalLines reads the journal entries the journal match selects: the
// lines to match (as fail2ban's systemd backend formats them), the lines
// as fail2ban-regex shows them (the entry's time in front), each entry's
// time, and the header lines. The match is -m's, else the one given with
// systemd-journal[journalmatch=...], else the filter's journalmatch, of
// which fail2ban-regex takes the last line.
func journalLines(o regexOpts, log string, f *filters.Filter) (lines, shown []string, refs []time.Time, header []string, err error) {
	spec := o.journalmatch
	if spec == nil {
		if spec, err = journalOptions(log); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	if spec == nil {
		v, err := f.JournalMatch()
		if err != nil {
			return nil, nil, nil, nil, err
		}
		for l := range strings.SplitSeq(v, "\n") {
			if l != "" {
				spec = &l
			}
		}
	}
	var m journal.Match
	if spec != nil {
		if strings.Contains(*spec, "\n") {
			return nil, nil, nil, nil, fmt.Errorf("journal match %q: one line only", *spec)
		}
		if m, err = journal.ParseMatch(*spec); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	header = []string{"Use         systemd journal", "Use         encoding : " + o.encoding}
	if len(m) > 0 {
		header = append(header, "Use    journal match : "+strings.Join(m.Args(), " "))
	}
	// python-systemd gives an entry's time in the zone of the moment it
	// was loaded: a fixed offset, now's.
	_, off := time.Now().Zone()
	zone := time.FixedZone("", off)
	refs = []time.Time{}
	err = journal.Dump(context.Background(), m, journal.Options{}, func(e journal.Entry) error {
		lines = append(lines, e.Line)
		shown = append(shown, pyISOTime(e.Time.In(zone))+" "+e.Line)
		refs = append(refs, e.Time)
		return nil
	})
	return lines, shown, refs, header, err
}

// pyISOTime is Python's datetime.isoformat() of an aware time.
func pyISOTime(t time.Time) string {
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	_, off := t.Zone()
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	s += fmt.Sprintf("%s%02d:%02d", sign, off/3600, off/60%60)
	if off%60 != 0 {
		s += fmt.Sprintf(":%02d", off%60)
	}
	return s
}

// sameTime is how many of ts, from the first, are the same time.
func sameTime(ts []time.Time) int {
	n := 1
	for n < len(ts) && ts[n].Equal(ts[0]) {
		n++
	}
	return n
}
