package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// IPv6: a network with an IPv6 gateway (address6) gets the same chains in
// ip6tables, made by ip6tables-save/-restore in the same batches, with the
// same guards-before-accepts FORWARD order and the same INPUT semantics, plus
// what IPv6 needs to work on the bridge: neighbour discovery and router
// solicitations reach the host, and router advertisements from guests do
// not (a guest must not become the host's router).

// ErrNoIPv6 means the kernel has IPv6 turned off (ipv6.disable=1), so a network cannot have address6.
var ErrNoIPv6 = errors.New("the kernel has IPv6 turned off (no /proc/sys/net/ipv6)")

// six returns the Firewall that drives ip6tables beside f's iptables, found
// in the same directories and checked the same way.
func (f *Firewall) six() (*Firewall, error) {
	if f.v6 != nil {
		return f.v6, nil
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return nil, ErrNoIPv6
	}
	g := &Firewall{family6: true}
	for _, b := range []struct {
		name string
		path *string
	}{{"ip6tables", &g.iptables}, {"ip6tables-save", &g.save}, {"ip6tables-restore", &g.restore}} {
		p, err := FindTool(f.dirs, b.name)
		if err != nil {
			return nil, fmt.Errorf("%s missing beside %s: %w", b.name, f.iptables, err)
		}
		*b.path = p
	}
	g.nft = isNFT(g.iptables)
	for _, p := range []string{g.save, g.restore} {
		if isNFT(p) != g.nft || g.nft != f.nft {
			return nil, fmt.Errorf("%s and %s drive different backends (nf_tables and legacy); run update-alternatives --config ip6tables", f.iptables, p)
		}
	}
	f.v6 = g
	return g, nil
}

// ipv6 is n as its ip6tables rules see it: the IPv6 prefix and gateway in
// place of the IPv4 ones.
func (n Network) ipv6() Network {
	n.family6 = true
	n.Subnet, n.Gateway = n.Subnet6, n.Gateway6
	return n
}

// validate6 checks the IPv6 side of n, which is optional.
func (n Network) validate6() error {
	switch {
	case !n.Gateway6.IsValid() && !n.Subnet6.IsValid():
		return nil
	case n.Mode == Isolated:
		return fmt.Errorf("network %s: isolated has no IPv6 gateway, have %s", n.Name, n.Gateway6)
	case !n.Gateway6.Is6() || n.Gateway6.Is4In6() || !n.Subnet6.IsValid() || n.Subnet6 != n.Subnet6.Masked() || !n.Subnet6.Contains(n.Gateway6):
		return fmt.Errorf("network %s: IPv6 gateway %s must be an IPv6 address inside the masked prefix %s", n.Name, n.Gateway6, n.Subnet6)
	}
	return nil
}

var (
	reject6 = []string{"-j", "REJECT", "--reject-with", "icmp6-port-unreachable"}
	drop    = []string{"-j", "DROP"}
)

// icmp6 matches an ICMPv6 type as ip6tables-save spells it.
func icmp6(typ string) []string {
	return []string{"-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", typ}
}

// ICMPv6 types (RFC 4861) the host must take from guests for IPv6 to work on
// the bridge, and the one it must not.
const (
	icmp6RS = "133" // router solicitation: the daemon answers it
	icmp6RA = "134" // router advertisement: guests are not the host's routers
	icmp6NS = "135" // neighbour solicitation
	icmp6NA = "136" // neighbour advertisement
)

// natRules6: masquerade what leaves the prefix (a ULA cannot be routed
// outside), except multicast, which never leaves the link anyway.
func natRules6(n Network) [][]string { return masqueradeRules(n, "ff00::/8") }

// inputRules6: neighbour discovery and router solicitations in, router
// advertisements from guests dropped, DNS to the gateway when served; then,
// on a host-only network, everything else for the host but the gateway
// address refused, as for IPv4.
func inputRules6(n Network) [][]string {
	b := []string{"-i", n.Bridge}
	g := netip.PrefixFrom(n.Gateway, 128).String()
	rs := [][]string{
		rule(n, slices.Concat(b, icmp6(icmp6RA)), drop...),
		rule(n, slices.Concat(b, icmp6(icmp6RS)), accept...),
		rule(n, slices.Concat(b, icmp6(icmp6NS)), accept...),
		rule(n, slices.Concat(b, icmp6(icmp6NA)), accept...),
	}
	if n.Services {
		rs = append(rs,
			rule(n, slices.Concat([]string{"-d", g}, b, port("udp", "53")), accept...),
			rule(n, slices.Concat([]string{"-d", g}, b, port("tcp", "53")), accept...))
	}
	if n.Mode == HostOnly {
		rs = append(rs, rule(n, slices.Concat([]string{"!", "-d", g}, b), reject6...))
	}
	return rs
}
