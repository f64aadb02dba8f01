package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Down takes tap off network n and, when it was the network's last VM, tears
// the network down; on a bridge kvmnet made it returns once the network stops
// serving, and a child holding the lock deletes the bridge (lastDown). Only a
// tap kvmnet recorded is detached: a port an admin
// attached is theirs. A tap already gone, or taken down twice, is not an
// error: QEMU runs the downscript once per tap, but an operator may too.
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
	ours, err := d.HasPort(n.Name, tapName)
	if err != nil {
		return Result{}, err
	}
	var changes []string
	if tap, err := bridge.Link(tapName); err == nil && ours && br != nil && tap.Attrs().MasterIndex == br.Index {
		if err := bridge.Detach(tap, br); err != nil {
			return Result{}, err
		}
		if err := unguard(tap, n.Name); err != nil {
			return Result{}, err
		}
		changes = append(changes, fmt.Sprintf("detach %s from %s", tapName, br.Name))
	} else if err != nil && !errors.Is(err, bridge.ErrNoLink) {
		return Result{}, err
	}
	if ours && (n.Shaped() || rec.Shaped) { // rec: limits the file no longer gives still come off
		more, err := unshapeDown(tapName)
		if changes = append(changes, more...); err != nil {
			return Result{Changes: changes}, err
		}
	}
	// A pinned network (`kvmnet up`) stays up without VMs until `kvmnet down`.
	if err := d.DelPort(n.Name, tapName); err != nil || !ok || rec.Pinned {
		return Result{Changes: changes}, errors.Join(err, forgetUnrecorded(d, n.Name, ok))
	}
	last, err := lastUser(d, rec, br)
	if err != nil || !last {
		return Result{Changes: changes}, err
	}
	var more []string
	if ownsBridge(rec, br) {
		more, err = lastDown(d, lk, rec)
	} else {
		more, err = Teardown(d, rec)
	}
	return Result{Changes: append(changes, more...)}, err
}

// lastUser reports whether the network has no VM left: no tap kvmnet attached
// is still a port of the bridge, no libvirt domain uses it (domainLive), and a bridge kvmnet made has no port at all
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
	if busy, err := d.AnyDomain(rec.Name, domainLive(br)); err != nil || busy {
		return false, err
	}
	if !rec.MadeBridge {
		return true, nil
	}
	ports, err := bridge.Ports(br)
	return len(vmPorts(rec, ports)) == 0, err
}

// onBridge is the liveness rule of a recorded tap: it belongs to a live VM
// while it is a port of br. A VM killed with SIGKILL takes its tap with it.
func onBridge(br *netlink.Bridge) func(tap string) bool {
	return func(tap string) bool {
		l, err := bridge.Link(tap)
		return err == nil && l.Attrs().MasterIndex == br.Index
	}
}

// Teardown undoes everything the record says kvmnet did, or was about to do
// when a helper was killed, and forgets the network. Each undo is harmless
// for a part that was never made. It goes on past a failure so that one stuck
// part does not strand the rest, and returns every failure joined.
//
// The parts are independent, and the slow ones wait on the kernel, not on
// us: deleting a bridge (~40 ms here) and deleting rules (one RCU grace
// period per table, ~12 ms each) are grace periods, the daemon takes ~20 ms to
// exit. Run side by side, a teardown costs the longest part, not the sum.
func Teardown(d state.Dir, rec state.Network) ([]string, error) {
	if err := beginTeardown(d, rec); err != nil {
		return nil, err
	}
	parts, later := teardownParts(d, rec)
	changes, err := undo(append(parts, later...))
	if err != nil {
		// Keep the record, so that gc or the next down can finish the job.
		return changes, err
	}
	return changes, d.Remove(rec.Name)
}

// beginTeardown is what every teardown does first: it forgets the network's
// hot file, so that no front takes a warm run on a network going away, and
// turns route_localnet off, if kvmnet turned it on, before the rules that
// guard it go, not beside them.
func beginTeardown(d state.Dir, rec state.Network) error {
	if err := coolDown(d, rec.Name); err != nil {
		return err
	}
	if rec.RouteLocalnet {
		if err := setRouteLocalnet(rec.Bridge, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// undo runs parts side by side and returns the names of those that changed
// the host, and every failure joined.
func undo(parts []part) ([]string, error) {
	fns := make([]func() error, len(parts))
	did := make([]bool, len(parts))
	for i, p := range parts {
		fns[i] = func() (err error) {
			did[i], err = p.do()
			return err
		}
	}
	errs := concurrently(fns)
	var changes []string
	var failed []error
	for i, p := range parts {
		switch {
		case errs[i] != nil:
			failed = append(failed, fmt.Errorf("%s: %w", p.name, errs[i]))
		case did[i]:
			changes = append(changes, p.name)
		}
	}
	return changes, errors.Join(failed...)
}

// part is one independent undo of a teardown; do reports whether it changed the host.
type part struct {
	name string
	do   func() (bool, error)
}

// teardownParts returns the undos of what the record says kvmnet did: the
// parts that stop the network serving (the daemon, forwarding, the address
// on a bridge not kvmnet's) and, apart, those that wait on the kernel or on
// another process and matter to no guest once none is on the bridge (the
// rule watcher's exit, the rules unless rulesLater says otherwise, the
// firewalld zone, the links it made), which a VM's last down leaves to a
// child (lastDown). A link's deletion waits 25-70 ms on the kernel (RCU grace
// periods, whatever the order); removing rules, one grace period (the
// socket's close waits for nf_tables to free what the transaction deleted).
func teardownParts(d state.Dir, rec state.Network) (parts, later []part) {
	later = append(watcherPart(d, rec), zonePart(rec)...)
	if rec.Services {
		parts = append(parts, part{"stop DHCP/DNS on " + rec.Bridge, func() (bool, error) {
			_, running := ServicesPID(d, rec.Name)
			if err := stopServices(d, rec.Name); err != nil || running {
				return running, err
			}
			// No daemon the pid file names: an up killed right after
			// starting one may have left it before it wrote the file.
			return false, killStrays(d, rec.Name)
		}})
	}
	if rec.Rules {
		p := part{"remove rules for " + rec.Name, func() (bool, error) {
			fw, err := firewall.New(firewall.Backend(rec.Firewall))
			if err != nil {
				return false, err
			}
			return true, fw.Remove(fwNetwork(rec, rec.Services, nil))
		}}
		if rulesLater(rec) {
			later = append(later, p)
		} else {
			parts = append(parts, p)
		}
	}
	if rec.Forwarding {
		parts = append(parts, part{"turn off ip_forward", func() (bool, error) { return releaseForwarding(d, rec.Name) }})
	}
	if rec.Forwarding6 {
		parts = append(parts, part{"turn off IPv6 forwarding", func() (bool, error) { return releaseForwarding6(d, rec.Name) }})
	}
	if rec.MadeVXLAN {
		later = append(later, part{"delete vxlan " + rec.VXLAN, func() (bool, error) { return true, deleteOverlay(rec) }})
	}
	if rec.Resolved {
		later = append(later, forgetNames(rec))
	}
	if rec.Shaped {
		later = append(later, part{"delete the ifbs of ports gone", func() (bool, error) {
			gone, err := bridge.SweepShapers() // a killed VM's shaped tap left its ifb
			return len(gone) > 0, err
		}})
	}
	br, err := bridge.Find(rec.Bridge)
	switch {
	case err != nil || br == nil:
	case ownsBridge(rec, br):
		later = append(later, part{"delete bridge " + rec.Bridge, func() (bool, error) { return true, bridge.Delete(rec.Bridge) }})
	case br.Index == rec.BridgeIndex:
		if rec.MadeAddress {
			parts = append(parts, part{fmt.Sprintf("remove %s from %s", rec.Gateway, rec.Bridge), func() (bool, error) { return true, bridge.DelAddress(br, rec.Gateway) }})
		}
		if rec.MadeAddress6 {
			parts = append(parts, part{fmt.Sprintf("remove %s from %s", rec.Gateway6, rec.Bridge), func() (bool, error) { return true, bridge.DelAddress(br, rec.Gateway6) }})
		}
		if rec.HostQuiet {
			parts = append(parts, part{"restore arp_ignore and disable_ipv6 of " + rec.Bridge, func() (bool, error) { return true, restoreQuiet(rec) }})
		}
	}
	return parts, later
}

// rulesLater reports whether network rec's rules may outlive its last VM's
// down, left to the child: only once no guest reaches the bridge. A VXLAN
// port stays on it until the child deletes the link, and guests of other
// hosts reach the bridge through it meanwhile.
func rulesLater(rec state.Network) bool { return rec.VXLAN == "" }

// fwNetwork is what the rule engine needs to know of a network.
// forwards are its port forwards (state.Dir.LoadForwards); Remove needs none.
func fwNetwork(rec state.Network, services bool, forwards []state.Forward) firewall.Network {
	n := firewall.Network{Name: rec.Name, Bridge: rec.Bridge, Gateway: rec.Gateway, Services: services}
	switch config.Mode(rec.Mode) {
	case config.NAT:
		n.Mode = firewall.NAT
	case config.RoutedMode:
		n.Mode = firewall.Routed
	case config.HostOnly:
		n.Mode = firewall.HostOnly
	default:
		n.Mode = firewall.Isolated
	}
	if rec.Gateway6.IsValid() && n.Mode != firewall.Isolated {
		n.Gateway6 = rec.Gateway6
	}
	n.Forwards = natForwards(forwards)
	if rec.AllowFrom != "" {
		n.AllowFrom = strings.Split(rec.AllowFrom, ",")
	}
	if rec.Peers != "" {
		n.Peers = strings.Split(rec.Peers, ",")
	}
	n.Overlay = overlayOf(rec.VXLANGuard)
	installedVTEPs(n.Overlay, rec)
	return n
}

// serves reports whether the network runs kvmnet's DHCP/DNS daemon.
func serves(n config.Net) bool { return n.Mode.Routed() && (n.DHCP || n.DNS) }
