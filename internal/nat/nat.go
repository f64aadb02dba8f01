// Package nat is kvmnet's iptables rule engine: it gives each network its own
// chains (KVMNET-ALW-<name>, KVMNET-GRD-<name> and KVMNET-FWD-<name> in FORWARD, KVMNET-IN-<name>,
// KVMNET-NAT-<name>), hooks them in with one jump each at the top of FORWARD,
// INPUT and nat POSTROUTING, and removes exactly those when the network goes
// away. In FORWARD every network's guard chain comes before any network's accept
// chain, so that no network's accepts can let in what another's guards refuse. Every rule it makes carries
// the comment "kvmnet:<name>". It never flushes or deletes a chain it does not
// own, never changes a policy and never touches another program's rule.
//
// Why batches: one exec of iptables costs ~3 ms, and a cold network needs ~15
// rules, so rule-by-rule (`iptables -C` then `iptables -A`, as go-iptables
// does) would cost ~90 ms. Instead Ensure reads everything with one
// `iptables-save` and applies whatever is missing with at most one
// `iptables-restore --noflush`, which the kernel commits atomically per table:
// a failure leaves that table as it was instead of half-made. Off the hot path,
// and in the tests, github.com/coreos/go-iptables answers one-rule questions.
package nat

import (
	"fmt"
	"net/netip"
	"regexp"
	"sync"
)

// Mode is how a network reaches the world.
type Mode int

const (
	// Isolated: guests reach each other only, not even the host.
	Isolated Mode = iota
	// HostOnly: guests reach each other and the host's gateway address, nothing
	// is routed in or out.
	HostOnly
	// NAT: as HostOnly, and guests reach the world (the host's other addresses
	// included) through the host, masqueraded.
	NAT
)

// String returns the mode as kvmnet's configuration spells it.
func (m Mode) String() string {
	switch m {
	case Isolated:
		return "isolated"
	case HostOnly:
		return "hostonly"
	case NAT:
		return "nat"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Network is what the rule engine needs to know of one kvmnet network.
type Network struct {
	Name   string       // network name, [a-z0-9][a-z0-9_-]{0,14}
	Bridge string       // bridge device, e.g. "br0"
	Mode   Mode         // Isolated, HostOnly or NAT
	Subnet netip.Prefix // masked IPv4 prefix, e.g. 192.168.100.0/24; needed for NAT only
	// Gateway is the host's address on the bridge, e.g. 192.168.100.1; needed
	// for HostOnly and NAT, whose guests reach the host there.
	Gateway netip.Addr
	// AllowFrom names the bridges of other networks whose guests may open
	// connections to this network's guests (and get the replies); traffic
	// between networks is refused otherwise.
	AllowFrom []string
	// Forwards are port forwards into the guests; NAT only.
	Forwards []PortForward
	// Services means kvmnet serves DHCP and DNS on the bridge, so INPUT must
	// accept udp 67 and udp+tcp 53 arriving on it.
	Services bool
	// Subnet6 and Gateway6 are the network's IPv6 prefix (fd00::/64) and the
	// host's address in it; when set (hostonly, nat), the network gets the
	// same rules in ip6tables.
	Subnet6  netip.Prefix
	Gateway6 netip.Addr
	// Overlay is the network's VXLAN, nil when it has none: only its
	// peers' datagrams reach its port (overlay.go).
	Overlay *Overlay

	family6 bool // this value describes the ip6tables rules (see ipv6)
}

// The patterns compile on first use, not at init: every helper run links
// this package, and most runs (a warm up) never validate a network.
var (
	nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,14}$`) })
	// ifnameRE is stricter than the kernel: the bridge name goes into an
	// iptables-restore batch, so it must not hold spaces, quotes or a newline,
	// must not start with '-' (an option) and must not end with '+' (which
	// iptables reads as a wildcard).
	ifnameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$`) })
)

// CheckName reports why name cannot name a network's chains and comments,
// or nil. Both backends ask it, so that they take the same names.
func CheckName(name string) error {
	if !nameRE().MatchString(name) {
		return fmt.Errorf("network name %q: want [a-z0-9][a-z0-9_-]{0,14}", name)
	}
	return nil
}

// IfnameOK reports whether name can stand in a rule of either backend as an
// interface (see ifnameRE).
func IfnameOK(name string) bool { return ifnameRE().MatchString(name) }

// Validate reports why n cannot be turned into rules, or nil.
func (n Network) Validate() error {
	if err := CheckName(n.Name); err != nil {
		return err
	}
	if !ifnameRE().MatchString(n.Bridge) {
		return fmt.Errorf("network %s: bridge name %q: want 1-15 of [A-Za-z0-9_.-], not starting with '-'", n.Name, n.Bridge)
	}
	for _, from := range n.AllowFrom {
		if !ifnameRE().MatchString(from) || from == n.Bridge {
			return fmt.Errorf("network %s: allow from bridge %q: want another bridge, 1-15 of [A-Za-z0-9_.-], not starting with '-'", n.Name, from)
		}
	}
	if err := n.validate6(); err != nil {
		return err
	}
	if err := n.Overlay.Validate(n.Name); err != nil {
		return err
	}
	if len(n.Forwards) > 0 && n.Mode != NAT {
		return fmt.Errorf("network %s: port forwards need mode nat, not %s", n.Name, n.Mode)
	}
	switch n.Mode {
	case Isolated:
		return nil
	case HostOnly, NAT:
	default:
		return fmt.Errorf("network %s: unknown mode %d", n.Name, int(n.Mode))
	}
	if !n.Gateway.Is4() {
		return fmt.Errorf("network %s: %s needs an IPv4 gateway address, have %q", n.Name, n.Mode, n.Gateway)
	}
	if n.Mode == HostOnly {
		return nil
	}
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
		return fmt.Errorf("network %s: nat needs an IPv4 subnet, have %q", n.Name, n.Subnet)
	}
	if n.Subnet != n.Subnet.Masked() {
		return fmt.Errorf("network %s: subnet %s has host bits set (want %s)", n.Name, n.Subnet, n.Subnet.Masked())
	}
	if !n.Subnet.Contains(n.Gateway) {
		return fmt.Errorf("network %s: gateway %s is outside subnet %s", n.Name, n.Gateway, n.Subnet)
	}
	for _, f := range n.Forwards {
		s := n.Subnet
		if f.Guest.Is6() {
			s = n.Subnet6
		}
		if err := f.Validate(s); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	return nil
}
