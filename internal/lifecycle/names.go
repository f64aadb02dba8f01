package lifecycle

import (
	"errors"
	"net/netip"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/resolved"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Guest names on the host: a network's first up tells systemd-resolved, if
// the host runs it, to send queries under the network's domain to the
// gateway, on the bridge (docs/names.md). Only the first up asks: a warm up
// links no D-Bus, and a host without resolved pays the question once per
// network. The teardown reverts it (resolved forgets a deleted link anyway).

// resolvesNames reports whether n's gateway answers names for the host: a
// network with kvmnet's DNS forwarder on its gateway.
func resolvesNames(n config.Net) bool {
	return (n.Mode == config.NAT || n.Mode == config.HostOnly || n.Mode == config.RoutedMode) && n.DNS && n.Gateway.IsValid()
}

// registerNames is the step; ErrAbsent (no resolved) does nothing.
func (u *upCall) registerNames() (outcome, error) {
	servers := []netip.Addr{u.n.Gateway.Addr()}
	if u.n.Gateway6.IsValid() {
		servers = append(servers, u.n.Gateway6.Addr())
	}
	err := resolved.Register(u.br.Index, servers, u.n.Domain)
	if errors.Is(err, resolved.ErrAbsent) {
		return unchanged, nil
	}
	if err != nil {
		return unchanged, err
	}
	u.rec.Resolved = true
	return changed, nil
}

func (u *upCall) unregisterNames() error {
	if !u.rec.Resolved {
		return nil
	}
	u.rec.Resolved = false
	return resolved.Revert(u.br.Index)
}

// forgetNames is the teardown's part for a network registered with resolved.
func forgetNames(rec state.Network) part {
	return part{"forget " + rec.Bridge + "'s DNS in systemd-resolved", func() (bool, error) {
		return true, resolved.Revert(rec.BridgeIndex)
	}}
}
