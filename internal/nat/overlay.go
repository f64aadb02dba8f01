package nat

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Overlay is what a network's INPUT rules need of its VXLAN: the kernel's
// VXLAN socket takes its port's datagrams from any address of the underlay,
// so any host could inject frames into the network; the rules let only the
// configured peers' datagrams of the network's VNI reach it.
type Overlay struct {
	VNI   uint32       // 1 to 16777215
	Port  uint16       // the UDP port of the VXLAN link
	Peers []netip.Addr // IPv4 addresses of the other hypervisors
	// EVPN: the VTEPs come from BGP EVPN, not the file, and change while
	// the network is up. nftables lets through those of a set the resident
	// process keeps equal to zebra's (package vtepset), and Peers are its
	// first elements, the VTEPs installed at the up. iptables, which would
	// need a rule per VTEP rewritten on every change, has no rules for it.
	EVPN bool
}

// String is o as a golden file's header shows it.
func (o *Overlay) String() string {
	if o == nil {
		return "none"
	}
	if o.EVPN {
		return fmt.Sprintf("vni %d port %d evpn vteps %v", o.VNI, o.Port, o.Peers)
	}
	return fmt.Sprintf("vni %d port %d peers %v", o.VNI, o.Port, o.Peers)
}

// Validate reports why o (nil: no overlay) cannot be turned into rules, or nil.
func (o *Overlay) Validate(network string) error {
	if o == nil {
		return nil
	}
	if o.VNI == 0 || o.VNI >= 1<<24 || o.Port == 0 {
		return fmt.Errorf("network %s: vxlan id %d port %d: want a VNI from 1 to 16777215 and a port", network, o.VNI, o.Port)
	}
	for _, p := range o.Peers {
		if !p.Is4() {
			return fmt.Errorf("network %s: vxlan peer %s: want an IPv4 address", network, p)
		}
	}
	return nil
}

// vniU32 is the u32 match of a VXLAN header's VNI, as iptables-save prints
// it: past the IPv4 header (its length from IHL), 12 bytes into the UDP
// datagram (8 of UDP header, 4 of VXLAN flags), the 24 bits of the VNI.
func vniU32(vni uint32) []string {
	return []string{"-m", "u32", "--u32", "0x0>>0x16&0x3c@0xc>>0x8=0x" + strconv.FormatUint(uint64(vni), 16)}
}

// overlayRules return each peer's VXLAN datagrams of the network's VNI (on
// to the network's other rules and the host's), and drop every other host's.
// IPv4 only: the VXLAN link's socket is one, as its peers are. None for
// EVPN (see Overlay.EVPN).
func overlayRules(n Network) [][]string {
	o := n.Overlay
	if o == nil || o.EVPN || n.family6 {
		return nil
	}
	vxlan := append(port("udp", strconv.Itoa(int(o.Port))), vniU32(o.VNI)...)
	var rs [][]string
	for _, p := range o.Peers {
		rs = append(rs, rule(n, append([]string{"-s", hostAddr(p)}, vxlan...), returns...))
	}
	return append(rs, rule(n, vxlan, drop...))
}
