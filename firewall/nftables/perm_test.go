package nftables_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/moatproj/moat/firewall/nftables"

	"github.com/moatproj/moat/internal/testkit"
)

// TestNewWithoutCapability runs New in a child process placed in a new user
// namespace: it is root there, but holds no CAP_NET_ADMIN over the
// network namespace it lives in, as an unprivileged moat would. Listing
// tables is the only thing tried, so the host's ruleset is never changed.
func TestNewWithoutCapability(t *testing.T) {
	if os.Getenv("MOAT_NFT_PERM_CHILD") == "1" {
		_, err := nftables.New(nftables.Options{})
		fmt.Printf("is-permission=%v\nerr=%v\n", errors.Is(err, nftables.ErrPermission), err)
		perr := nftables.Probe(0)
		fmt.Printf("probe-is-permission=%v\n", errors.Is(perr, nftables.ErrPermission))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNewWithoutCapability$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MOAT_NFT_PERM_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		testkit.Missing(t, "user namespaces unavailable here: %v", err)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"is-permission=true", "probe-is-permission=true", "CAP_NET_ADMIN", "firewall.backend: none"} {
		if !strings.Contains(s, want) {
			t.Errorf("child output lacks %q:\n%s", want, s)
		}
	}
}
