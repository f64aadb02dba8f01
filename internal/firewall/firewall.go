// Package firewall is kvmnet's rule engine: one interface, Firewall, with two
// implementations behind it. The nftables runner talks netlink to nf_tables
// directly and keeps all of kvmnet's rules in one table, `inet kvmnet`; the
// iptables runner is package nat, which drives the iptables programs. Nothing
// above this package knows which one runs: lifecycle and ops ask Choose which
// backend a network gets, record it, and hand every later call to New.
//
// Both implement the rule semantics of the session spec: per network, guards
// (which only reject or return) are evaluated before any network's accepts, so
// that a verdict never depends on the order networks came up; INPUT is
// per mode; nat masquerades as libvirt does. Every rule carries `kvmnet:NAME`.
package firewall

import (
	"fmt"
	"net/netip"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// Backend names a rule engine as kvmnet's configuration spells it.
type Backend string

const (
	// NFTables is the native nf_tables runner: no exec on its path, except
	// iptables-legacy when the host's legacy FORWARD chain would drop guests.
	NFTables Backend = "nftables"
	// IPTables is package nat: iptables-save and iptables-restore.
	IPTables Backend = "iptables"
	// Auto lets Choose pick from what the host has and uses.
	Auto Backend = "auto"
)

// ErrNoIptables means the iptables programs are missing and the iptables
// backend was asked for.
var ErrNoIptables = nat.ErrNoIptables

// Mode is how a network reaches the world; both backends share package
// nat's, so that its String is the one the configuration spells.
type Mode = nat.Mode

const (
	// Isolated: guests reach each other only, not even the host.
	Isolated = nat.Isolated
	// HostOnly: guests reach each other and the gateway address, nothing routed.
	HostOnly = nat.HostOnly
	// NAT: as HostOnly, and guests reach the world through the host, masqueraded.
	NAT = nat.NAT
	// Routed: as NAT without the masquerade; the world reaches the guests by their own addresses.
	Routed = nat.Routed
)

// Network is what the rule engine needs to know of one kvmnet network.
type Network struct {
	Name   string // network name, [a-z0-9][a-z0-9_-]{0,14}
	Bridge string // bridge device, e.g. "br0"
	Mode   Mode
	// Gateway is the host's address on the bridge with the subnet's prefix,
	// e.g. 192.168.100.1/24; needed for hostonly and nat.
	Gateway netip.Prefix
	// Forwards are port forwards into the guests; NAT only.
	Forwards []PortForward
	// Services means kvmnet serves DHCP and DNS on the bridge, so INPUT must
	// accept udp 67 and udp+tcp 53 arriving on it.
	Services bool
	// AllowFrom names the bridges of other networks whose guests may open
	// connections to this network's guests (the replies flow back); all
	// other traffic between networks is refused.
	AllowFrom []string
	// Gateway6 is the host's IPv6 address on the bridge with the guests'
	// prefix (address6), e.g. fd00:6b76:6d6e::1/64; hostonly and nat only,
	// optional. With it, the network's rules cover its IPv6 traffic too.
	Gateway6 netip.Prefix
	// Peers are the bridges of other kvmnet networks whose traffic to and
	// from this one the guards refuse outright (see nftrouted.go).
	Peers []string
	// Overlay is the network's VXLAN, nil when it has none: only its
	// peers' datagrams of its VNI reach its UDP port (overlay.go).
	Overlay *Overlay
	// Guard is what the network's guard table holds to (guard.go).
	Guard PortGuard
}

// Subnet is the guests' prefix, e.g. 192.168.100.0/24.
func (n Network) Subnet() netip.Prefix { return n.Gateway.Masked() }

// Subnet6 is the guests' IPv6 prefix, e.g. fd00:6b76:6d6e::/64; invalid when the network has none.
func (n Network) Subnet6() netip.Prefix {
	if !n.Gateway6.IsValid() {
		return netip.Prefix{}
	}
	return n.Gateway6.Masked()
}

// Validate reports why n cannot be turned into rules, or nil.
func (n Network) Validate() error {
	if err := nat.CheckName(n.Name); err != nil {
		return err
	}
	if !nat.IfnameOK(n.Bridge) {
		return fmt.Errorf("network %s: bridge name %q: want 1-15 of [A-Za-z0-9_.-], not starting with '-'", n.Name, n.Bridge)
	}
	for _, from := range append(n.AllowFrom, n.Peers...) {
		if !nat.IfnameOK(from) || from == n.Bridge {
			return fmt.Errorf("network %s: allowed or peer bridge %q: want another bridge's name", n.Name, from)
		}
	}
	switch n.Mode {
	case Isolated:
	case HostOnly, NAT, Routed:
		if !n.Gateway.IsValid() || !n.Gateway.Addr().Is4() {
			return fmt.Errorf("network %s: %s needs an IPv4 gateway address, have %q", n.Name, n.Mode, n.Gateway)
		}
	default:
		return fmt.Errorf("network %s: unknown mode %d", n.Name, int(n.Mode))
	}
	if g := n.Gateway6; g.IsValid() && (n.Mode == Isolated || !g.Addr().Is6() || g.Addr().Is4In6() || g.Addr() == g.Masked().Addr()) {
		return fmt.Errorf("network %s: IPv6 gateway %s: want a host address of an IPv6 prefix, on hostonly, nat or routed", n.Name, g)
	}
	if len(n.Forwards) > 0 && n.Mode != NAT {
		return fmt.Errorf("network %s: port forwards need mode nat, not %s", n.Name, n.Mode)
	}
	if err := n.Overlay.Validate(n.Name); err != nil {
		return err
	}
	for _, f := range n.Forwards {
		s := n.Subnet()
		if f.Guest.Is6() {
			s = n.Subnet6()
		}
		if err := f.Validate(s); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	return nil
}

// Result is what Ensure did.
type Result struct {
	// Changed reports that rules were added, rewritten or deleted.
	Changed bool
	// Gen is the nf_tables generation at which all of the network's rules
	// were present. Record it only when GenOK: as long as Unchanged(Gen)
	// holds, nothing in any table has changed and Ensure would change nothing.
	Gen   uint32
	GenOK bool
	// GuardNew reports that the network's guard table was made by this
	// call, so its learned sets are empty: no port's MAC or address is
	// there to forget.
	GuardNew bool
}

// Forward is how the host's filter FORWARD chain (iptables' `ip filter`,
// nft-backed or legacy) treats a network's forwarded and bridged traffic.
type Forward struct {
	Policy string // FORWARD's policy: ACCEPT or DROP
	// Jump is the position (0 first) of kvmnet's first rule for the network
	// in FORWARD, -1 when it has none there.
	Jump int
	// Blocker is the position of the first rule of another program that may
	// drop or reject the bridge's traffic, -1 when there is none, and Rule
	// that rule as the tool that shows it prints it.
	Blocker int
	Rule    string
	// Kind is what kvmnet's rule in FORWARD is ("jump", "accept") and Ours
	// names it, e.g. "jump to KVMNET-FWD-default".
	Kind, Ours string
	// Unhook is the command that removes kvmnet's rule from FORWARD, for a
	// doctor's fix when it sits after a blocker.
	Unhook string
}

// Firewall installs, checks and removes networks' rules. Callers serialise
// Ensure and Remove of one network (its lock file); different networks may
// run side by side.
type Firewall interface {
	// Backend names the implementation.
	Backend() Backend
	// Ensure makes the live rules contain exactly n's, changing only what is
	// missing or wrong, and says what it did.
	Ensure(n Network) (Result, error)
	// Remove deletes n's rules and nothing else; a network already gone is
	// not an error. Rules are found by n.Name, so a network whose mode
	// changed since Ensure loses them all.
	Remove(n Network) error
	// Check lists n's rules that are absent now, in the backend's own
	// syntax; nil means all are in place.
	Check(n Network) (missing []string, err error)
	// Unchanged reports whether a Result.Gen recorded after an Ensure still
	// proves the rules whole, so that a warm up may skip reading them.
	Unchanged(gen uint32) bool
	// Forward reads the host's filter FORWARD chain as it bears on n.
	Forward(n Network) (Forward, error)
}

// New returns the runner of backend b; "" means iptables, which is what a
// network recorded before kvmnet had a choice used.
func New(b Backend) (Firewall, error) {
	switch b {
	case NFTables:
		return newNFT(Host{}), nil
	case IPTables, "":
		return newIptables()
	}
	return nil, fmt.Errorf("firewall backend %q: want nftables or iptables", b)
}
