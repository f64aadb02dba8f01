package lifecycle

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/nat"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Down takes tap off network n and, when it was the network's last VM, tears
// the network down. A tap already gone, or taken down twice, is not an error:
// QEMU runs the downscript once per tap, but an operator may too.
func Down(d state.Dir, n config.Net, tapName string) (Result, error) {
	lk, err := d.Lock(n.Name)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	rec, ok, err := d.Load(n.Name)
	if err != nil {
		return Result{}, err
	}
	if ok {
		n.Bridge = rec.Bridge
	}
	br, err := bridge.Find(n.Bridge)
	if err != nil {
		return Result{}, err
	}
	var changes []string
	if tap, err := bridge.Link(tapName); err == nil && br != nil && tap.Attrs().MasterIndex == br.Index {
		if err := bridge.Detach(tap, br); err != nil {
			return Result{}, err
		}
		changes = append(changes, fmt.Sprintf("detach %s from %s", tapName, br.Name))
	} else if err != nil && !errors.Is(err, bridge.ErrNoLink) {
		return Result{}, err
	}
	// A pinned network (`kvmnet up`) stays up without VMs until `kvmnet down`.
	if err := d.DelPort(n.Name, tapName); err != nil || !ok || rec.Pinned {
		return Result{Changes: changes}, err
	}
	last, err := lastUser(d, rec, br)
	if err != nil || !last {
		return Result{Changes: changes}, err
	}
	more, err := Teardown(d, rec)
	return Result{Changes: append(changes, more...)}, err
}

// lastUser reports whether the network has no VM left: no tap kvmnet attached
// is still a port of the bridge, and a bridge kvmnet made has no port at all
// (someone attached a port by hand: the network stays until they take it off).
// A bridge an admin made keeps its own ports, e.g. an uplink; they do not count.
func lastUser(d state.Dir, rec state.Network, br *netlink.Bridge) (bool, error) {
	if br == nil {
		return true, nil
	}
	busy, err := d.AnyPort(rec.Name, onBridge(br))
	if err != nil || busy {
		return false, err
	}
	if !rec.MadeBridge {
		return true, nil
	}
	ports, err := bridge.Ports(br)
	return len(ports) == 0, err
}

// onBridge is the liveness rule of a recorded tap: it belongs to a live VM
// while it is a port of br. A VM killed with SIGKILL takes its tap with it.
func onBridge(br *netlink.Bridge) func(tap string) bool {
	return func(tap string) bool {
		l, err := netlink.LinkByName(tap)
		return err == nil && l.Attrs().MasterIndex == br.Index
	}
}

// Teardown undoes everything the record says kvmnet did for a network, newest
// first, and forgets the network. It goes on past a failure so that one stuck
// part does not strand the rest, and returns every failure joined.
func Teardown(d state.Dir, rec state.Network) ([]string, error) {
	var changes []string
	var errs []error
	do := func(name string, f func() error) {
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		changes = append(changes, name)
	}
	// The daemon takes tens of milliseconds to exit; the rules come out meanwhile.
	stopped := make(chan error, 1)
	if rec.Services {
		go func() { stopped <- stopServices(d, rec.Name) }()
	}
	if rec.Rules {
		do("remove rules for "+rec.Name, func() error {
			fw, err := nat.New()
			if err != nil {
				return err
			}
			return fw.Remove(natNetwork(rec, rec.Services))
		})
	}
	if rec.Forwarding {
		do("release ip_forward", func() error { return releaseForwarding(d, rec.Name) })
	}
	if rec.Services {
		do("stop DHCP/DNS on "+rec.Bridge, func() error { return <-stopped })
	}
	if br, err := bridge.Find(rec.Bridge); err == nil && br != nil && br.Index == rec.BridgeIndex {
		if rec.MadeAddress && !rec.MadeBridge {
			do(fmt.Sprintf("remove %s from %s", rec.Gateway, rec.Bridge), func() error { return bridge.DelAddress(br, rec.Gateway) })
		}
		if rec.MadeBridge {
			do("delete bridge "+rec.Bridge, func() error { return bridge.Delete(rec.Bridge) })
		}
	}
	if len(errs) > 0 {
		// Keep the record, so that gc or the next down can finish the job.
		return changes, errors.Join(errs...)
	}
	return changes, d.Remove(rec.Name)
}

// natNetwork is what package nat needs to know of a network.
func natNetwork(rec state.Network, services bool) nat.Network {
	n := nat.Network{Name: rec.Name, Bridge: rec.Bridge, Services: services}
	switch config.Mode(rec.Mode) {
	case config.NAT:
		n.Mode = nat.NAT
	case config.HostOnly:
		n.Mode = nat.HostOnly
	default:
		n.Mode = nat.Isolated
	}
	if rec.Gateway.IsValid() {
		n.Subnet = rec.Gateway.Masked()
	}
	return n
}

// serves reports whether the network runs kvmnet's DHCP/DNS daemon.
func serves(n config.Net) bool { return n.Mode.Routed() && (n.DHCP || n.DNS) }
