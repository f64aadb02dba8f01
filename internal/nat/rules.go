package nat

import (
	"net/netip"
	"slices"
	"strings"
)

// Tables kvmnet writes to, in the order a batch applies them. nat goes first:
// iptables-restore commits each table on its own, and nat is the one that fails
// on kernels without nf_nat, so such a failure leaves nothing behind.
const (
	tableNAT    = "nat"
	tableFilter = "filter"
)

var tableOrder = []string{tableNAT, tableFilter}

// Chain name prefixes; with a 15-byte network name the longest name is 26 bytes,
// under iptables' limit of 28.
const (
	prefixAlw = "KVMNET-ALW-"
	prefixGrd = "KVMNET-GRD-"
	prefixFwd = "KVMNET-FWD-"
	prefixIn  = "KVMNET-IN-"
	prefixNAT = "KVMNET-NAT-"
)

// chain is one chain kvmnet owns: where it lives, which builtin chain jumps to
// it, and its rules, each the argv after `-A <chain>` spelt the way
// iptables-save prints it, so that a live rule usually compares equal as text.
type chain struct {
	table, name, parent string
	rules               [][]string
}

// ownedChains returns every chain network name may own, present or not, so that
// Remove and a mode change find them all.
func ownedChains(name string) []chain {
	return []chain{
		{table: tableNAT, name: prefixNAT + name, parent: "POSTROUTING"},
		{table: tableNAT, name: prefixPre + name, parent: "PREROUTING"},
		{table: tableNAT, name: prefixOut + name, parent: "OUTPUT"},
		{table: tableFilter, name: prefixAlw + name, parent: "FORWARD"},
		{table: tableFilter, name: prefixGrd + name, parent: "FORWARD"},
		{table: tableFilter, name: prefixFwd + name, parent: "FORWARD"},
		{table: tableFilter, name: prefixIn + name, parent: "INPUT"},
	}
}

// chains returns the chains n wants, with their rules, in batch order.
func chains(n Network) []chain {
	var cs []chain
	for _, c := range ownedChains(n.Name) {
		switch c.name {
		case prefixNAT + n.Name:
			c.rules = natRules(n)
			if n.family6 {
				c.rules = natRules6(n)
			}
		case prefixPre + n.Name, prefixOut + n.Name:
			c.rules = dnatRules(n)
		case prefixAlw + n.Name:
			c.rules = allowRules(n)
		case prefixGrd + n.Name:
			c.rules = guardRules(n)
		case prefixFwd + n.Name:
			c.rules = acceptRules(n)
		case prefixIn + n.Name:
			c.rules = inputRules(n)
			if n.family6 {
				c.rules = inputRules6(n)
			}
		}
		if len(c.rules) > 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

// comment is the match every kvmnet rule carries, so that `iptables-save | grep
// kvmnet:<name>` shows all a network owns.
func comment(n Network) []string {
	return []string{"-m", "comment", "--comment", "kvmnet:" + n.Name}
}

// rule joins matches, the comment and the target in iptables-save's order.
func rule(n Network, matches []string, target ...string) []string {
	r := append(append([]string{}, matches...), comment(n)...)
	return append(r, target...)
}

var (
	reject4 = []string{"-j", "REJECT", "--reject-with", "icmp-port-unreachable"}
	accept  = []string{"-j", "ACCEPT"}
	returns = []string{"-j", "RETURN"}
	replies = []string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}
)

// rejectOf is the REJECT target of n's family.
func rejectOf(n Network) []string {
	if n.family6 {
		return reject6
	}
	return reject4
}

// port matches a udp or tcp destination port as iptables-save spells it.
func port(proto, p string) []string { return []string{"-p", proto, "-m", proto, "--dport", p} }

// hostAddr spells an address as iptables-save does: 10.0.0.1/32, fd00::1/128.
func hostAddr(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// allowRules let the guests of the networks on the AllowFrom bridges open
// connections to n's guests, and n's guests answer them. They run before every
// network's guards, so both networks' guards are passed over for exactly that
// traffic, whichever network came up first.
func allowRules(n Network) [][]string {
	var rs [][]string
	for _, from := range n.AllowFrom {
		rs = append(rs,
			rule(n, []string{"-i", from, "-o", n.Bridge}, accept...),
			rule(n, slices.Concat([]string{"-i", n.Bridge, "-o", from}, replies), accept...))
	}
	return rs
}

// guardRules only reject or return, and every network's guards run before any
// network's accepts (FORWARD jumps to all KVMNET-GRD chains first), so traffic
// between two kvmnet networks meets the guard of one of them before an accept
// of the other, whatever order the networks came up in. Into the bridge from
// elsewhere only a NAT network's replies pass (to its own subnet); out of it only
// a NAT network's traffic from its own subnet (no spoofed sources).
func guardRules(n Network) [][]string {
	b, reject := n.Bridge, rejectOf(n)
	in, out := []string{"!", "-i", b, "-o", b}, []string{"-i", b, "!", "-o", b}
	if n.Mode != NAT {
		return [][]string{rule(n, in, reject...), rule(n, out, reject...)}
	}
	s := n.Subnet.String()
	return [][]string{
		rule(n, slices.Concat([]string{"-d", s}, in, repliesOrForwarded(n)), returns...),
		rule(n, in, reject...),
		rule(n, slices.Concat([]string{"!", "-s", s}, out), reject...),
	}
}

// acceptRules: guest-to-guest traffic crosses FORWARD too once br_netfilter is
// loaded; NAT adds routing out and the replies back in. Together with the
// guards they decide every packet to or from the bridge, so that neither a
// FORWARD ACCEPT policy nor a DROP further down has a say.
func acceptRules(n Network) [][]string {
	b := n.Bridge
	rs := [][]string{rule(n, []string{"-i", b, "-o", b}, accept...)}
	if n.Mode == NAT {
		s := n.Subnet.String()
		rs = append(rs,
			rule(n, slices.Concat([]string{"-d", s, "-o", b}, repliesOrForwarded(n)), accept...),
			rule(n, []string{"-s", s, "-i", b}, accept...))
	}
	return rs
}

// natRules is libvirt's scheme: multicast and broadcast leave unmasqueraded,
// tcp and udp get source ports from the unprivileged range, everything else
// (icmp) is masqueraded as is.
func natRules(n Network) [][]string {
	return masqueradeRules(n, "224.0.0.0/24", "255.255.255.255/32")
}

// masqueradeRules are a NAT network's masquerades, either family: the port
// forwards' first, then what leaves the subnet for a destination other than
// keep, tcp and udp from the unprivileged port range.
func masqueradeRules(n Network, keep ...string) [][]string {
	if n.Mode != NAT {
		return nil
	}
	s := n.Subnet.String()
	out := []string{"-s", s, "!", "-d", s}
	masq := []string{"-j", "MASQUERADE", "--to-ports", "1024-65535"}
	rs := forwardMasqRules(n)
	for _, d := range keep {
		rs = append(rs, rule(n, []string{"-s", s, "-d", d}, "-j", "RETURN"))
	}
	return append(rs,
		rule(n, append(out, "-p", "tcp"), masq...),
		rule(n, append(out, "-p", "udp"), masq...),
		rule(n, out, "-j", "MASQUERADE"),
	)
}

// inputRules decide what of the host a guest reaches. Isolated: nothing, and
// silently. Host-only: kvmnet's DHCP and DNS server (accepted even when INPUT
// drops by default), and whatever else the host serves on the gateway address
// (left to the host's own INPUT rules); any other host address is refused.
// NAT: the same services, and the host's other addresses count as the world.
func inputRules(n Network) [][]string {
	b, reject := n.Bridge, reject4
	if n.Mode == Isolated {
		return append([][]string{rule(n, []string{"-i", b}, "-j", "DROP")}, overlayRules(n)...)
	}
	rs := loopbackGuard(n)
	if n.Services {
		g := hostAddr(n.Gateway)
		rs = append(rs,
			rule(n, slices.Concat([]string{"-i", b}, port("udp", "67")), accept...),
			rule(n, slices.Concat([]string{"-d", g, "-i", b}, port("udp", "53")), accept...),
			rule(n, slices.Concat([]string{"-d", g, "-i", b}, port("tcp", "53")), accept...))
	}
	if n.Mode == HostOnly {
		rs = append(rs, rule(n, []string{"!", "-d", hostAddr(n.Gateway), "-i", b}, reject...))
	}
	return append(rs, overlayRules(n)...)
}

// jump is the rule in c.parent that sends traffic into c.
func jump(n Network, c chain) []string {
	return rule(n, nil, "-j", c.name)
}

// Rules returns n's rules in iptables-restore syntax, as Ensure makes them in
// a namespace with no kvmnet rules: `iptables-restore --noflush` of it there
// equals a cold Ensure. n must be valid (Network.Validate).
func Rules(n Network) string {
	return planEnsure(ruleset{}, n).String()
}

// line renders one iptables-restore command, e.g. `-A KVMNET-FWD-x -i br0 ...`.
func line(cmd, chain string, args []string) string {
	return cmd + " " + chain + " " + quoteArgs(args)
}

// quoteArgs joins args as iptables-save does: the values of --comment and
// --u32 are always in double quotes, and anything else that would not
// survive word splitting is too.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if (i > 0 && (args[i-1] == "--comment" || args[i-1] == "--u32")) || a == "" || strings.ContainsAny(a, " \t\"\\'") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
