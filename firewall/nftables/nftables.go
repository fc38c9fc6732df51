// Package nftables enforces moat's bans in the kernel through nftables,
// speaking netlink with github.com/google/nftables (no nft binary needed).
//
// It owns one table, `table inet moat` by default, and never touches any
// other. Each jail gets one set per family (<jail>_v4 of ipv4_addr,
// <jail>_v6 of ipv6_addr), flags interval and timeout, whose elements expire
// in the kernel. One base chain, prerouting at priority raw (-300), policy
// accept, holds one drop rule per jail and family; hooking prerouting before
// Docker's DNAT covers host services and published container ports alike.
//
// It must not know jails' thresholds or windows: it is told what to hold.
package nftables

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/moatproj/moat/firewall"
)

// ErrPermission is wrapped by the errors of New and Probe when the process
// may not manage nftables (it lacks CAP_NET_ADMIN).
var ErrPermission = errors.New("permission denied")

// DefaultTable is the name of the table when Options.Table is empty.
const DefaultTable = "moat"

// Options configure a Backend.
type Options struct {
	// Table is the name of the inet table moat owns; "moat" when empty.
	Table string
	// NetNS is an open file descriptor of the network namespace to work
	// in; 0 means the current one. The caller keeps it open while the
	// Backend is in use.
	NetNS int
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock used by List (Expires = now + time left); time.Now
	// when nil.
	Now func() time.Time
}

// Backend is the nftables firewall backend. Its methods are safe for use
// by one goroutine at a time (the jail engine serialises its calls).
type Backend struct {
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
	netns int
	log   *slog.Logger
	now   func() time.Time

	// jails holds the jails given to the last successful Sync, by name,
	// and sets their sets, by set name, with the bans each must hold.
	jails  map[string]firewall.Jail
	sets   map[string]*setState
	synced bool
	// want is the sorted list of rule comments of the last Sync's layout.
	want []string

	// rd reads elements and the ruleset generation back.
	rd reader
	// gen is a ruleset generation at which the kernel's elements were
	// known to match the models (genOK); lastFull is when they were last
	// all read back.
	gen      uint32
	genOK    bool
	lastFull time.Time
	fullCost time.Duration // how long the last full comparison took
	// lastCommit is when moat last committed a transaction, or saw someone
	// else's (zero: not yet; taken as now): the kernel may have collected a
	// set's garbage then (see collect).
	lastCommit time.Time
}

var _ firewall.Backend = (*Backend)(nil)

// Probe reports whether nftables can be managed in the network namespace
// netns (0: the current one): nil when it can, an error wrapping
// ErrPermission when the process lacks CAP_NET_ADMIN, another error when
// nf_tables is unavailable.
func Probe(netns int) error {
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return fmt.Errorf("nftables: open netlink: %w", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("nftables: list tables: %w: moat needs CAP_NET_ADMIN to manage its nftables table (run it as root or grant the capability), or set firewall.backend: none", ErrPermission)
		}
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	return nil
}

// New checks that nftables can be managed (see Probe) and returns a Backend
// for the table opts.Table. It changes nothing in the kernel: the table is
// made by the first Sync.
func New(opts Options) (*Backend, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if len(opts.Table) > 255 {
		return nil, fmt.Errorf("nftables: table name %q: longer than 255 bytes", opts.Table)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := Probe(opts.NetNS); err != nil {
		return nil, err
	}
	c, err := dial(opts.NetNS)
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet}
	policy := nftables.ChainPolicyAccept
	return &Backend{
		conn:  c,
		table: t,
		chain: &nftables.Chain{
			Name:     chainName,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookPrerouting,
			Priority: nftables.ChainPriorityRaw,
			Policy:   &policy,
		},
		netns: opts.NetNS,
		log:   opts.Logger,
		now:   opts.Now,
		jails: map[string]firewall.Jail{},
		sets:  map[string]*setState{},
		rd:    reader{netns: opts.NetNS},
	}, nil
}

// dial opens a lasting netlink connection: opening one per operation costs
// milliseconds in another namespace (a setns round trip).
func dial(netns int) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(netns), nftables.AsLasting(), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		return nil, fmt.Errorf("nftables: open netlink: %w", err)
	}
	return c, nil
}

// Socket buffers asked for moat's netlink sockets. The kernel acknowledges
// every message of a batch, and a rebuild after `nft flush ruleset` sends
// hundreds: with the default receive buffer (about 200 KiB) the replies
// overflow it (ENOBUFS) although the batch was applied. A batch is sent in
// one sendmsg, which fails (EMSGSIZE) past the send buffer: one run of
// addresses rewritten whole (a /16 over 10,000 banned addresses with other
// expiries is 20,000 spans) must still go in one transaction.
const (
	readBuffer  = 4 << 20
	writeBuffer = 32 << 20
)

// bigBuffers sets the socket buffers, past the system's rmem_max and
// wmem_max when the process may (CAP_NET_ADMIN, which moat needs anyway).
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, readBuffer)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, writeBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, writeBuffer)
		}
	})
}

// resetConn replaces the connection after an error, so that replies left
// unread by a failed exchange cannot be taken for the next one's.
func (b *Backend) resetConn() {
	_ = b.conn.CloseLasting() // the old Conn falls back to one socket per operation
	if c, err := dial(b.netns); err == nil {
		b.conn = c
	} else {
		b.log.Warn("nftables reconnect", "err", err)
	}
}

// flush sends the queued batch, resetting the connection on error.
func (b *Backend) flush() error {
	err := b.conn.Flush()
	if err != nil {
		b.resetConn()
		return conciseError{err}
	}
	return nil
}

// conciseError is a batch's error with each distinct message once: the
// library joins one error per message of the batch, often the same one
// hundreds of times. errors.Is and errors.As still see them all.
type conciseError struct{ err error }

func (e conciseError) Unwrap() error { return e.err }

func (e conciseError) Error() string {
	var seen []string
	for _, line := range strings.Split(e.err.Error(), "\n") {
		line = strings.TrimPrefix(line, "conn.Receive: ")
		if !slices.Contains(seen, line) {
			seen = append(seen, line)
		}
	}
	return strings.Join(seen, "; ")
}

// Name returns "nftables".
func (b *Backend) Name() string { return "nftables" }

// Table returns the name of the table the backend owns.
func (b *Backend) Table() string { return b.table.Name }

// Close releases the backend; the table and its bans stay in the kernel.
func (b *Backend) Close() error {
	b.rd.close()
	return b.conn.CloseLasting()
}
