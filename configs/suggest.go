package configs

import "strings"

// suggest returns the known key closest to an unknown one, or "" when none
// is close enough to be a likely typo. Keys that differ only in case,
// separators ("ban_time", "bantime.increment") or a plural ("maxretries",
// "logpaths") always match.
func suggest(unknown string, known []string) string {
	n := normKey(unknown)
	best, bestDist := "", 1+len(n)/4
	if bestDist > 3 {
		bestDist = 3
	}
	for _, k := range known {
		nk := normKey(k)
		if nk == n {
			return k
		}
		if d := editDistance(n, nk); d <= bestDist && (best == "" || d < editDistance(n, normKey(best))) {
			best, bestDist = k, d
		}
	}
	return best
}

// normKey folds case, drops separators and a plural ending.
func normKey(s string) string {
	s = strings.ToLower(s)
	s = strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(s)
	switch {
	case strings.HasSuffix(s, "ies") && len(s) > 4:
		s = s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "s") && len(s) > 3:
		s = s[:len(s)-1]
	}
	return s
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
