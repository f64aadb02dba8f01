package bridge

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Port is a VM's port as AttachPort found it, for Restore to put back.
type Port struct {
	Index  int
	Name   string
	MTU    int              // 0: AttachPort left it
	MAC    net.HardwareAddr // nil: AttachPort left it
	Master int              // 0: none
	Up     bool
}

// PortMAC is the MAC a VM's port gets: its own with the first byte fe, as
// libvirt and QEMU's bridge helper give their taps. A bridge without a MAC of
// its own (an admin's) takes its ports' lowest, so a tap whose MAC sorts
// below the host's NIC would move the host's LAN address while its VM runs;
// no vendor's MAC starts with fe, nor does the guest's own, which QEMU sets
// inside the guest and never on the tap. It returns nil when the port needs
// no new MAC: its first byte is fe already, or it is no Ethernet link.
func PortMAC(a *netlink.LinkAttrs) net.HardwareAddr {
	if len(a.HardwareAddr) != 6 || a.HardwareAddr[0] == 0xfe || a.Flags&net.FlagLoopback != 0 {
		return nil
	}
	mac := append(net.HardwareAddr(nil), a.HardwareAddr...)
	mac[0] = 0xfe
	return mac
}

// AttachPort makes a VM's port a port of br as Attach does, giving it its
// PortMAC first, all in one request: the bridge never sees the port's own
// MAC. It returns the port as it found it; when the request fails, the port
// is put back.
//
//	ip link set PORT address fe:… mtu $(BRIDGE's mtu) master BRIDGE up
func AttachPort(port netlink.Link, br *netlink.Bridge) (Port, error) {
	a := port.Attrs()
	was := Port{Index: a.Index, Name: a.Name, Master: a.MasterIndex, Up: a.Flags&net.FlagUp != 0}
	req := setLink(a.Index, unix.IFF_UP)
	mac := PortMAC(a)
	if mac != nil {
		was.MAC = append(net.HardwareAddr(nil), a.HardwareAddr...)
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, mac))
	}
	if a.MTU != br.MTU {
		was.MTU = a.MTU
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(br.MTU))))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(br.Index))))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		// The kernel applies a request's attributes one by one: a port the
		// bridge refused may have its new MTU and MAC.
		return was, errors.Join(fmt.Errorf("attach %s to %s: %w", a.Name, br.Name, err), Restore(was))
	}
	// port now says it is on br: Restore and Detach go by what was.
	a.MasterIndex, a.MTU, a.Flags = br.Index, br.MTU, a.Flags|net.FlagUp
	if mac != nil {
		a.HardwareAddr = mac
	}
	return was, nil
}

// Restore puts a port back as AttachPort found it: off the bridge (unless it
// was on it), its MTU and MAC, and down (unless it was up). A port gone since
// is not an error.
//
//	ip link set PORT nomaster [mtu MTU] [address MAC] down
func Restore(p Port) error {
	var flags uint32
	if p.Up {
		flags = unix.IFF_UP
	}
	req := setLink(p.Index, flags)
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(p.Master))))
	if p.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(p.MTU))))
	}
	if p.MAC != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, p.MAC))
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("put back %s: %w", p.Name, err)
	}
	return nil
}

// setLink begins an RTM_SETLINK request for the link with index, setting
// IFF_UP as flags says.
func setLink(index int, flags uint32) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Flags, msg.Change = flags, unix.IFF_UP
	req.AddData(msg)
	return req
}

// NoRA makes the host take no router advertisement on a bridge kvmnet made:
// its RAs come from guests, and one accepted would make a guest the host's
// IPv6 default router and give the host an address from the guest's prefix.
// A bridge whose IPv6 is off (no such setting) is left as it is.
//
//	sysctl -w net.ipv6.conf.NAME.accept_ra=0 net.ipv6.conf.NAME.autoconf=0
func NoRA(name string) error {
	for _, key := range []string{"accept_ra", "autoconf"} {
		v, ok, err := ReadConf("ipv6", name, key)
		if err != nil {
			return err
		}
		if ok && v != "0" {
			if err := WriteConf("ipv6", name, key, "0"); err != nil {
				return err
			}
		}
	}
	return nil
}
