package bridge

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// SetGroup puts a port in device group g, which is how a network's guard
// table tells the ports kvmnet attached (portguard.Group); 0 is the
// kernel's default group.
//
//	ip link set PORT group G
func SetGroup(port netlink.Link, g uint32) error {
	if uint32(port.Attrs().Group) == g {
		return nil
	}
	if err := nlh.LinkSetGroup(port, int(g)); err != nil {
		return fmt.Errorf("set %s group %d: %w", port.Attrs().Name, g, err)
	}
	port.Attrs().Group = g
	return nil
}

// SetIsolated makes a bridge port isolated or not: an isolated port's
// frames reach only the bridge's ports that are not isolated (the host,
// an uplink), never another isolated one.
//
//	bridge link set dev PORT isolated on|off
func SetIsolated(port netlink.Link, on bool) error {
	if err := nlh.LinkSetIsolated(port, on); err != nil {
		return fmt.Errorf("set %s isolated %t: %w", port.Attrs().Name, on, err)
	}
	return nil
}

// Isolated reports whether a bridge port is isolated.
//
//	bridge -d link show dev PORT
func Isolated(port netlink.Link) (bool, error) {
	pi, err := nlh.LinkGetProtinfo(port)
	if err != nil {
		return false, fmt.Errorf("read %s's bridge port flags: %w", port.Attrs().Name, err)
	}
	return pi.Isolated, nil
}
