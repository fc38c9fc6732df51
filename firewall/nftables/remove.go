package nftables

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
)

// RemoveTable deletes the inet table named table (DefaultTable when empty)
// with everything in it, in the network namespace netns (0: the current
// one). It reports whether there was a table to delete; a missing table is
// not an error. It is for an operator removing moat from a host: a running
// Backend would make the table again at its next check.
func RemoveTable(netns int, table string) (removed bool, err error) {
	if table == "" {
		table = DefaultTable
	}
	if err := Probe(netns); err != nil {
		return false, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return false, fmt.Errorf("nftables: open netlink: %w", err)
	}
	t, err := c.ListTableOfFamily(table, nftables.TableFamilyINet)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nftables: list table inet %s: %w", table, err)
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil // deleted meanwhile by someone else
		}
		return false, fmt.Errorf("nftables: delete table inet %s: %w", table, conciseError{err})
	}
	return true, nil
}
