package filters

import (
	"fmt"
	"strings"
)

// This file gives the options of a filter that concern the systemd
// journal, for the configuration of a jail that reads it.

// JournalMatch returns the filter's journalmatch option, with %(x)s
// interpolated and tags substituted as fail2ban does: the journal entries
// the filter is written for, in fail2ban's syntax (such as
// "_SYSTEMD_UNIT=sshd.service + _COMM=sshd"). It is "" when the filter
// sets none; an error names the option.
func (f *Filter) JournalMatch() (string, error) {
	return f.option("journalmatch")
}

// LogType returns the filter's logtype option (fail2ban's common.conf
// reads it to pick the line prefix and date pattern: "file", "journal",
// "short", "rfc5424"; "" when unset) and whether the filter pins it:
// given with the filter's name (sshd[logtype=file]) or set in its own
// [Definition]. fail2ban sets an unpinned logtype from the jail's backend
// ("journal" for systemd, else "file") before it reads the filter, over
// [Init] and [DEFAULT] values.
func (f *Filter) LogType() (value string, pinned bool, err error) {
	for k := range f.defs.opts {
		if strings.EqualFold(k, "logtype") {
			pinned = true
		}
	}
	if sec := f.defs.doc.d.Section("Definition"); sec != nil {
		if _, ok := sec.Value("logtype"); ok {
			pinned = true
		}
	}
	value, err = f.option("logtype")
	return value, pinned, err
}

// option returns key's value as the filter reads it, "" when unset.
func (f *Filter) option(key string) (string, error) {
	v, ok, err := f.defs.get(key)
	if err != nil || !ok {
		return "", err
	}
	v, err = substituteTags(v, func(k string) (string, bool, error) { return f.defs.get(k) })
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return strings.TrimSpace(v), nil
}

// LoadLogType loads spec as Load does, for a jail whose lines are of the
// given logtype ("journal" for a jail reading the systemd journal, "file"
// otherwise), as fail2ban prepares a jail's filter: when the filter does
// not pin its logtype (see LogType) and has one that differs, it is
// compiled again with logtype given as an option. An empty logtype, or a
// filter without a logtype (moat's built-ins read both kinds of line),
// leaves the filter as Load gives it.
func (l *Loader) LoadLogType(spec, logtype string) (*Filter, error) {
	f, err := l.Load(spec)
	if err != nil || logtype == "" {
		return f, err
	}
	lt, pinned, err := f.LogType()
	if err != nil {
		return nil, fmt.Errorf("load filter %q: %w", spec, err)
	}
	if pinned || lt == "" || lt == logtype {
		return f, nil
	}
	return l.Load(withOption(spec, "logtype", logtype))
}

// withOption adds key=value to the options of a filter spec
// ("sshd" → "sshd[key=value]", "sshd[mode=normal]" → "sshd[key=value, mode=normal]").
func withOption(spec, key, value string) string {
	spec = strings.TrimSpace(spec)
	if i := strings.IndexByte(spec, '['); i >= 0 && strings.HasSuffix(spec, "]") {
		return spec[:i+1] + key + "=" + value + ", " + spec[i+1:]
	}
	return spec + "[" + key + "=" + value + "]"
}
