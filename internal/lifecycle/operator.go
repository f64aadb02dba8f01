package lifecycle

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
)

// What the operator tool (`kvmnet up/down/gc/status/doctor`) needs beyond a
// VM's up and down. Everything here takes the network's lock, as the helpers
// do, so it is safe while VMs start and stop.

// ErrBusy is returned by Release while VMs still use the network.
var ErrBusy = errors.New("in use")

// Release tears network name down with no VM, as `kvmnet down` does. It
// refuses while a VM's tap is attached unless force, which detaches them
// first. It works from the record alone, so a network since removed from the
// configuration can still be taken down; a network that is not up is no error.
func Release(d state.Dir, name string, force bool) (Result, error) {
	lk, err := d.Lock(name)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	rec, ok, err := d.Load(name)
	if err != nil || !ok {
		return Result{}, errors.Join(err, forgetUnrecorded(d, name, ok))
	}
	br, err := bridge.Find(rec.Bridge)
	if err != nil {
		return Result{}, err
	}
	last, err := lastUser(d, rec, br)
	if err != nil {
		return Result{}, err
	}
	var changes []string
	if !last {
		if !force {
			used, err := inUse(d, rec, br)
			if err != nil {
				return Result{}, err
			}
			starting, err := pendingDomains(d, name)
			if err != nil {
				return Result{}, err
			}
			used = append(used, starting...)
			return Result{}, fmt.Errorf("network %s: %w by %s (stop those VMs first, or --force to detach them)",
				name, ErrBusy, strings.Join(used, ","))
		}
		if changes, err = detachAll(d, rec, br); err != nil {
			return Result{Changes: changes}, err
		}
	}
	more, err := Teardown(d, rec)
	return Result{Changes: append(changes, more...)}, err
}

// Reclaim tears a network down when no VM uses it any more, exactly as its
// last VM's down would have: for VMs killed with SIGKILL, whose downscript
// never ran. A pinned network stays; the records of dead taps go either way.
// It reports whether the network was torn down.
func Reclaim(d state.Dir, name string) (Result, bool, error) {
	lk, err := d.Lock(name)
	if err != nil {
		return Result{}, false, err
	}
	defer lk.Unlock()
	rec, ok, err := d.Load(name)
	if err != nil || !ok {
		return Result{}, false, errors.Join(err, forgetUnrecorded(d, name, ok))
	}
	br, err := bridge.Find(rec.Bridge)
	if err != nil {
		return Result{}, false, err
	}
	last, err := lastUser(d, rec, br)
	if err != nil || !last || rec.Pinned {
		return Result{}, false, err
	}
	changes, err := Teardown(d, rec)
	return Result{Changes: changes}, true, err
}

// forgetUnrecorded removes what a helper killed while writing a network's
// first record left (the half-written record): with no record, nothing of
// the network is up. It does nothing when the record was read.
func forgetUnrecorded(d state.Dir, name string, recorded bool) error {
	if recorded {
		return nil
	}
	return d.Remove(name)
}

// inUse names what keeps a network up: the taps kvmnet attached that are
// still on the bridge and, on a bridge kvmnet made, any other port.
func inUse(d state.Dir, rec state.Network, br *netlink.Bridge) ([]string, error) {
	if rec.MadeBridge {
		ports, err := bridge.Ports(br)
		ports = vmPorts(rec, ports)
		names := make([]string, len(ports))
		for i, p := range ports {
			names[i] = p.Attrs().Name
		}
		return names, err
	}
	taps, err := d.PortNames(rec.Name)
	var live []string
	for _, tap := range taps {
		if onBridge(br)(tap) {
			live = append(live, tap)
		}
	}
	return live, err
}

// detachAll takes every tap kvmnet attached off the bridge and forgets it.
// Ports attached by hand to a bridge kvmnet made fall off when Teardown
// deletes it; those of a bridge an admin made are theirs and stay.
func detachAll(d state.Dir, rec state.Network, br *netlink.Bridge) ([]string, error) {
	taps, err := d.PortNames(rec.Name)
	if err != nil {
		return nil, err
	}
	var changes []string
	for _, tap := range taps {
		if l, err := bridge.Link(tap); err == nil && l.Attrs().MasterIndex == br.Index {
			if err := bridge.Detach(l, br); err != nil {
				return changes, err
			}
			changes = append(changes, fmt.Sprintf("detach %s from %s", tap, br.Name))
		}
		if err := d.DelPort(rec.Name, tap); err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// FirewallNetwork is what the rule engine needs to know of a recorded
// network, e.g. to Check its rules.
// forwards are its recorded port forwards (state.Dir.LoadForwards).
func FirewallNetwork(rec state.Network, forwards []state.Forward) firewall.Network {
	return fwNetwork(rec, rec.Services, forwards)
}

// ServicesConfig returns the configuration a network's DHCP/DNS daemon was
// started with (its lease file among it); ok is false when it never was.
func ServicesConfig(d state.Dir, network string) (c ctl.Config, ok bool, err error) {
	ok, err = d.ReadJSON(network+svcConf, &c)
	return c, ok, err
}
