package config

import "fmt"

// The guards of issue 22: per network, `guard` (on by default for nat,
// hostonly and isolated) holds each guest port to one MAC and, on nat and
// hostonly, one IPv4 source; `isolate_guests` makes guest ports isolated
// bridge ports, so that guests reach the gateway and beyond but never each
// other. A bridged network's bridge is the admin's LAN: kvmnet guards
// nothing there, and `guard` given to one is refused with the mode named,
// as every key a mode does not use (networkKeys).

// checkGuard refuses `isolate_guests` on an isolated network, whose guests
// would then reach nothing at all.
func (n *Network) checkGuard() error {
	if n.Isolate != nil && *n.Isolate && n.Mode == Isolated {
		return keyErrorf("isolate_guests", nil, "true: want false on mode isolated (its guests reach only each other, so they would reach nothing)")
	}
	return nil
}

// resolveGuard sets r's guard settings once r's mode is known (a helper may
// supply it), with the same refusal as checkGuard.
func (n *Network) resolveGuard(r *Net) error {
	if n.Isolate != nil && *n.Isolate && r.Mode == Isolated {
		return fmt.Errorf("network %s: isolate_guests: want false on mode isolated (its guests would reach nothing)", r.Name)
	}
	r.Guard = r.Mode != Bridged && (n.Guard == nil || *n.Guard)
	r.IsolateGuests = n.Isolate != nil && *n.Isolate
	return nil
}
