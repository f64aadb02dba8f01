package netsvc

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/portguard"
)

// A NIC hot-plugged into a running libvirt domain (`virsh attach-device`)
// runs no hook: libvirt's qemu hook is called to prepare, start, stop,
// release, migrate, restore and reconnect a domain, never for a device, and
// its network hook only for <interface type='network'>. Its tap lands on the
// bridge outside the network's guard group, where no guard rule looks at it.
// The network's resident, which follows the links anyway, puts a tap that
// arrives on the bridge outside the group into it (and isolates it under
// isolate_guests), as the hook does at a domain's start, and says so. Every
// path of kvmnet's own puts a port in the group in or before its attach, so
// only ports attached by others arrive outside it: libvirt's hot-plugged
// taps, an admin's by hand; libvirt's taps at a domain's start, a moment
// before the hook does the same. A port taken out of the group after its
// arrival is left so: an admin's choice.

// tapArrived reports whether u shows a tun/tap link as a port of bridge
// index br that taps, the bridge's known tun/tap ports, does not hold yet.
func tapArrived(taps map[int32]bool, u netlink.LinkUpdate, br int) bool {
	if u.Family == unix.AF_BRIDGE || u.Header.Type != unix.RTM_NEWLINK || taps[u.Index] {
		return false
	}
	_, isTap := u.Link.(*netlink.Tuntap)
	return isTap && br != 0 && u.Link.Attrs().MasterIndex == br
}

// guardArrival puts tap l, just arrived on the bridge, into the network's
// guard group, and makes it an isolated port under isolate_guests.
//
//	bridge link set dev TAP isolated on; ip link set TAP group G
func (s *Server) guardArrival(l netlink.Link) {
	g := portguard.Group(s.cfg.Network)
	if uint32(l.Attrs().Group) == g {
		return
	}
	name := l.Attrs().Name
	// Isolated first: once in the group, the port looks like kvmnet's own.
	if s.cfg.IsolateGuests {
		if err := netlink.LinkSetIsolated(l, true); err != nil {
			s.log.Warn("guard: could not isolate a port attached without kvmnet", "port", name, "err", err.Error())
		}
	}
	if err := netlink.LinkSetGroup(l, int(g)); err != nil {
		s.log.Warn("guard: could not guard a port attached without kvmnet", "port", name, "err", err.Error())
		return
	}
	s.log.Warn("guard: a port attached without kvmnet (a NIC hot-plugged into a libvirt domain?) is now guarded",
		"port", name, "bridge", s.cfg.Bridge, "group", g, "isolated", s.cfg.IsolateGuests)
}
