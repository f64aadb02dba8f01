package lifecycle

import (
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/nfgen"
	"github.com/kvmnet/kvmnet/internal/portguard"
)

// The guards (docs/guard.md): every network but a bridged one has a guard
// table (package firewall, installed with its rules), which applies to the
// ports in the network's device group; the up puts the VM's port in that
// group before it attaches it, and forgets what the guard learned of ports
// that are gone, so that a VM started again may take its MAC and address.

// PortGuard is what n's guard table holds to.
func PortGuard(n config.Net) firewall.PortGuard {
	g := firewall.PortGuard{On: n.Guard}
	if n.Mode.Routed() {
		for _, h := range n.Hosts {
			g.Hosts = append(g.Hosts, firewall.GuardHost{MAC: h.MAC.HardwareAddr, IP: h.IP.Addr})
		}
	}
	return g
}

// guarded reports whether n's ports go into its guard table's group.
func guarded(n config.Net) bool { return n.Mode != config.Bridged }

// guardSteps come before the attach: forget the ports that left, and put
// the VM's port in the network's group.
func (u *upCall) guardSteps() []step {
	if u.tap == nil || !guarded(u.n) {
		return nil
	}
	return []step{{name: fmt.Sprintf("guard %s on %s", u.tap.Attrs().Name, u.n.Bridge), do: u.guardPort, undo: u.unguardPort}}
}

func (u *upCall) guardPort() (outcome, error) {
	if u.n.Guard && !u.guardNew {
		// Forgetting is a transaction of set elements only: when it was
		// the only one since the rules were seen whole, they still are,
		// and the hot file this up writes need not wait for the next.
		forget := func() (bool, error) { n, err := portguard.Forget(u.n.Name, nil); return n > 0, err }
		to, ok, err := nfgen.Follow(u.rec.RulesGen, forget)
		if err != nil {
			return unchanged, err
		}
		if ok {
			u.rec.RulesGen = to
		}
	}
	g := portguard.Group(u.n.Name)
	if uint32(u.tap.Attrs().Group) == g {
		return unchanged, nil
	}
	// Noted, not reported: the group is part of the attach, which a warm
	// front logs as the attach alone, as the engine must.
	return noted, bridge.SetGroup(u.tap, g)
}

func (u *upCall) unguardPort() error { return unguard(u.tap, u.n.Name) }

// isolateSteps come after the attach: an isolated port exists only on a
// bridge.
func (u *upCall) isolateSteps() []step {
	if u.tap == nil || !u.n.IsolateGuests {
		return nil
	}
	return []step{{name: "isolate " + u.tap.Attrs().Name, do: u.isolate}}
}

func (u *upCall) isolate() (outcome, error) {
	on, err := bridge.Isolated(u.tap)
	if err != nil || on {
		return unchanged, err
	}
	return changed, bridge.SetIsolated(u.tap, true)
}

// unguard takes a detached port out of network's group, so that a tap that
// goes on to another bridge is not held to this network's guard.
func unguard(port netlink.Link, network string) error {
	if uint32(port.Attrs().Group) != portguard.Group(network) {
		return nil
	}
	return bridge.SetGroup(port, 0)
}
