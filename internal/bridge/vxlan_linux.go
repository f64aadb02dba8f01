package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLANOverhead is what VXLAN over IPv4 adds to a guest's frame: outer IPv4
// (20), UDP (8), VXLAN (8) and the inner Ethernet header (14). The bridge and
// its taps get the underlay's MTU minus this, so a full-size guest packet
// still fits one underlay packet.
const VXLANOverhead = 50

// ErrNotVXLAN is returned when a link of the VXLAN device's name exists but
// is of another kind.
var ErrNotVXLAN = errors.New("not a vxlan")

// VXLAN is the overlay link of a network, as CreateVXLAN makes it.
type VXLAN struct {
	Name     string
	VNI      uint32
	Port     int
	Local    netip.Addr // invalid: the kernel picks the route's source
	DevIndex int        // 0: no underlay link of its own
	MTU      int
	EVPN     bool // FRR's zebra fills its FDB: no learning, ARP/ND suppression
}

// FindVXLAN returns the VXLAN link called name, or nil when no link has that
// name. A link of that name of another kind is an error wrapping ErrNotVXLAN.
//
//	ip -d link show NAME
func FindVXLAN(name string) (*netlink.Vxlan, error) {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s is a %s link: %w", name, l.Type(), ErrNotVXLAN)
	}
	return vx, nil
}

// CreateVXLAN makes the VXLAN link with address learning on (so that a
// guest's frames go straight to the host it was heard from), with v's MTU,
// marked as kvmnet's like a bridge it makes, attaches it to br and brings it up.
// With v.EVPN it learns nothing, neither the link nor its bridge port (FRR's
// zebra installs the remote MACs), and is up only once its port is so.
//
//	ip link add NAME mtu MTU up type vxlan id VNI dstport PORT [local LOCAL] [dev DEV] learning|nolearning
//	ip link set NAME master BRIDGE alias kvmnet
//	[ip link set NAME type bridge_slave learning off neigh_suppress on; ip link set NAME up]
func CreateVXLAN(v VXLAN, br *netlink.Bridge) (*netlink.Vxlan, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.Flags = v.Name, v.MTU, net.FlagUp
	if v.EVPN {
		attrs.Flags = 0
	}
	attrs.MasterIndex = br.Index
	vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(v.VNI), Port: v.Port, VtepDevIndex: v.DevIndex, Learning: !v.EVPN}
	if v.Local.IsValid() {
		vx.SrcAddr = v.Local.AsSlice()
	}
	err := nlh.LinkAdd(vx)
	if err == nil {
		// The kernel takes an alias only from a change, not with the link's creation.
		err = nlh.LinkSetAlias(vx, Alias)
	}
	if err == nil && v.EVPN {
		if err = EVPNPort(vx); err == nil {
			err = nlh.LinkSetUp(vx)
		}
	}
	if err != nil {
		if vx.Index != 0 {
			_ = nlh.LinkDel(vx) // leave nothing half-made
		}
		return nil, fmt.Errorf("create vxlan %s: %w", v.Name, err)
	}
	vx.Alias = Alias
	return vx, nil
}

// DeleteVXLAN removes the VXLAN link called name with the given index, its
// FDB entries with it. A link already gone, or one of that name made since
// by someone else (another index), is left alone.
//
//	ip link del NAME
func DeleteVXLAN(name string, index int) error {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Attrs().Index != index {
		return nil
	}
	if err := linkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete vxlan %s: %w", name, err)
	}
	return nil
}

// zeroMAC is the FDB address that stands for "every frame with no entry of
// its own": broadcast, multicast and unknown unicast.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// SyncPeers makes the VXLAN link's all-zero FDB entries exactly one per
// peer, so that every frame the link floods (broadcast, multicast, unknown
// unicast) goes to each peer: head-end replication, no multicast in the
// underlay. It returns the peers it added and removed.
//
//	bridge fdb append 00:00:00:00:00:00 dev NAME dst PEER
//	bridge fdb del 00:00:00:00:00:00 dev NAME dst OLD
func SyncPeers(vx netlink.Link, peers []netip.Addr) (added, removed []netip.Addr, err error) {
	flood, _, err := Remotes(vx)
	if err != nil {
		return nil, nil, err
	}
	entry := func(p netip.Addr) *netlink.Neigh {
		return &netlink.Neigh{
			LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: unix.NUD_PERMANENT | unix.NUD_NOARP, HardwareAddr: zeroMAC, IP: p.AsSlice(),
		}
	}
	for _, p := range peers {
		if slices.Contains(flood, p) {
			continue
		}
		if err := nlh.NeighAppend(entry(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return added, removed, fmt.Errorf("add peer %s to %s: %w", p, vx.Attrs().Name, err)
		}
		added = append(added, p)
	}
	for _, p := range flood {
		if slices.Contains(peers, p) {
			continue
		}
		if err := nlh.NeighDel(entry(p)); err != nil && !errors.Is(err, unix.ENOENT) {
			return added, removed, fmt.Errorf("remove peer %s from %s: %w", p, vx.Attrs().Name, err)
		}
		removed = append(removed, p)
	}
	return added, removed, nil
}

// Remotes reads the VXLAN link's FDB: the peers it floods to (its all-zero
// entries) and the remote hosts it learned a guest's MAC from, which are
// the peers it has heard from (entries age out after 300 s of silence).
//
//	bridge fdb show dev NAME
func Remotes(vx netlink.Link) (flood, heard []netip.Addr, err error) {
	all, err := nlh.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, nil, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	seen := map[netip.Addr]bool{}
	for _, n := range all {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.LinkIndex != vx.Attrs().Index || !ok {
			continue
		}
		ip = ip.Unmap()
		switch {
		case n.HardwareAddr.String() == zeroMAC.String():
			flood = append(flood, ip)
		case n.State&unix.NUD_PERMANENT == 0 && !seen[ip]:
			seen[ip] = true
			heard = append(heard, ip)
		}
	}
	return flood, heard, nil
}

// CheckNotLocal refuses a peer that is an address of this host: the overlay
// would send its frames to itself. With no peers (BGP EVPN) it reads nothing.
//
//	ip -4 addr
func CheckNotLocal(peers []netip.Addr) error {
	if len(peers) == 0 {
		return nil
	}
	addrs, err := nlh.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		for _, p := range peers {
			if ok && ip.Unmap() == p {
				return fmt.Errorf("peer %s is this host's own address (on %s): list the other hypervisors only", p, linkName(a.LinkIndex))
			}
		}
	}
	return nil
}

// Underlay is what carries a network's overlay: the MTU of its path to the
// peers, and the peers with no route at all.
type Underlay struct {
	MTU      int          // 0 when no peer has a route and no dev was given
	DevIndex int          // the dev given, else 0
	Source   netip.Addr   // this host's address towards the first routed peer
	Unrouted []netip.Addr // peers with no route: unreachable until one appears
}

// ReadUnderlay finds the underlay of the peers: the link dev when given,
// else the link (or the route's own mtu) each peer's route goes by, taking
// the smallest MTU of them.
//
//	ip link show DEV; ip route get PEER
func ReadUnderlay(dev string, peers []netip.Addr) (Underlay, error) {
	var u Underlay
	if dev != "" {
		l, err := Link(dev)
		if err != nil {
			return u, fmt.Errorf("underlay link: %w", err)
		}
		u.MTU, u.DevIndex = l.Attrs().MTU, l.Attrs().Index
	}
	for _, p := range peers {
		routes, err := nlh.RouteGet(p.AsSlice())
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || err == nil && len(routes) == 0 {
			u.Unrouted = append(u.Unrouted, p)
			continue
		}
		if err != nil {
			return u, fmt.Errorf("route to peer %s: %w", p, err)
		}
		if src, ok := netip.AddrFromSlice(routes[0].Src); ok && !u.Source.IsValid() {
			u.Source = src.Unmap()
		}
		if dev != "" {
			continue
		}
		mtu := routes[0].MTU
		if mtu == 0 {
			l, err := nlh.LinkByIndex(routes[0].LinkIndex)
			if err != nil {
				return u, fmt.Errorf("route to peer %s: link %d: %w", p, routes[0].LinkIndex, err)
			}
			mtu = l.Attrs().MTU
		}
		if u.MTU == 0 || mtu < u.MTU {
			u.MTU = mtu
		}
	}
	return u, nil
}

// SetMAC sets a link's Ethernet address.
//
//	ip link set NAME address MAC
func SetMAC(l netlink.Link, mac net.HardwareAddr) error {
	if err := nlh.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("set %s address %s: %w", l.Attrs().Name, mac, err)
	}
	l.Attrs().HardwareAddr = mac
	return nil
}
