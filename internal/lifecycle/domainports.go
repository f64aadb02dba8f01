package lifecycle

import (
	"errors"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// A libvirt domain's taps get what a VM's up gives the tap it attaches:
// the network's device group (and so its guard table), port isolation with
// isolate_guests, and the network's bandwidth. libvirt attaches them itself
// before the hook's `start`, so the hook takes the up's steps that follow an
// attach (guardSteps, attachedSteps) for each, and nothing else: only a tap
// of libvirt's (a tun/tap link) that is a port of the network's bridge, never
// an uplink or a link the XML names on another bridge. A tap that libvirt
// deletes takes its group, isolation and qdiscs with it; `release` puts back
// what a tap still there holds, and sweeps the ifbs of those gone.

// libvirtPort reports whether l is a tap on br, the only links the hook
// changes.
func libvirtPort(l netlink.Link, br *netlink.Bridge) bool {
	return br != nil && l.Type() == "tuntap" && l.Attrs().MasterIndex == br.Index
}

// guardTaps runs the post-attach steps of network n for each of taps that is
// a port of br, and returns the record they left (a shaped network's
// Shaped, the guard's generation) with the changes made. A tap whose steps
// fail has them undone, and the error ends the run: the record is then as
// the failing tap's undo left it, saved.
func guardTaps(d state.Dir, n config.Net, rec state.Network, br *netlink.Bridge, taps []string) (state.Network, []string, error) {
	var changes []string
	for _, name := range taps {
		l, err := bridge.Link(name)
		if errors.Is(err, bridge.ErrNoLink) {
			continue // gone already: the domain's end is on its way
		}
		if err != nil {
			return rec, changes, err
		}
		if !libvirtPort(l, br) {
			continue
		}
		u := &upCall{d: d, n: n, rec: rec, disk: rec, held: rec, existed: true, tap: l, br: br}
		more, err := run(append(u.guardSteps(), u.attachedSteps()...))
		changes = append(changes, more...)
		if err != nil {
			return u.rec, changes, errors.Join(err, u.save())
		}
		if err := u.save(); err != nil {
			return u.rec, changes, err
		}
		rec = u.rec
	}
	return rec, changes, nil
}

// releaseTaps takes what guardTaps gave from the domain's taps that are
// still ports of br (a start that failed after `start`, or a tap libvirt
// left), and deletes the ifbs of shaped taps that are gone.
func releaseTaps(rec state.Network, br *netlink.Bridge, taps []string) ([]string, error) {
	var changes []string
	for _, name := range taps {
		l, err := bridge.Link(name)
		if errors.Is(err, bridge.ErrNoLink) {
			continue
		}
		if err != nil {
			return changes, err
		}
		if !libvirtPort(l, br) {
			continue
		}
		if err := unguard(l, rec.Name); err != nil {
			return changes, err
		}
		if rec.Shaped {
			more, err := unshapeDown(name) // sweeps the gone taps' ifbs too
			if changes = append(changes, more...); err != nil {
				return changes, err
			}
		}
	}
	if !rec.Shaped {
		return changes, nil
	}
	gone, err := bridge.SweepShapers()
	for _, g := range gone {
		changes = append(changes, "delete "+g)
	}
	return changes, err
}
