package emulate

import (
	"strings"
	"testing"

	"github.com/moatproj/moat/jail"
)

// TestWriteJailStatusTooOld: the failures skipped for being older than
// findtime get a line under the filter's; without any the layout stays
// fail2ban-client's.
func TestWriteJailStatusTooOld(t *testing.T) {
	var b strings.Builder
	WriteJailStatus(&b, jail.Status{Jail: "sshd", TotalFailed: 3, TooOld: 12})
	if !strings.Contains(b.String(), "|  |- Total failed:\t3\n|  |- Older than findtime, skipped:\t12\n|  `- File list:") {
		t.Errorf("status lacks the skipped line:\n%s", b.String())
	}
	b.Reset()
	WriteJailStatus(&b, jail.Status{Jail: "sshd", TotalFailed: 3})
	if strings.Contains(b.String(), "findtime") || strings.Count(b.String(), "\n") != 9 {
		t.Errorf("status without skipped failures:\n%s", b.String())
	}
}
