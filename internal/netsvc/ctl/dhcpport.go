package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Port 67 is shared by every DHCP server of a host, one per interface. What
// each needs of the others, by Linux's rule for two UDP sockets on one port
// (udp_lib_lport_inuse: they clash unless both set SO_REUSEADDR, or they are
// bound to two different devices):
//
//   - dnsmasq with bind-interfaces or bind-dynamic (libvirt's, and a
//     distribution's set up to share the host) binds 0.0.0.0:67 with
//     SO_REUSEADDR and SO_REUSEPORT and no device, then, serving one
//     interface, binds the socket to it. Started after kvmnet, its bind
//     meets kvmnet's socket while it is bound to no device yet: it needs
//     kvmnet's socket to carry SO_REUSEADDR too ("failed to bind DHCP server
//     socket: Address already in use" otherwise).
//   - systemd-networkd's DHCPServer= binds with SO_REUSEADDR and
//     SO_BINDTODEVICE before bind: it clashes with no other device's server.
//   - dnsmasq in its default wildcard mode binds 0.0.0.0:67 with neither: it
//     claims the port on every interface, and no other DHCP server (nor
//     libvirt's) can run beside it, in either order.
//
// The kernel delivers a request to the socket bound to the device it came
// in on before one bound to none, so SO_REUSEADDR lets no other server take
// kvmnet's unicast; broadcasts reach every socket that may hear the device,
// and a server bound to no device answers only the interfaces it serves.
// SO_REUSEPORT is never set: sockets of one device that all set it form a
// group that spreads the device's requests among them.

// dhcpPortOwned refuses fd, kvmnet's port 67 socket bound to ifname, when
// another socket is bound to port 67 of the same device: with SO_REUSEADDR
// on both, the bind let it in, and the two servers would share the bridge's
// clients.
//
//	ss -ulnpe 'sport = :67'
func dhcpPortOwned(fd int, ifname string) error {
	ifindex, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	if err != nil {
		return fmt.Errorf("dhcp socket device: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("dhcp socket: %w", err)
	}
	others, err := dhcpSockets(func(s *netlink.Socket) bool {
		return int(s.ID.Interface) == ifindex && uint64(s.INode) != st.Ino
	})
	if err != nil {
		return err
	}
	if len(others) > 0 {
		return fmt.Errorf("dhcp bind udp port %d on %s: another DHCP server serves %s: %s", dhcpPort, ifname, ifname, strings.Join(others, ", "))
	}
	return nil
}

// wildcardHint names, for a bind of port 67 that failed with EADDRINUSE,
// the servers bound to port 67 of every interface that set no SO_REUSEADDR:
// only they can refuse kvmnet's bind (one of its own device is refused after).
func wildcardHint(err error) string {
	if !errors.Is(err, unix.EADDRINUSE) {
		return ""
	}
	holders, _ := dhcpSockets(func(s *netlink.Socket) bool { return s.ID.Interface == 0 })
	if len(holders) == 0 {
		return ""
	}
	return " (held on every interface by " + strings.Join(holders, ", ") +
		": a dnsmasq there needs bind-interfaces or bind-dynamic with interface=)"
}

// dhcpSockets describes the UDP sockets on port 67 of the caller's network
// namespace that keep says to, each as "PROGRAM pid N" where a process of the
// namespace holds it, else "socket inode N".
func dhcpSockets(keep func(*netlink.Socket) bool) ([]string, error) {
	socks, err := netlink.SocketDiagUDP(unix.AF_INET)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		socks, err = netlink.SocketDiagUDP(unix.AF_INET)
	}
	if err != nil {
		return nil, fmt.Errorf("list udp sockets: %w", err)
	}
	var found []string
	for _, s := range socks {
		if s.ID.SourcePort == dhcpPort && keep(s) {
			found = append(found, socketOwner(s.INode))
		}
	}
	return found, nil
}

// socketOwner names the process holding the socket with inode ino, by its
// descriptors in /proc; a process of another user or namespace may hide it.
func socketOwner(ino uint32) string {
	want := "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == want {
			proc := filepath.Dir(filepath.Dir(fd))
			comm, _ := os.ReadFile(filepath.Join(proc, "comm"))
			return strings.TrimSpace(string(comm)) + " pid " + filepath.Base(proc)
		}
	}
	return "socket inode " + strconv.FormatUint(uint64(ino), 10)
}
