package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/moatproj/moat/configs"
	"github.com/moatproj/moat/configs/fail2ban"
	"github.com/moatproj/moat/filters"
)

// filterSource is the file (or "built-in NAME") a named filter resolves
// to, or why it resolves to none.
func filterSource(f configs.Filter) string {
	src, err := filters.Resolve(f.Name, f.Dirs)
	if err != nil {
		return "not found"
	}
	return src.String()
}

// withFilterFiles adds "filter_file" to each jail of `check --json`'s
// output (data, rendered from res): what filters.Resolve finds for the
// jail's filter in dir's filter.d, then among the built-ins. The keys
// keep their order.
func withFilterFiles(data []byte, res *fail2ban.Result, dir string) ([]byte, error) {
	var top map[string]json.RawMessage
	var jails []json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(top["jails"], &jails); err != nil {
		return nil, err
	}
	if len(jails) != len(res.Jails) {
		return nil, fmt.Errorf("check --json: %d jails printed, %d loaded", len(jails), len(res.Jails))
	}
	for i, j := range res.Jails {
		f := j.Filter
		f.Dirs = []string{filepath.Join(dir, "filter.d")}
		file := "inline"
		if f.Name != "" {
			file = filterSource(f)
		}
		v, err := json.Marshal(file)
		if err != nil {
			return nil, err
		}
		raw := jails[i][:len(jails[i])-1] // without its closing '}'
		jails[i] = append(append(append(raw[:len(raw):len(raw)], `,"filter_file":`...), v...), '}')
	}
	var err error
	if top["jails"], err = json.Marshal(jails); err != nil {
		return nil, err
	}
	return json.MarshalIndent(top, "", "  ")
}
