package firewall

import (
	"errors"
	"fmt"

	"github.com/google/nftables"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// iptables is the iptables runner: package nat, adapted.
type iptables struct{ fw *nat.Firewall }

func newIptables() (Firewall, error) {
	fw, err := nat.New()
	if errors.Is(err, nat.ErrNoIptables) {
		return nil, fmt.Errorf("%w; or set firewall = \"nftables\"", err)
	}
	if err != nil {
		return nil, err
	}
	return iptables{fw}, nil
}

func (iptables) Backend() Backend { return IPTables }

// Ensure makes the iptables rules, then the guard table, which is nf_tables
// whatever the backend (guard.go): iptables has no bridge family of its
// own but ebtables, which kvmnet does not use.
func (f iptables) Ensure(n Network) (Result, error) {
	if err := n.Validate(); err != nil {
		return Result{}, err
	}
	// The guard table first: the generation EnsureGen records after its own
	// commit then covers it.
	g, err := EnsureGuard(n)
	if err != nil {
		return g, err
	}
	r, err := f.fw.EnsureGen(natNetwork(n))
	return Result{Changed: r.Changed || g.Changed, Gen: r.Gen, GenOK: r.GenOK, GuardNew: g.GuardNew}, err
}

func (f iptables) Remove(n Network) error {
	return errors.Join(f.fw.Remove(natNetwork(n)), RemoveGuard(n.Name))
}

func (f iptables) Check(n Network) ([]string, error) {
	missing, err := f.fw.Check(natNetwork(n))
	if err != nil {
		return nil, err
	}
	c, err := nftables.New()
	if err != nil {
		return missing, fmt.Errorf("nftables: %w", err)
	}
	guard, err := checkGuard(&reader{c: c}, n)
	return append(missing, guard...), err
}

func (f iptables) Unchanged(gen uint32) bool { return f.fw.Unchanged(gen) }

func (f iptables) Forward(n Network) (Forward, error) {
	fw, err := f.fw.Forward(natNetwork(n))
	jump := "KVMNET-FWD-" + n.Name
	return Forward{Policy: fw.Policy, Jump: fw.Jump, Blocker: fw.Blocker, Rule: fw.Rule,
		Kind: "jump", Ours: "jump to " + jump,
		Unhook: fmt.Sprintf("iptables -D FORWARD -m comment --comment kvmnet:%s -j %s", n.Name, jump)}, err
}

// natNetwork is n as package nat takes it.
func natNetwork(n Network) nat.Network {
	m := n.Mode
	if m != HostOnly && m != NAT && m != Routed { // an unknown mode reaches nat as the most closed one
		m = Isolated
	}
	nn := nat.Network{Name: n.Name, Bridge: n.Bridge, Mode: m, Services: n.Services, AllowFrom: n.AllowFrom, Forwards: n.Forwards, Overlay: n.Overlay, Peers: n.Peers}
	if n.Gateway.IsValid() {
		nn.Subnet, nn.Gateway = n.Gateway.Masked(), n.Gateway.Addr()
	}
	if n.Gateway6.IsValid() {
		nn.Subnet6, nn.Gateway6 = n.Gateway6.Masked(), n.Gateway6.Addr()
	}
	return nn
}
