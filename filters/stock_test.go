package filters

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproj/moat/internal/testkit"
)

// TestEveryStockFilterLoads: every filter Debian's fail2ban installs in
// /etc/fail2ban/filter.d compiles (with fail2ban's own includes).
func TestEveryStockFilterLoads(t *testing.T) {
	dir := "/etc/fail2ban/filter.d"
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil || len(files) == 0 {
		testkit.Missing(t, "needs /etc/fail2ban/filter.d from Debian's fail2ban (installed by .ci/run)")
	}
	loaded := 0
	for _, f := range files {
		base := filepath.Base(f)
		if base == "common.conf" || strings.HasSuffix(base, "-common.conf") {
			continue // included by others, not filters of their own
		}
		flt, err := (&Loader{Dirs: []string{dir}}).Load(f)
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		if len(flt.Failregexes()) == 0 {
			t.Errorf("%s: loaded with no failregex", base)
		}
		loaded++
	}
	t.Logf("%d stock filters loaded", loaded)
}
