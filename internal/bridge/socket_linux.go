package bridge

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nlh is the netlink handle every call goes through. The zero Handle opens a
// socket per call, in the calling thread's network namespace, as the
// package functions of vishvananda/netlink do: right for a process whose
// threads live in different namespaces (the tests, the operator tool).
var nlh = &netlink.Handle{}

// KeepSocket makes every later call share one rtnetlink socket, opened now
// in the calling thread's network namespace, instead of a socket per call
// (socket, bind, getsockname, close: four syscalls and a kernel socket each,
// a dozen times per helper run). Only for a process that stays in one
// network namespace, as a helper does: the socket stays in the namespace it
// was opened in. Call it before anything else in this package runs.
func KeepSocket() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open rtnetlink socket: %w", err)
	}
	nlh = h
	return nil
}

// linkDel deletes a link on a socket of its own: the kernel answers a
// delete only after RCU grace periods (~40 ms for a bridge), and a last
// down deletes links side by side with other netlink work, which would
// queue behind it on the shared socket.
//
//	ip link del NAME
func linkDel(l netlink.Link) error { return netlink.LinkDel(l) }
