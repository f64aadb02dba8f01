package firewall

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/nat"
	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// Overlay is what a network's INPUT rules need of its VXLAN (see
// nat.Overlay): the kernel's VXLAN socket takes its port's datagrams from
// any address, so the rules let only the configured peers' datagrams of the
// network's VNI through, and drop every other host's.
type Overlay = nat.Overlay

// vni matches a VXLAN header's VNI, the 24 bits 12 bytes into the UDP
// datagram (8 of UDP header, 4 of VXLAN flags), as nft prints a raw match.
//
//	@th,96,24 VNI
func (s *spec) vni(v uint32) *spec {
	b := binary.BigEndian.AppendUint32(nil, v)[1:]
	return s.add("@th,96,24 0x"+strconv.FormatUint(uint64(v), 16),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 3},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b})
}

// saddrIn matches an IPv4 source address in set.
//
//	ip saddr @SET
func (s *spec) saddrIn(set string) *spec {
	s.ipv4()
	return s.add("ip saddr @"+set,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set})
}

// overlayRules return each peer's VXLAN datagrams of n's VNI (on to the
// other networks' rules and the host's), then drop the rest of them: those
// of every other host, over IPv4 or IPv6. An EVPN network's peers are the
// elements of its VTEP set (ensureVTEPSet). Datagrams of another VNI are
// another network's to judge. They end n's INPUT chain: a return there
// skips nothing of n's own.
func overlayRules(n Network) []*spec {
	o := n.Overlay
	if o == nil {
		return nil
	}
	var rs []*spec
	if o.EVPN {
		rs = append(rs, newSpec(true).saddrIn(vtepset.Prefix+n.Name).dport(unix.IPPROTO_UDP, o.Port).vni(o.VNI).ret())
		return append(rs, newSpec(true).dport(unix.IPPROTO_UDP, o.Port).vni(o.VNI).drop())
	}
	for _, p := range o.Peers {
		rs = append(rs, newSpec(true).saddr(netip.PrefixFrom(p, 32), false).dport(unix.IPPROTO_UDP, o.Port).vni(o.VNI).ret())
	}
	return append(rs, newSpec(true).dport(unix.IPPROTO_UDP, o.Port).vni(o.VNI).drop())
}
