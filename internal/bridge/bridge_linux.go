// Package bridge makes, finds and removes Linux bridges and attaches ports to
// them, over netlink. Each function's comment names the ip(8) command it equals.
package bridge

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ErrNotBridge is returned when a link of the bridge's name exists but is of another kind.
var ErrNotBridge = errors.New("not a bridge")

// ErrNoLink is returned when a named link does not exist.
var ErrNoLink = errors.New("no such link")

// Alias marks a bridge kvmnet made (`ip link show` prints it), so that an
// operator can tell it from one an admin made; kvmnet itself goes by the
// bridge's MAC (Made), which is set in the message that makes the bridge.
const Alias = "kvmnet"

// MAC derives a stable, locally administered unicast address from a bridge's
// name. A bridge otherwise takes the lowest MAC of its ports, so its address
// (and the guests' ARP caches) would change as VMs come and go.
func MAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("kvmnet bridge " + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// Link returns the link called name, wrapping ErrNoLink when there is none.
//
//	ip link show NAME
func Link(name string) (netlink.Link, error) {
	l, err := nlh.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("%s: %w", name, ErrNoLink)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return l, nil
}

// IsTap reports whether l is a tun/tap device, as QEMU and libvirt make a VM's port.
func IsTap(l netlink.Link) bool {
	_, ok := l.(*netlink.Tuntap)
	return ok
}

// Made reports whether br carries the MAC Create gives a bridge of its name,
// which the netlink message that makes the bridge sets (the kernel applies
// no alias given at creation, so the alias, set after, cannot tell).
func Made(br *netlink.Bridge) bool {
	return bytes.Equal(br.Attrs().HardwareAddr, MAC(br.Attrs().Name))
}

// Find returns the bridge called name, or nil when no link has that name.
// A link of that name that is not a bridge is an error wrapping ErrNotBridge.
func Find(name string) (*netlink.Bridge, error) {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%s is a %s link: %w", name, l.Type(), ErrNotBridge)
	}
	return br, nil
}

// Create makes a bridge with kvmnet's settings and brings it up: a stable MAC,
// STP off and forward delay 0 (a guest's first DHCP request is not lost to a
// listening port), mtu when not zero, no router advertisement taken
// (NoRA) and a link-local address its MAC gives (deriveLinkLocal) before it
// has a port.
//
//	ip link add NAME address MAC [mtu MTU] up type bridge stp_state 0 forward_delay 0
//	sysctl -w net.ipv6.conf.NAME.accept_ra=0 net.ipv6.conf.NAME.autoconf=0
//	sysctl -w net.ipv6.conf.NAME.addr_gen_mode=0
//	ip link set NAME alias kvmnet
func Create(name string, mtu int) (*netlink.Bridge, error) {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, MAC(name)))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return nil, fmt.Errorf("create bridge %s: %w", name, err)
	}
	br, err := Find(name)
	if err == nil && br == nil {
		err = fmt.Errorf("bridge %s: %w after creating it", name, ErrNoLink)
	}
	if err != nil {
		return nil, err
	}
	if err := NoRA(name); err != nil {
		return br, err
	}
	if err := deriveLinkLocal(name); err != nil {
		return br, err
	}
	if err := nlh.LinkSetAlias(br, Alias); err != nil {
		return br, fmt.Errorf("set alias of %s: %w", name, err)
	}
	br.Attrs().Alias = Alias
	return br, nil
}

// Delete removes the bridge; its ports fall off it. A bridge already gone is not an error.
//
//	ip link del NAME
func Delete(name string) error {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := linkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// Up brings a link up.
//
//	ip link set NAME up
func Up(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := nlh.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// Attach makes port a port of br: it takes the bridge's MTU first (a port with
// a smaller MTU would lower the bridge's for every guest), then joins it and
// comes up. A port the bridge refuses gets its MTU back.
//
//	ip link set PORT mtu $(BRIDGE's mtu) master BRIDGE up
func Attach(port netlink.Link, br *netlink.Bridge) error {
	a := port.Attrs()
	if a.MTU != br.MTU {
		if err := nlh.LinkSetMTU(port, br.MTU); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", a.Name, br.MTU, err)
		}
	}
	if a.MasterIndex != br.Index {
		if err := nlh.LinkSetMasterByIndex(port, br.Index); err != nil {
			if a.MTU != br.MTU { // a port the bridge refuses keeps its own MTU
				_ = nlh.LinkSetMTU(port, a.MTU)
			}
			return fmt.Errorf("attach %s to %s: %w", a.Name, br.Name, err)
		}
		// port now says it is on br: Detach, an up's undo, goes by it.
		a.MasterIndex = br.Index
	}
	a.MTU = br.MTU
	return Up(port)
}

// Detach takes port off br, if it is still on it.
//
//	ip link set PORT nomaster
func Detach(port netlink.Link, br *netlink.Bridge) error {
	if port.Attrs().MasterIndex != br.Index {
		return nil
	}
	if err := nlh.LinkSetNoMaster(port); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("detach %s from %s: %w", port.Attrs().Name, br.Name, err)
	}
	return nil
}

// SetMTU sets a link's MTU. Set on a bridge, it also stops the kernel from
// lowering the bridge's MTU to that of its smallest port.
//
//	ip link set NAME mtu MTU
func SetMTU(l netlink.Link, mtu int) error {
	if err := nlh.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set %s mtu %d: %w", l.Attrs().Name, mtu, err)
	}
	l.Attrs().MTU = mtu
	return nil
}

// Ports lists the bridge's ports. It dumps every link of the namespace, so
// the helpers call it only on a network's last down, never per VM.
//
//	ip link show master BRIDGE
func Ports(br *netlink.Bridge) ([]netlink.Link, error) {
	all, err := nlh.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var ports []netlink.Link
	for _, l := range all {
		if l.Attrs().MasterIndex == br.Index {
			ports = append(ports, l)
		}
	}
	return ports, nil
}

// HasAddress reports whether the link holds gw (address and prefix length).
//
//	ip -4 addr show dev NAME   (ip -6 for an IPv6 gw)
func HasAddress(l netlink.Link, gw netip.Prefix) (bool, error) {
	addrs, err := nlh.AddrList(l, family(gw))
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && p == gw {
			return true, nil
		}
	}
	return false, nil
}

// Addresses lists the link's IPv4 addresses and its IPv6 addresses other
// than link-local ones (which every link that is up has).
//
//	ip addr show dev NAME scope global
func Addresses(l netlink.Link) ([]netip.Prefix, error) {
	addrs, err := nlh.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out, nil
}

// Name returns the name of the link with the given index, or "link N" when
// there is none.
func Name(index int) string { return linkName(index) }

// AddAddress gives the link gw. An IPv6 address skips duplicate address
// detection, so that it is usable at once (the prefix is the network's own).
//
//	ip addr add GW dev NAME [nodad]
func AddAddress(l netlink.Link, gw netip.Prefix) error {
	if err := nlh.AddrAdd(l, toAddr(gw)); err != nil {
		return fmt.Errorf("add %s to %s: %w", gw, l.Attrs().Name, err)
	}
	return nil
}

// DelAddress removes gw from the link; an address already gone is not an error.
//
//	ip addr del GW dev NAME
func DelAddress(l netlink.Link, gw netip.Prefix) error {
	err := nlh.AddrDel(l, toAddr(gw))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove %s from %s: %w", gw, l.Attrs().Name, err)
	}
	return nil
}

// ErrOverlap is returned when a subnet would clash with one the host already uses.
var ErrOverlap = errors.New("overlaps")

// CheckOverlap refuses subnet when any other link holds an address in it or a
// route (other than a default route) overlaps it: giving the bridge that subnet
// would steal traffic from, or lose it to, the interface named in the error.
//
// For IPv6, link-local addresses and routes (fe80::/10) and multicast routes
// are every link's and do not count.
//
//	ip -4 addr; ip -4 route   (ip -6 for an IPv6 subnet)
func CheckOverlap(subnet netip.Prefix, bridgeIndex int) error {
	addrs, err := nlh.AddrList(nil, family(subnet))
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && a.LinkIndex != bridgeIndex && p.Overlaps(subnet) && !linkScoped(p) {
			return fmt.Errorf("subnet %s %w %s on %s", subnet, ErrOverlap, p, linkName(a.LinkIndex))
		}
	}
	routes, err := nlh.RouteList(nil, family(subnet))
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		p, ok := prefixOf(r.Dst)
		if ok && p.Bits() > 0 && r.LinkIndex != bridgeIndex && p.Overlaps(subnet) && !linkScoped(p) {
			return fmt.Errorf("subnet %s %w route %s via %s", subnet, ErrOverlap, p, linkName(r.LinkIndex))
		}
	}
	return nil
}

func linkName(index int) string {
	if l, err := nlh.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("link %d", index)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func toAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func family(p netip.Prefix) int {
	if p.Addr().Is6() {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// linkScoped: an IPv6 prefix every link has (link-local, multicast).
func linkScoped(p netip.Prefix) bool {
	a := p.Masked().Addr()
	return a.Is6() && (a.IsLinkLocalUnicast() || a.IsMulticast())
}
