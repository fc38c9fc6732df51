package fail2ban

import (
	"encoding/json"
	"time"

	"github.com/moatproj/moat/internal/netaddr"
)

// jsonJail is one jail as `moat check --fail2ban DIR --json` prints it.
type jsonJail struct {
	Name     string   `json:"name"`
	MaxRetry int      `json:"maxretry"`
	FindTime float64  `json:"findtime"`
	BanTime  float64  `json:"bantime"`
	Filter   string   `json:"filter"`
	LogPath  []string `json:"logpath"`
	Backend  string   `json:"backend"`
	// Journal says whether the jail reads the journal, with backend auto
	// worked out; JournalMatch is its match in fail2ban's syntax.
	Journal      bool          `json:"journal"`
	JournalMatch string        `json:"journalmatch"`
	LogType      string        `json:"logtype"`
	Port         string        `json:"port"`
	Ports        []string      `json:"ports"`
	Protocol     string        `json:"protocol"`
	BanAction    string        `json:"banaction"`
	IgnoreIP     []string      `json:"ignoreip"`
	IgnoreSelf   bool          `json:"ignoreself"`
	Increment    jsonIncrement `json:"bantime_increment"`
}

type jsonIncrement struct {
	Enabled     bool      `json:"enabled"`
	Factor      float64   `json:"factor"`
	MaxTime     float64   `json:"maxtime"`
	Multipliers []float64 `json:"multipliers"`
	RndTime     float64   `json:"rndtime"`
}

type jsonWarning struct {
	Jail   string `json:"jail"`
	Option string `json:"option"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

type jsonResult struct {
	Dir      string        `json:"dir"`
	Jails    []jsonJail    `json:"jails"`
	Warnings []jsonWarning `json:"warnings"`
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// JSON renders r for `moat check --fail2ban DIR --json`: an object with
// "dir", "jails" (per enabled jail its name, effective maxretry, findtime
// and bantime in seconds (-1: no end), filter, logpath, backend, journal
// (whether it reads the systemd journal, auto worked out), journalmatch
// (fail2ban's syntax, "" for every entry), logtype (what the filter is
// given), and the other derived settings) and "warnings". Lists are []
// rather than null.
func (r *Result) JSON() ([]byte, error) {
	out := jsonResult{Dir: r.Dir, Jails: []jsonJail{}, Warnings: []jsonWarning{}}
	for _, j := range r.Jails {
		jj := jsonJail{
			Name: j.Name, MaxRetry: j.MaxRetry,
			FindTime: seconds(j.FindTime), BanTime: seconds(j.BanTime),
			Filter: j.Filter.Name, LogPath: append([]string{}, j.LogPath...),
			Backend: j.Backend, Journal: j.Journal, JournalMatch: j.JournalMatch.String(), LogType: j.Filter.LogType,
			Port: j.Port, Ports: []string{},
			Protocol: j.Protocol, BanAction: j.BanAction, IgnoreIP: []string{},
			IgnoreSelf: j.IgnoreSelf,
			Increment: jsonIncrement{
				Enabled: j.Increment.Enabled, Factor: j.Increment.Factor,
				MaxTime: seconds(j.Increment.MaxTime), RndTime: seconds(j.Increment.RndTime),
				Multipliers: append([]float64{}, j.Increment.Multipliers...),
			},
		}
		for _, p := range j.Ports {
			jj.Ports = append(jj.Ports, portString(p.First, p.Last))
		}
		for _, p := range j.IgnoreIP {
			jj.IgnoreIP = append(jj.IgnoreIP, netaddr.Format(p))
		}
		out.Jails = append(out.Jails, jj)
	}
	for _, w := range r.Warnings {
		out.Warnings = append(out.Warnings, jsonWarning(w))
	}
	return json.MarshalIndent(out, "", "  ")
}
