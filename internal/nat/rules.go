package nat

import (
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
			if n.Mode != NAT {
				continue
			}
			c.rules = natRules(n)
		case prefixFwd + n.Name:
			c.rules = forwardRules(n)
		case prefixIn + n.Name:
			if !n.Services {
				continue
			}
			c.rules = inputRules(n)
		}
		cs = append(cs, c)
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

var reject = []string{"-j", "REJECT", "--reject-with", "icmp-port-unreachable"}

// forwardRules: guest-to-guest traffic crosses FORWARD too once br_netfilter is
// loaded, so it is accepted first; NAT adds routing out and the replies back in;
// the rejects end everything else to or from the bridge, so that a FORWARD
// ACCEPT policy does not route into a host-only network.
func forwardRules(n Network) [][]string {
	b := n.Bridge
	rs := [][]string{rule(n, []string{"-i", b, "-o", b}, "-j", "ACCEPT")}
	if n.Mode == NAT {
		s := n.Subnet.String()
		rs = append(rs,
			rule(n, []string{"-d", s, "-o", b, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "ACCEPT"),
			rule(n, []string{"-s", s, "-i", b}, "-j", "ACCEPT"))
	}
	return append(rs,
		rule(n, []string{"-o", b}, reject...),
		rule(n, []string{"-i", b}, reject...))
}

// natRules is libvirt's scheme: multicast and broadcast leave unmasqueraded,
// tcp and udp get source ports from the unprivileged range, everything else
// (icmp) is masqueraded as is.
func natRules(n Network) [][]string {
	s := n.Subnet.String()
	out := []string{"-s", s, "!", "-d", s}
	masq := []string{"-j", "MASQUERADE", "--to-ports", "1024-65535"}
	return [][]string{
		rule(n, []string{"-s", s, "-d", "224.0.0.0/24"}, "-j", "RETURN"),
		rule(n, []string{"-s", s, "-d", "255.255.255.255/32"}, "-j", "RETURN"),
		rule(n, append(out, "-p", "tcp"), masq...),
		rule(n, append(out, "-p", "udp"), masq...),
		rule(n, out, "-j", "MASQUERADE"),
	}
}

// inputRules let guests reach kvmnet's DHCP and DNS server on the bridge even
// when INPUT drops by default.
func inputRules(n Network) [][]string {
	b := n.Bridge
	return [][]string{
		rule(n, []string{"-i", b, "-p", "udp", "-m", "udp", "--dport", "67"}, "-j", "ACCEPT"),
		rule(n, []string{"-i", b, "-p", "udp", "-m", "udp", "--dport", "53"}, "-j", "ACCEPT"),
		rule(n, []string{"-i", b, "-p", "tcp", "-m", "tcp", "--dport", "53"}, "-j", "ACCEPT"),
	}
}

// jump is the rule in c.parent that sends traffic into c.
func jump(n Network, c chain) []string {
	return rule(n, nil, "-j", c.name)
}

// Rules returns n's rules in iptables-restore syntax, as Ensure makes them from
// nothing: `iptables-restore --noflush` of it equals a cold Ensure (but, unlike
// Ensure, adds a second jump when run twice). n must be valid (Network.Validate).
func Rules(n Network) string {
	var b strings.Builder
	for _, t := range tableOrder {
		var decl, body []string
		for _, c := range chains(n) {
			if c.table != t {
				continue
			}
			decl = append(decl, ":"+c.name+" - [0:0]")
			for _, r := range c.rules {
				body = append(body, line("-A", c.name, r))
			}
			body = append(body, line("-I", c.parent+" 1", jump(n, c)))
		}
		if len(decl) == 0 {
			continue
		}
		b.WriteString("*" + t + "\n")
		for _, l := range append(decl, body...) {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// line renders one iptables-restore command, e.g. `-A KVMNET-FWD-x -i br0 ...`.
func line(cmd, chain string, args []string) string {
	return cmd + " " + chain + " " + quoteArgs(args)
}

// quoteArgs joins args as iptables-save does: the value of --comment is always
// in double quotes, and anything else that would not survive word splitting is too.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if (i > 0 && args[i-1] == "--comment") || a == "" || strings.ContainsAny(a, " \t\"\\'") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
