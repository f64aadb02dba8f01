package firewall

import (
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// tableName is kvmnet's one nftables table, `inet kvmnet`: inet, so that one
// chain sees IPv4 and IPv6 alike (a guard must not let IPv6 by).
const tableName = "kvmnet"

func kvmnetTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
}

// Per-network chain name prefixes: `alw-NAME` holds what a network lets in
// from other networks (AllowFrom), `grd-NAME` its FORWARD guards, `fwd-NAME`
// its FORWARD accepts, `in-NAME` its INPUT rules and `nat-NAME` its
// masquerade. With a 15-byte name the longest is 19 bytes.
const (
	prefixAllow = "alw-"
	prefixGuard = "grd-"
	prefixFwd   = "fwd-"
	prefixIn    = "in-"
	prefixNAT   = "nat-"
)

var netPrefixes = []string{prefixAllow, prefixGuard, prefixFwd, prefixIn, prefixNAT, prefixPre, prefixOut}

// base is one of the table's base chains and the per-network chains it jumps
// to, prefix by prefix: forward jumps to every network's allowances, then to
// every network's guards, then to every network's accepts, which is what
// makes start order irrelevant: an allowance accepts exactly the pairs
// configured, and any other packet between two networks meets a guard of
// one of them before any accept.
type base struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	prio     *nftables.ChainPriority
	prefixes []string
	// lazy: made only once a network jumps to it (the forwards' chains), so
	// that a table without forwards holds no DNAT hooks.
	lazy bool
}

// bases are the table's base chains. forward and input run at priority
// filter - 1, just before iptables' own FORWARD and INPUT (iptables-nft and
// legacy both hook at 0): a reject here is final, and an accept here still
// meets theirs, which the shim (shim.go) handles.
func bases() []base {
	early := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1)
	return []base{
		{name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, prio: early, prefixes: []string{prefixAllow, prefixGuard, prefixFwd}},
		{name: "input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, prio: early, prefixes: []string{prefixIn}},
		{name: "postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, prio: nftables.ChainPriorityNATSource, prefixes: []string{prefixNAT}},
		{name: "prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, prio: nftables.ChainPriorityNATDest, prefixes: []string{prefixPre}, lazy: true},
		{name: "output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, prio: nftables.ChainPriorityNATDest, prefixes: []string{prefixOut}, lazy: true},
	}
}

func (b base) chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Table: t, Name: b.name, Type: b.typ, Hooknum: b.hook, Priority: b.prio, Policy: &accept}
}

// netChain is one per-network chain with its rules.
type netChain struct {
	name  string
	rules []*spec
}

// chainNetwork splits a per-network chain's name into prefix and network.
func chainNetwork(chain string) (prefix, network string, ok bool) {
	for _, p := range netPrefixes {
		if n, found := strings.CutPrefix(chain, p); found && n != "" {
			return p, n, true
		}
	}
	return "", "", false
}

// netChains returns the chains n wants, with their rules.
func netChains(n Network) []netChain {
	var cs []netChain
	if len(n.AllowFrom) > 0 {
		cs = append(cs, netChain{name: prefixAllow + n.Name, rules: allowRules(n, true, true)})
	}
	cs = append(cs,
		netChain{name: prefixGuard + n.Name, rules: guardRules(n)},
		netChain{name: prefixFwd + n.Name, rules: acceptRules(n, true, true)})
	if in := inputRules(n); len(in) > 0 {
		cs = append(cs, netChain{name: prefixIn + n.Name, rules: in})
	}
	if n.Mode == NAT {
		cs = append(cs, netChain{name: prefixNAT + n.Name, rules: natRules(n)})
	}
	if len(n.Forwards) > 0 {
		cs = append(cs, netChain{name: prefixPre + n.Name, rules: dnatRules(n)}, netChain{name: prefixOut + n.Name, rules: dnatRules(n)})
	}
	return cs
}

// allowRules let the guests of each bridge in AllowFrom open connections to
// n's guests, and n's guests answer them (ct: only answers). The shim has
// no conntrack match, which iptables-nft could not read back: the guards,
// before it, rejected all but answers.
func allowRules(n Network, inet, ct bool) []*spec {
	var rs []*spec
	for _, from := range n.AllowFrom {
		back := newSpec(inet).iif(n.Bridge, false).oif(from, false)
		if ct {
			back.established()
		}
		rs = append(rs, newSpec(inet).iif(from, false).oif(n.Bridge, false).accept(), back.accept())
	}
	return rs
}

// guardRules only reject or return. Into the bridge from elsewhere: nat lets
// replies to its masqueraded guests by (to its subnet only, so that all it
// lets by its accepts take), the rest is rejected. Out of the
// bridge to elsewhere: nat lets its own subnet out (anti-spoofing), the rest
// is rejected. IPv6 meets the rejects too, unless the network has an IPv6
// prefix (Gateway6): then its returns are the IPv4 ones' (nft6.go).
func guardRules(n Network) []*spec {
	b := n.Bridge
	var rs []*spec
	if n.Mode == NAT {
		rs = append(rs, newSpec(true).oif(b, false).iif(b, true).daddr(n.Subnet(), false).established().ret())
		if forwardsOf(n, false) {
			rs = append(rs, forwardedIn(n).ret())
		}
	}
	rs = append(rs, guardReturns6(n, false)...)
	rs = append(rs, newSpec(true).oif(b, false).iif(b, true).reject())
	if n.Mode == NAT {
		rs = append(rs, newSpec(true).iif(b, false).oif(b, true).saddr(n.Subnet(), false).ret())
	}
	rs = append(rs, guardReturns6(n, true)...)
	return append(rs, newSpec(true).iif(b, false).oif(b, true).reject())
}

// acceptRules only accept: guest to guest (bridged traffic crosses FORWARD
// under br_netfilter), and for nat the subnet out and its replies in (ct:
// only replies). The shim has no conntrack match, which iptables-nft could
// not read back; it needs none, as the guards, evaluated before it, already
// rejected all but replies going into the bridge.
func acceptRules(n Network, inet, ct bool) []*spec {
	b := n.Bridge
	rs := []*spec{newSpec(inet).iif(b, false).oif(b, false).accept()}
	if n.Mode != NAT {
		return rs
	}
	in := newSpec(inet).oif(b, false).daddr(n.Subnet(), false)
	if ct {
		in.established()
	}
	rs = append(rs, in.accept())
	if ct && forwardsOf(n, false) {
		rs = append(rs, forwardedIn(n).accept())
	}
	rs = append(rs, newSpec(inet).iif(b, false).saddr(n.Subnet(), false).accept())
	if inet { // an ip table cannot hold IPv6 matches; an ip6 table gets them by shimRules
		rs = append(rs, natAccepts6(n, inet, ct)...)
	}
	return rs
}

// inputRules: an isolated bridge reaches nothing of the host (drop: stay
// silent); hostonly and nat reach DHCP and the gateway's DNS; hostonly
// reaches nothing else of the host but the gateway address.
func inputRules(n Network) []*spec {
	b := n.Bridge
	if n.Mode == Isolated {
		return append([]*spec{newSpec(true).iif(b, false).drop()}, overlayRules(n)...)
	}
	gw := netip.PrefixFrom(n.Gateway.Addr(), 32)
	rs := loopbackGuard(n)
	if n.Services {
		rs = append(rs,
			newSpec(true).iif(b, false).dport(unix.IPPROTO_UDP, 67).accept(),
			newSpec(true).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_UDP, 53).accept(),
			newSpec(true).iif(b, false).daddr(gw, false).dport(unix.IPPROTO_TCP, 53).accept())
	}
	rs = append(rs, inputRules6(n)...)
	if n.Mode == HostOnly {
		rs = append(rs, newSpec(true).iif(b, false).daddr(gw, true).reject())
	}
	return append(rs, overlayRules(n)...)
}

// natRules is libvirt's scheme: multicast and broadcast leave unmasqueraded,
// tcp and udp get source ports from the unprivileged range, the rest (icmp)
// is masqueraded as is.
func natRules(n Network) []*spec {
	s := n.Subnet()
	out := func() *spec { return newSpec(true).saddr(s, false).daddr(s, true) }
	rs := append(forwardMasqRules(n),
		newSpec(true).saddr(s, false).daddr(netip.MustParsePrefix("224.0.0.0/24"), false).ret(),
		newSpec(true).saddr(s, false).daddr(netip.MustParsePrefix("255.255.255.255/32"), false).ret(),
		out().proto(unix.IPPROTO_TCP).masquerade(true),
		out().proto(unix.IPPROTO_UDP).masquerade(true),
		out().masquerade(false),
	)
	return append(rs, natRules6(n)...)
}
