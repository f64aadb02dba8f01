package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// A guest that sends from the bridge's link-local address, or advertises it
// as its own, becomes the other guests' IPv6 router (the daemon's router
// advertisements come from it). The guard bars the address (package
// firewall's host6), so kvmnet must know it before the kernel makes it:
// the kernel adds it only once the bridge has carrier, which is once a VM's
// port is up, after the up has returned. A bridge kvmnet makes therefore
// derives it from its MAC alone (EUI64), whatever the host's default
// (stable_privacy or random would make it unknowable beforehand).

// eui64Mode is net.ipv6.conf.NAME.addr_gen_mode's value for EUI-64 link-local
// addresses (IN6_ADDR_GEN_MODE_EUI64).
const eui64Mode = "0"

// deriveLinkLocal makes the bridge's link-local address the one its MAC
// gives (EUI64), before it has a port. A bridge whose IPv6 is off is left.
//
//	sysctl -w net.ipv6.conf.NAME.addr_gen_mode=0
func deriveLinkLocal(name string) error {
	v, ok, err := ReadConf("ipv6", name, "addr_gen_mode")
	if err != nil || !ok || v == eui64Mode {
		return err
	}
	return WriteConf("ipv6", name, "addr_gen_mode", eui64Mode)
}

// EUI64 is the link-local address the kernel gives a link of MAC mac in
// addr_gen_mode eui64 (RFC 4291 appendix A): fe80::, then the MAC with
// ff:fe in its middle and the universal/local bit flipped.
func EUI64(mac net.HardwareAddr) netip.Addr {
	if len(mac) != 6 {
		return netip.Addr{}
	}
	a := [16]byte{0: 0xfe, 1: 0x80, 11: 0xff, 12: 0xfe}
	a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// LinkLocals returns the host's link-local addresses on bridge name, those
// it has and the one its MAC gives (EUI64), which the kernel adds when the
// bridge first has carrier; for a bridge not made yet, the one Create's MAC
// gives. A bridge that changes its MAC later (a VXLAN network's) is read
// again by the up after it made it.
//
//	ip -6 addr show dev NAME scope link
func LinkLocals(name string) ([]netip.Addr, error) {
	l, err := Link(name)
	if errors.Is(err, ErrNoLink) {
		return []netip.Addr{EUI64(MAC(name))}, nil
	}
	if err != nil {
		return nil, err
	}
	var lls []netip.Addr
	if a := EUI64(l.Attrs().HardwareAddr); a.IsValid() {
		lls = append(lls, a)
	}
	addrs, err := nlh.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return lls, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		if a, ok := netip.AddrFromSlice(ad.IP); ok && a.IsLinkLocalUnicast() && a != EUI64(l.Attrs().HardwareAddr) {
			lls = append(lls, a)
		}
	}
	return lls, nil
}
