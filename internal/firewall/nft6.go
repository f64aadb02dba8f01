package firewall

import (
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// IPv6 of a network with Gateway6, in the same chains of `inet kvmnet` as
// its IPv4 (an inet chain sees both): the guards let by only the prefix's
// own traffic out and its replies in, the accepts take them, INPUT lets
// neighbour discovery and router solicitations in (the daemon answers
// those) and drops router advertisements from guests (a guest must not
// become the host's router), and postrouting masquerades what leaves the
// prefix. The iptables backend makes the same in ip6tables (package nat).

func (s *spec) saddr6(p netip.Prefix, neg bool) *spec { return s.addr(ip6, "saddr", 8, p, neg) }
func (s *spec) daddr6(p netip.Prefix, neg bool) *spec { return s.addr(ip6, "daddr", 24, p, neg) }

// ICMPv6 types (RFC 4861) and how nft names them.
const (
	icmp6RS = 133
	icmp6RA = 134
	icmp6NS = 135
	icmp6NA = 136
)

var icmp6Names = map[byte]string{icmp6RS: "nd-router-solicit", icmp6RA: "nd-router-advert", icmp6NS: "nd-neighbor-solicit", icmp6NA: "nd-neighbor-advert"}

// icmp6Type matches `icmpv6 type NAME`.
func (s *spec) icmp6Type(t byte) *spec {
	name, ok := icmp6Names[t]
	if !ok {
		name = strconv.Itoa(int(t))
	}
	return s.add("icmpv6 type "+name,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{t}})
}

// guardReturns6 are the guards' IPv6 returns of a NAT or routed network
// with a prefix: into the bridge its replies (routed: anything to the
// prefix) (in), out of it its own prefix (out).
func guardReturns6(n Network, out bool) []*spec {
	s6, b := n.Subnet6(), n.Bridge
	if (n.Mode != NAT && n.Mode != Routed) || !s6.IsValid() {
		return nil
	}
	if out {
		return []*spec{newSpec(true).iif(b, false).oif(b, true).saddr6(s6, false).ret()}
	}
	in := newSpec(true).oif(b, false).iif(b, true).daddr6(s6, false)
	if n.Mode == Routed {
		return []*spec{in.ret()}
	}
	rs := []*spec{in.established().ret()}
	if forwardsOf(n, true) {
		rs = append(rs, forwardedIn6(n).ret())
	}
	return rs
}

// natAccepts6 are a NAT or routed network's IPv6 accepts: its prefix out,
// and in the replies (ct: only replies; the shim has none, as for IPv4) or,
// routed, anything to the prefix.
func natAccepts6(n Network, inet, ct bool) []*spec {
	s6, b := n.Subnet6(), n.Bridge
	if (n.Mode != NAT && n.Mode != Routed) || !s6.IsValid() {
		return nil
	}
	in := newSpec(inet).oif(b, false).daddr6(s6, false)
	if ct && n.Mode == NAT {
		in.established()
	}
	rs := []*spec{in.accept()}
	if ct && forwardsOf(n, true) {
		rs = append(rs, forwardedIn6(n).accept())
	}
	return append(rs, newSpec(inet).iif(b, false).saddr6(s6, false).accept())
}

// inputAccepts6 are what IPv6 needs of the host on the bridge: neighbour
// discovery, router solicitations, and DNS on the IPv6 gateway when served.
func inputAccepts6(n Network, inet bool) []*spec {
	if n.Mode == Isolated || !n.Gateway6.IsValid() {
		return nil
	}
	b, gw := n.Bridge, netip.PrefixFrom(n.Gateway6.Addr(), 128)
	rs := []*spec{
		newSpec(inet).iif(b, false).icmp6Type(icmp6RS).accept(),
		newSpec(inet).iif(b, false).icmp6Type(icmp6NS).accept(),
		newSpec(inet).iif(b, false).icmp6Type(icmp6NA).accept(),
	}
	if n.Services {
		rs = append(rs,
			newSpec(inet).iif(b, false).daddr6(gw, false).dport(unix.IPPROTO_UDP, 53).accept(),
			newSpec(inet).iif(b, false).daddr6(gw, false).dport(unix.IPPROTO_TCP, 53).accept())
	}
	return rs
}

// inputRules6: guests' router advertisements dropped, then inputAccepts6,
// then on a host-only network everything else not for the IPv6 gateway refused.
func inputRules6(n Network) []*spec {
	if n.Mode == Isolated || !n.Gateway6.IsValid() {
		return nil
	}
	b := n.Bridge
	rs := append([]*spec{newSpec(true).iif(b, false).icmp6Type(icmp6RA).drop()}, inputAccepts6(n, true)...)
	if n.Mode == HostOnly {
		rs = append(rs, newSpec(true).iif(b, false).daddr6(netip.PrefixFrom(n.Gateway6.Addr(), 128), true).reject())
	}
	return rs
}

// natRules6 masquerade what leaves the IPv6 prefix (a ULA cannot be routed
// outside), multicast excepted.
func natRules6(n Network) []*spec {
	s6 := n.Subnet6()
	if n.Mode != NAT || !s6.IsValid() {
		return nil
	}
	out := func() *spec { return newSpec(true).saddr6(s6, false).daddr6(s6, true) }
	return []*spec{
		newSpec(true).saddr6(s6, false).daddr6(netip.MustParsePrefix("ff00::/8"), false).ret(),
		out().proto(unix.IPPROTO_TCP).masquerade(true),
		out().proto(unix.IPPROTO_UDP).masquerade(true),
		out().masquerade(false),
	}
}

// shimRules are the shim rules hook h wants of n in foreign chain fc: an ip
// table takes the IPv4 ones, an ip6 table the IPv6 ones (with the
// family-free guest-to-guest and allow rules), an inet table both.
func shimRules(h hook, n Network, fc foreign) []*spec {
	switch fc.ch.Table.Family {
	case nftables.TableFamilyIPv6:
		return h.nft6(n)
	case nftables.TableFamilyINet:
		return h.nft(n, true)
	}
	return h.nft(n, false)
}
