package firewall

import (
	"errors"
	"fmt"

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

func (f iptables) Ensure(n Network) (Result, error) {
	r, err := f.fw.EnsureGen(natNetwork(n))
	return Result{Changed: r.Changed, Gen: r.Gen, GenOK: r.GenOK}, err
}

func (f iptables) Remove(n Network) error { return f.fw.Remove(natNetwork(n)) }

func (f iptables) Check(n Network) ([]string, error) { return f.fw.Check(natNetwork(n)) }

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
	if m != HostOnly && m != NAT { // an unknown mode reaches nat as the most closed one
		m = Isolated
	}
	nn := nat.Network{Name: n.Name, Bridge: n.Bridge, Mode: m, Services: n.Services, AllowFrom: n.AllowFrom, Forwards: n.Forwards, Overlay: n.Overlay}
	if n.Gateway.IsValid() {
		nn.Subnet, nn.Gateway = n.Gateway.Masked(), n.Gateway.Addr()
	}
	if n.Gateway6.IsValid() {
		nn.Subnet6, nn.Gateway6 = n.Gateway6.Masked(), n.Gateway6.Addr()
	}
	return nn
}
