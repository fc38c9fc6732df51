package filters

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Field is one entry of the dictionary fail2ban keeps for a failure (the
// named groups of its regexes, merged over a connection group), in the
// order Python's dict keeps them: what fail2ban-regex -o row prints.
type Field struct {
	Key string
	// None is Python's None: the group took no part in the match.
	None bool
	Str  string
	// Set, when not nil, is a set of strings (fail2ban's "users").
	Set []string
}

// pyDict is an insertion-ordered dictionary with Python's dict semantics.
type pyDict []Field

func (d pyDict) index(k string) int {
	for i := range d {
		if d[i].Key == k {
			return i
		}
	}
	return -1
}

// get returns the value of k and whether it is there and not None.
func (d pyDict) get(k string) (Field, bool) {
	if i := d.index(k); i >= 0 {
		return d[i], !d[i].None
	}
	return Field{}, false
}

// truthy is Python's truth of d[k]: present, not None, not empty.
func (d pyDict) truthy(k string) bool {
	f, ok := d.get(k)
	return ok && (f.Str != "" || len(f.Set) > 0)
}

// set assigns k, keeping its place when it is there already.
func (d *pyDict) set(f Field) {
	if i := d.index(f.Key); i >= 0 {
		(*d)[i] = f
		return
	}
	*d = append(*d, f)
}

// pop removes k and returns whether its value was truthy.
func (d *pyDict) pop(k string) bool {
	i := d.index(k)
	if i < 0 {
		return false
	}
	t := !(*d)[i].None && ((*d)[i].Str != "" || len((*d)[i].Set) > 0)
	*d = slices.Delete(*d, i, i+1)
	return t
}

// update sets every field of o; with notNone, only those that are not None.
func (d *pyDict) update(o pyDict, notNone bool) {
	for _, f := range o {
		if !notNone || !f.None {
			d.set(f)
		}
	}
}

func (d pyDict) clone() pyDict {
	out := slices.Clone(d)
	for i := range out {
		out[i].Set = slices.Clone(out[i].Set)
	}
	return out
}

// pyGroups matches text and returns Python's groupdict of the regex as
// fail2ban makes it: every named group in the order of the pattern (None
// when it took no part; <SKIPLINES> groups numbered skiplines0, 1, …), then
// alt_NAME values copied into NAME where NAME is empty.
func (cr *compiledRegex) pyGroups(text []byte) (pyDict, bool) {
	var d pyDict
	skips := 0
	add := func(name, val string, set bool) {
		if name == "" || name[0] >= '0' && name[0] <= '9' {
			return
		}
		if name == skipGroup {
			name += strconv.Itoa(skips)
			skips++
		}
		if d.index(name) >= 0 {
			return
		}
		d = append(d, Field{Key: name, None: !set, Str: val})
	}
	if cr.engine == engineGo {
		loc := cr.re.FindSubmatchIndex(text)
		if loc == nil {
			return nil, false
		}
		for i, n := range cr.re.SubexpNames() {
			if i == 0 {
				continue
			}
			if loc[2*i] >= 0 {
				add(n, string(text[loc[2*i]:loc[2*i+1]]), true)
			} else {
				add(n, "", false)
			}
		}
	} else {
		m, err := cr.bt.FindStringMatch(string(text))
		if err != nil || m == nil {
			return nil, false
		}
		for _, n := range cr.bt.GetGroupNames() {
			if n == skipGroup {
				// regexp2 keeps one group for every <SKIPLINES>:
				// each capture is one of fail2ban's groups.
				if g := m.GroupByName(n); g != nil {
					for _, c := range g.Captures {
						add(n, c.String(), true)
					}
				}
				continue
			}
			if g := m.GroupByName(n); g != nil && len(g.Captures) > 0 {
				add(n, g.String(), true)
			} else {
				add(n, "", false)
			}
		}
	}
	// fail2ban's alternatives, sorted by name: alt_user_1 → user when
	// user is empty.
	var alts []string
	for _, f := range d {
		if strings.HasPrefix(f.Key, "alt_") && len(f.Key) > 4 {
			alts = append(alts, f.Key)
		}
	}
	sort.Strings(alts)
	for _, k := range alts {
		base := strings.TrimPrefix(k, "alt_")
		if i := strings.LastIndexByte(base, '_'); i > 0 && isDigits(base[i+1:]) {
			base = base[:i]
		}
		base = fieldGroup(strings.ToUpper(base))
		if d.truthy(k) && !d.truthy(base) {
			f, _ := d.get(k)
			d.set(Field{Key: base, Str: f.Str})
		}
	}
	return d, true
}

// mergeFields is fail2ban's merge of a connection group's dictionary with
// the dictionary cur of its next line's failure; known says whether the
// group was open before this line, forget whether the line closes it. The
// group's dictionary is then the failure's.
func mergeFields(e *mlGroup, cur pyDict, known, forget bool) {
	if cur.truthy("mlfgained") && !cur.truthy("nofail") {
		f, _ := cur.get("mlfgained")
		cur.set(Field{Key: "nofail", Str: f.Str})
	}
	cur.pop("mlfforget")
	user, hasUser := cur.get("user")
	addUser := func(d *pyDict) {
		if !hasUser || user.Str == "" {
			return
		}
		u, ok := d.get("users")
		if !ok {
			d.set(Field{Key: "users", Set: []string{user.Str}})
			return
		}
		if !slices.Contains(u.Set, user.Str) {
			u.Set = append(slices.Clone(u.Set), user.Str)
			d.set(u)
		}
	}
	if known {
		addUser(&e.fields)
		e.fields.pop("nofail")
		e.fields.pop("mlfgained")
		e.fields.update(cur, true)
		return
	}
	if !forget {
		addUser(&cur)
	}
	e.fields = cur
}

// pyGroupsOrNil is pyGroups of a regex that may be nil (no prefregex),
// without the prefregex's content.
func (cr *compiledRegex) pyGroupsOrNil(text []byte) (pyDict, bool) {
	if cr == nil {
		return nil, false
	}
	d, ok := cr.pyGroups(text)
	d.pop("content")
	return d, ok
}

// withFields is fail2ban's failure dictionary of a line: the prefregex's
// groups pd, updated with those of failregex r on text (None values too).
func withFields(pd pyDict, r *compiledRegex, text []byte) pyDict {
	d := pd.clone()
	if rd, ok := r.pyGroups(text); ok {
		d.update(rd, false)
	}
	return d
}
