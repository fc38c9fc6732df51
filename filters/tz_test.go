package filters

import (
	"testing"
	"time"
)

// TestPosixZone: a TZ rule string gives the zone the C library would:
// CET in winter, CEST from the last Sunday of March to the last of
// October.
func TestPosixZone(t *testing.T) {
	loc, ok := posixZone("CET-01CEST-02,M3.5.0,M10.5.0")
	if !ok {
		t.Fatal("rule refused")
	}
	for _, c := range []struct {
		utc  time.Time
		name string
		off  int
	}{
		{time.Date(2005, 1, 23, 21, 59, 59, 0, time.UTC), "CET", 3600},
		{time.Date(2005, 7, 1, 12, 0, 0, 0, time.UTC), "CEST", 7200},
		{time.Date(2005, 3, 27, 0, 59, 59, 0, time.UTC), "CET", 3600},
		{time.Date(2005, 3, 27, 1, 0, 0, 0, time.UTC), "CEST", 7200},
	} {
		if name, off := c.utc.In(loc).Zone(); name != c.name || off != c.off {
			t.Errorf("%v: %s %d, want %s %d", c.utc, name, off, c.name, c.off)
		}
	}
	for _, bad := range []string{"", "X1", "CET", "Europe/Berlin"} {
		if _, ok := posixZone(bad); ok {
			t.Errorf("%q taken for a rule", bad)
		}
	}
}
