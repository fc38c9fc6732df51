package control

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerOf reads SO_PEERCRED: the uid and pid of the process that connected.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: errors.New("peer credentials: not a unix socket connection")}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: fmt.Errorf("peer credentials: %w", err)}
	}
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: fmt.Errorf("peer credentials: %w", err)}
	}
	if gerr != nil {
		return peer{err: fmt.Errorf("peer credentials: getsockopt SO_PEERCRED: %w", gerr)}
	}
	return peer{uid: cred.Uid, pid: uint32(cred.Pid), checked: true}
}
