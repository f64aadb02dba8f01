package firewall

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/portguard"
)

// brule is one rule of a guard table (family bridge), built as spec is for
// `inet kvmnet`: its expressions and the words `nft` prints for it.
type brule struct {
	words []string
	exprs []expr.Any
}

func br() *brule { return &brule{} }

func (r *brule) text() string { return strings.Join(r.words, " ") }

func (r *brule) add(words string, es ...expr.Any) *brule {
	r.words = append(r.words, words)
	r.exprs = append(r.exprs, es...)
	return r
}

// Registers: a single field goes to NFT_REG32_00, as does the first field
// of a concatenation, the next ones after it, each rounded to 32 bits.
const reg0 = unix.NFT_REG32_00

// dumped is a 32-bit register as the kernel lists it: one that begins a
// 128-bit register by the latter's number, so that a rule read back
// compares equal to the one written.
func dumped(reg uint32) uint32 {
	if (reg-reg0)%4 == 0 {
		return unix.NFT_REG_1 + (reg-reg0)/4
	}
	return reg
}

// field is a packet field or meta key as a lookup or a dynset takes it.
type field struct {
	word string
	size uint32 // bytes
	load func(reg uint32) expr.Any
}

func payload(base expr.PayloadBase, off, n uint32) func(uint32) expr.Any {
	return func(reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
	}
}

var (
	fIIF      = field{"meta iif", 4, func(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyIIF, Register: reg} }}
	fEtherSrc = field{"ether saddr", 6, payload(expr.PayloadBaseLLHeader, 6, 6)}
	fIPSrc    = field{"ip saddr", 4, payload(expr.PayloadBaseNetworkHeader, 12, 4)}
	fIPDst    = field{"ip daddr", 4, payload(expr.PayloadBaseNetworkHeader, 16, 4)}
	fARPSha   = field{"arp saddr ether", 6, payload(expr.PayloadBaseNetworkHeader, 8, 6)}
	fARPSpa   = field{"arp saddr ip", 4, payload(expr.PayloadBaseNetworkHeader, 14, 4)}
)

// loads puts fields into consecutive registers from reg0, as nft does for
// a concatenation `a . b`.
func loads(fs []field) ([]expr.Any, string) {
	var es []expr.Any
	var words []string
	reg := uint32(reg0)
	for _, f := range fs {
		es = append(es, f.load(dumped(reg)))
		reg += (f.size + 3) / 4
		words = append(words, f.word)
	}
	return es, strings.Join(words, " . ")
}

// cmp matches field f against v: `f [!=] V`.
func (r *brule) cmp(f field, v []byte, neg bool, text string) *brule {
	op, not := cmpOp(neg)
	return r.add(f.word+" "+not+text, f.load(unix.NFT_REG_1), &expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: v})
}

// prefix matches an IPv4 or IPv6 field against p: `f [!=] P`.
func (r *brule) prefix(f field, p netip.Prefix, neg bool) *brule {
	p = p.Masked()
	a := p.Addr().AsSlice()
	mask := make([]byte, len(a))
	for i := range mask {
		mask[i] = byte(0xff << (8 - min(max(p.Bits()-8*i, 0), 8)))
	}
	text := p.String()
	if p.IsSingleIP() {
		text = p.Addr().String()
		op, not := cmpOp(neg)
		return r.add(f.word+" "+not+text, f.load(unix.NFT_REG_1), &expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: a})
	}
	op, not := cmpOp(neg)
	return r.add(f.word+" "+not+text, f.load(unix.NFT_REG_1),
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: uint32(len(a)), Mask: mask, Xor: make([]byte, len(a))},
		&expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: a})
}

// Ether types as nft names them.
var etherNames = map[uint16]string{unix.ETH_P_IP: "ip", unix.ETH_P_IPV6: "ip6", unix.ETH_P_ARP: "arp", unix.ETH_P_8021Q: "8021q", unix.ETH_P_8021AD: "8021ad"}

// etherType matches `ether type T`.
func (r *brule) etherType(t uint16) *brule {
	f := field{"ether type", 2, payload(expr.PayloadBaseLLHeader, 12, 2)}
	return r.cmp(f, binary.BigEndian.AppendUint16(nil, t), false, etherNames[t])
}

// iifgroup matches `meta iifgroup G`: the ports kvmnet attached to the
// network's bridge (portguard.Group).
func (r *brule) iifgroup(g uint32) *brule {
	return r.add("meta iifgroup "+strconv.FormatUint(uint64(g), 10),
		&expr.Meta{Key: expr.MetaKeyIIFGROUP, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binary.NativeEndian.AppendUint32(nil, g)})
}

// l4 matches `meta l4proto P` and then the transport header's byte or
// port at off: `icmp type 5`, `udp sport 67`.
func (r *brule) l4(proto byte, words string, off uint32, v []byte) *brule {
	return r.add(words,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{proto}},
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: uint32(len(v))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: v})
}

// icmp6 matches `icmpv6 type T`.
func (r *brule) icmp6(typ byte) *brule {
	return r.l4(unix.IPPROTO_ICMPV6, "icmpv6 type "+icmp6Names[typ], 0, []byte{typ})
}

func port16(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// in matches `FIELDS [!=] @SET`.
func (r *brule) in(set string, neg bool, fs ...field) *brule {
	es, words := loads(fs)
	_, not := cmpOp(neg)
	return r.add(words+" "+not+"@"+set, append(es, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set, Invert: neg})...)
}

// learn is `add @SET { FIELDS }`: the packet path records what it saw.
func (r *brule) learn(set string, fs ...field) *brule {
	es, words := loads(fs)
	return r.add("add @"+set+" { "+words+" }", append(es, &expr.Dynset{SrcRegKey: unix.NFT_REG_1, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD})...)
}

func (r *brule) counted() *brule { return r.add("counter", &expr.Counter{}) }

func (r *brule) drop() *brule { return r.counted().add("drop", &expr.Verdict{Kind: expr.VerdictDrop}) }
func (r *brule) ret() *brule  { return r.add("return", &expr.Verdict{Kind: expr.VerdictReturn}) }

func (r *brule) jump(chain string) *brule {
	return r.add("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

// Chains of a guard table.
const (
	gPre   = "prerouting" // base: frames entering a bridge by a port in the network's group
	gGuest = "guests"     // what no guest may send, guard or not
	gMAC   = "mac"        // one source MAC per port
	gARP   = "arp"        // ARP: the port's MAC and address
	gIP    = "ip"         // IPv4: the port's address
	gIP6   = "ip6"        // IPv6: link-local or the network's prefix
)

// ICMP and ICMPv6 types the guests chain drops.
const (
	icmpRedirect  = 5
	icmp6Redirect = 137
)

// guardChain is one chain of a guard table with its rules.
type guardChain struct {
	name  string
	rules []*brule
}

// guardChains are the chains n's guard table wants, callees before callers
// (a jump's target must exist when the jump is added).
func guardChains(n Network) []guardChain {
	var cs []guardChain
	g := n.Guard
	routed := n.Mode != Isolated
	if g.On {
		cs = append(cs, guardChain{gMAC, macRules()})
		if routed {
			cs = append(cs, guardChain{gARP, arpRules(n)}, guardChain{gIP, ipRules(n)}, guardChain{gIP6, ip6Rules(n)})
		}
	}
	cs = append(cs, guardChain{gGuest, guestRules(n)})
	pre := br().iifgroup(portguard.Group(n.Name)).jump(gGuest)
	return append(cs, guardChain{gPre, []*brule{pre}})
}

// guestRules: whatever the guard says, no guest's router advertisement,
// redirect or DHCP server answer reaches the host or another guest, nor any
// VLAN-tagged frame (which would pass these matches by unread).
func guestRules(n Network) []*brule {
	rs := []*brule{
		br().etherType(unix.ETH_P_8021Q).drop(),
		br().etherType(unix.ETH_P_8021AD).drop(),
		br().etherType(unix.ETH_P_IPV6).l4(unix.IPPROTO_ICMPV6, "icmpv6 type nd-router-advert", 0, []byte{icmp6RA}).drop(),
		br().etherType(unix.ETH_P_IPV6).l4(unix.IPPROTO_ICMPV6, "icmpv6 type nd-redirect", 0, []byte{icmp6Redirect}).drop(),
		br().etherType(unix.ETH_P_IP).l4(unix.IPPROTO_ICMP, "icmp type redirect", 0, []byte{icmpRedirect}).drop(),
	}
	rs = append(rs, dhcpServerRules(n)...)
	if !n.Guard.On {
		return rs
	}
	rs = append(rs, br().jump(gMAC))
	if n.Mode != Isolated {
		rs = append(rs,
			br().etherType(unix.ETH_P_ARP).jump(gARP),
			br().etherType(unix.ETH_P_IP).jump(gIP),
			br().etherType(unix.ETH_P_IPV6).jump(gIP6))
	}
	return rs
}

// dhcpServerRules drop what a DHCP server sends: answers to clients (port
// 68, 546) and to relays (67, 547). The source port alone would also drop
// the answers of a guest's service on port 67 that a forward exposes to a
// relay beyond the host (udp 6767 -> 67 in TestForwards), so on a network
// with a subnet an IPv4 answer to a relay is dropped only when it is for
// the subnet (the gateway's own server included) or its broadcast.
func dhcpServerRules(n Network) []*brule {
	udp := func(sport, dport uint16) (string, []byte) {
		return "udp sport " + strconv.Itoa(int(sport)) + " udp dport " + strconv.Itoa(int(dport)), append(port16(sport), port16(dport)...)
	}
	toClient, toClientV := udp(67, 68)
	toRelay, toRelayV := udp(67, 67)
	toClient6, toClient6V := udp(547, 546)
	toRelay6, toRelay6V := udp(547, 547)
	rs := []*brule{br().etherType(unix.ETH_P_IP).l4(unix.IPPROTO_UDP, toClient, 0, toClientV).drop()}
	if n.Gateway.IsValid() {
		for _, p := range []netip.Prefix{n.Subnet(), netip.MustParsePrefix("255.255.255.255/32")} {
			rs = append(rs, br().etherType(unix.ETH_P_IP).prefix(fIPDst, p, false).l4(unix.IPPROTO_UDP, toRelay, 0, toRelayV).drop())
		}
	} else {
		rs = append(rs, br().etherType(unix.ETH_P_IP).l4(unix.IPPROTO_UDP, toRelay, 0, toRelayV).drop())
	}
	return append(rs,
		br().etherType(unix.ETH_P_IPV6).l4(unix.IPPROTO_UDP, toClient6, 0, toClient6V).drop(),
		br().etherType(unix.ETH_P_IPV6).l4(unix.IPPROTO_UDP, toRelay6, 0, toRelay6V).drop())
}

// macRules: a port's first unicast source MAC that no other port owns
// becomes its own; any other is dropped.
func macRules() []*brule {
	group := br().add("ether saddr & 01:00:00:00:00:00 == 01:00:00:00:00:00",
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1, Mask: []byte{1}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: []byte{0}})
	return []*brule{
		group.drop(),
		br().cmp(fEtherSrc, make([]byte, 6), false, "00:00:00:00:00:00").drop(),
		br().in(portguard.PortMAC, false, fIIF, fEtherSrc).ret(),
		br().in(portguard.MACPorts, false, fIIF).drop(),
		br().in(portguard.MACs, false, fEtherSrc).drop(),
		br().learn(portguard.MACPorts, fIIF).learn(portguard.MACs, fEtherSrc).learn(portguard.PortMAC, fIIF, fEtherSrc),
	}
}

// addrRules hold the IPv4 address in field a (an IP source, an ARP sender)
// to the port's: never the gateway's or outside the subnet; the one leased
// to the frame's MAC (or a static host's); else the one the port learned;
// else, for a port with none, the first that is no other port's and not
// leased to another MAC, which the port then owns. A leased address is
// learned too, on its first packet: else the port, owning none, could learn
// a second, free address, and once the lease's element expires (renewals
// are not told) its own would be free to a port that has none.
func addrRules(n Network, a field) []*brule {
	learn := func(r *brule) *brule {
		return r.learn(portguard.IPPorts, fIIF).learn(portguard.IPs, a).learn(portguard.PortIP, fIIF, a).ret()
	}
	return []*brule{
		br().prefix(a, netip.PrefixFrom(n.Gateway.Addr(), 32), false).drop(),
		br().prefix(a, n.Subnet(), true).drop(),
		br().in(portguard.PortIP, false, fIIF, a).ret(),
		learn(br().in(portguard.Leases, false, fEtherSrc, a)),
		br().in(portguard.IPPorts, false, fIIF).drop(),
		br().in(portguard.IPs, false, a).drop(),
		br().in(portguard.Leased, false, a).drop(),
		learn(br()),
	}
}

// arpRules: a well-formed Ethernet/IPv4 ARP packet whose sender MAC is the
// port's, and whose sender address is the port's (0.0.0.0: a probe).
func arpRules(n Network) []*brule {
	head := field{"@nh,0,48", 6, payload(expr.PayloadBaseNetworkHeader, 0, 6)}
	rs := []*brule{
		br().cmp(head, []byte{0, 1, 8, 0, 6, 4}, true, "0x000108000604").drop(),
		br().in(portguard.PortMAC, true, fIIF, fARPSha).drop(),
		br().cmp(fARPSpa, make([]byte, 4), false, "0.0.0.0").ret(),
	}
	return append(rs, addrRules(n, fARPSpa)...)
}

// ipRules: IPv4 from the port's address, or from 0.0.0.0 to DHCP.
func ipRules(n Network) []*brule {
	dhcp := br().cmp(fIPSrc, make([]byte, 4), false, "0.0.0.0").l4(unix.IPPROTO_UDP, "udp dport 67", 2, port16(67)).ret()
	return append([]*brule{dhcp}, addrRules(n, fIPSrc)...)
}

// ip6Rules: IPv6 sources only link-local, the network's prefix (not its
// gateway's address) or :: (duplicate address detection); and nothing that
// takes the host's own addresses on the bridge (host6: the IPv6 gateway,
// the bridge's link-local): no packet from one, no neighbour advertisement
// of one (which would move other guests' neighbour entry for their router
// to the sender), no duplicate address detection of one (a claim the
// host's address would lose while tentative). The ICMPv6 matches find the
// header past extension headers (a hop-by-hop router alert), as the
// kernel's `meta l4proto` does.
func ip6Rules(n Network) []*brule {
	src := field{"ip6 saddr", 16, payload(expr.PayloadBaseNetworkHeader, 8, 16)}
	target := field{"@th,64,128", 16, payload(expr.PayloadBaseTransportHeader, 8, 16)} // an NS's or NA's target address
	var rs []*brule
	if n.Gateway6.IsValid() {
		rs = append(rs, br().prefix(src, netip.PrefixFrom(n.Gateway6.Addr(), 128), false).drop())
	}
	rs = append(rs,
		br().in(portguard.Host6, false, src).drop(),
		br().icmp6(icmp6NA).in(portguard.Host6, false, target).drop(),
		br().prefix(src, netip.MustParsePrefix("::/128"), false).icmp6(icmp6NS).in(portguard.Host6, false, target).drop())
	rs = append(rs,
		br().prefix(src, netip.MustParsePrefix("::/128"), false).ret(),
		br().prefix(src, netip.MustParsePrefix("fe80::/10"), false).ret())
	if n.Gateway6.IsValid() {
		rs = append(rs, br().prefix(src, n.Subnet6(), false).ret())
	}
	return append(rs, br().drop())
}
