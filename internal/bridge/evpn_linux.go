package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// What a VXLAN link needs for FRR's zebra to run BGP EVPN over it, and what
// zebra installs on it. zebra takes a VXLAN link on a bridge as a local VNI
// (its id), with the link's local address as this host's VTEP; it puts the
// remote VTEPs in as all-zero FDB entries (head-end replication) and the
// remote guests' MACs as entries `extern_learn` with their VTEP as dst.

// ErrNoUnderlayAddress is returned when neither the file nor a route tells
// this host's underlay address, which zebra needs on the link.
var ErrNoUnderlayAddress = errors.New("give local, this host's underlay address")

// EVPNPort makes the VXLAN link's bridge port learn nothing, since zebra
// installs every remote MAC, and answer ARP and neighbour solicitations from
// the neighbours zebra installs instead of flooding them to every VTEP.
//
//	ip link set NAME type bridge_slave learning off neigh_suppress on
func EVPNPort(vx netlink.Link) error {
	if err := nlh.LinkSetLearning(vx, false); err != nil {
		return fmt.Errorf("set %s learning off: %w", vx.Attrs().Name, err)
	}
	if err := nlh.LinkSetBrNeighSuppress(vx, true); err != nil {
		return fmt.Errorf("set %s neigh_suppress on: %w", vx.Attrs().Name, err)
	}
	return nil
}

// RemoteMAC is a guest on another host, as zebra installed it.
type RemoteMAC struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
}

// EVPNRemotes reads what zebra installed on the VXLAN link: the remote VTEPs
// (its all-zero entries) and the remote MACs (entries `extern_learn` with a
// dst), in the kernel's order.
//
//	bridge fdb show dev NAME
func EVPNRemotes(vx netlink.Link) (vteps []netip.Addr, macs []RemoteMAC, err error) {
	all, err := nlh.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, nil, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range all {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.LinkIndex != vx.Attrs().Index || !ok {
			continue
		}
		switch {
		case vtepset.IsVTEP(n.HardwareAddr):
			vteps = append(vteps, ip.Unmap())
		case n.Flags&netlink.NTF_EXT_LEARNED != 0:
			macs = append(macs, RemoteMAC{MAC: n.HardwareAddr, VTEP: ip.Unmap()})
		}
	}
	return vteps, macs, nil
}

// ReadEVPNUnderlay finds this host's side of an EVPN overlay, which has no
// peers to route to: its address (local when given, else the first global
// IPv4 address of dev, else the source of the default route) and the MTU of
// the link that address is on (dev's when given).
//
//	ip -4 addr show [dev DEV]; ip route show default
func ReadEVPNUnderlay(dev string, local netip.Addr) (Underlay, error) {
	var u Underlay
	var link netlink.Link
	if dev != "" {
		l, err := Link(dev)
		if err != nil {
			return u, fmt.Errorf("underlay link: %w", err)
		}
		link, u.DevIndex = l, l.Attrs().Index
	}
	if !local.IsValid() && link == nil {
		src, l, err := defaultSource()
		if err != nil {
			return u, err
		}
		local, link = src, l
	}
	addrs, err := nlh.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return u, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if !ok || !ip.IsGlobalUnicast() || local.IsValid() && ip != local {
			continue
		}
		u.Source = ip
		if link == nil {
			if link, err = nlh.LinkByIndex(a.LinkIndex); err != nil {
				return u, fmt.Errorf("link of %s: %w", ip, err)
			}
		}
		break
	}
	switch {
	case u.Source.IsValid():
	case local.IsValid() && dev != "":
		return u, fmt.Errorf("local %s is not an address of dev %s", local, dev)
	case local.IsValid():
		return u, fmt.Errorf("local %s is not an address of this host", local)
	default:
		return u, fmt.Errorf("%s has no IPv4 address: %w", link.Attrs().Name, ErrNoUnderlayAddress)
	}
	u.MTU = link.Attrs().MTU
	return u, nil
}

// defaultSource is the source address of the default IPv4 route (invalid
// when the route names none) and its link.
func defaultSource() (netip.Addr, netlink.Link, error) {
	routes, err := nlh.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		l, err := nlh.LinkByIndex(r.LinkIndex)
		if err != nil {
			return netip.Addr{}, nil, fmt.Errorf("link of the default route: %w", err)
		}
		src, _ := netip.AddrFromSlice(r.Src)
		return src.Unmap(), l, nil
	}
	return netip.Addr{}, nil, fmt.Errorf("no default route tells this host's underlay address: %w", ErrNoUnderlayAddress)
}
