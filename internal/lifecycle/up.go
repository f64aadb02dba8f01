package lifecycle

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
)

// ErrConflict is returned when a network is up with settings other than the ones asked for.
var ErrConflict = errors.New("conflicts with the running network")

// Up brings tap onto network n, setting n up first if it is not (or healing
// what went missing: a deleted address, flushed rules, ip_forward turned off).
// It holds n's lock throughout, so concurrent VMs on one network serialise
// and exactly one of them sets it up.
func Up(d state.Dir, n config.Net, tapName string) (Result, error) {
	return up(d, n, tapName, vmUp)
}

// Pin sets network n up with no VM, as `kvmnet up` does at boot, and marks it
// pinned: its last VM's down then leaves it up, until Release.
func Pin(d state.Dir, n config.Net) (Result, error) { return up(d, n, "", pinUp) }

// Heal re-asserts what kvmnet set up for n (bridge, address, ip_forward,
// rules, daemon) as a VM's up would, without a tap; a network that is not up
// stays down. It is `kvmnet doctor --fix`.
func Heal(d state.Dir, n config.Net) (Result, error) { return up(d, n, "", healUp) }

// upKind is who asks for an up: a VM with its tap, or the operator with none.
type upKind int

const (
	vmUp     upKind = iota // a helper: attach and record the tap
	pinUp                  // kvmnet up: no tap, mark the network pinned
	healUp                 // kvmnet doctor --fix: no tap, only a network already up
	reloadUp               // kvmnet reload: as healUp, and the configuration applied whatever the record's hash
)

// domainUp is the libvirt hook's: no tap (libvirt attaches its own), record the domain.
const domainUp = reloadUp + 1

func up(d state.Dir, n config.Net, tapName string, kind upKind) (Result, error) {
	return upFor(d, n, tapName, kind, nil)
}

// upFor is up, recording libvirt domain dom as a user of the network when not nil.
func upFor(d state.Dir, n config.Net, tapName string, kind upKind, dom *state.Domain) (Result, error) {
	lk, err := d.Lock(n.Name)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	if kind == healUp || kind == reloadUp {
		if _, ok, err := d.Load(n.Name); err != nil || !ok {
			return Result{}, err
		}
	}
	rec, err := current(d, n)
	if err != nil {
		return Result{}, err
	}
	u := &upCall{d: d, n: n, rec: rec, dom: dom}
	if kind == reloadUp || n.Hash != rec.ConfigHash {
		if n.Elided {
			return Result{}, ErrConfigStale
		}
		u.reconfig = true
		u.rec.Forwards, u.rec.ConfigHash = recordForwards(n), n.Hash
	}
	if kind == vmUp {
		if u.tap, err = findTap(tapName, n.Bridge); err != nil {
			return Result{}, err
		}
	}
	before := rec
	if kind == pinUp {
		u.rec.Pinned = true
	}
	changes, err := run(u.steps())
	if err != nil {
		return Result{}, err
	}
	if u.rec.Pinned && !before.Pinned {
		changes = append(changes, "pin "+n.Name)
	}
	res := Result{Changes: changes, Warnings: u.warnings}
	if u.reconfig {
		if err := d.SaveForwards(n.Name, u.rec.Forwards); err != nil {
			return res, err
		}
	}
	after := u.rec
	after.Forwards = before.Forwards // their own file, saved above
	if !reflect.DeepEqual(after, before) {
		if err := d.Save(u.rec); err != nil {
			return res, err
		}
	}
	cacheNetwork(d, n)
	return res, nil
}

// findTap returns the VM's tap, refusing the bridge itself.
func findTap(tapName, bridgeName string) (netlink.Link, error) {
	tap, err := bridge.Link(tapName)
	if err != nil {
		return nil, fmt.Errorf("find tap: %w", err)
	}
	if _, isBridge := tap.(*netlink.Bridge); isBridge || tapName == bridgeName {
		return nil, fmt.Errorf("tap %s is a bridge, not a VM's port", tapName)
	}
	return tap, nil
}

// Result is what an up or a down did.
type Result struct {
	Changes  []string // the changes made, named as the steps are
	Warnings []string // what was left out, and why
}

// current returns the record of n, checked against the running network.
func current(d state.Dir, n config.Net) (state.Network, error) {
	rec, ok, err := d.Load(n.Name)
	if err != nil {
		return rec, err
	}
	fresh := state.Network{Name: n.Name, Bridge: n.Bridge, Mode: string(n.Mode), Gateway: n.Gateway}
	if !ok {
		return fresh, nil
	}
	if rec.Bridge != n.Bridge || rec.Mode != string(n.Mode) || rec.Gateway != n.Gateway {
		return rec, fmt.Errorf("network %s is up as %s on %s %s, asked for %s on %s %s: %w (take its VMs down or run `kvmnet down %s` first)",
			n.Name, rec.Mode, rec.Bridge, gwString(rec.Gateway), n.Mode, n.Bridge, gwString(n.Gateway), ErrConflict, n.Name)
	}
	if err := sameFirewall(rec, n); err != nil {
		return rec, err
	}
	br, err := bridge.Find(n.Bridge)
	if err != nil {
		return rec, err
	}
	switch {
	case br == nil:
		// Someone deleted the bridge: its address went with it, and the up
		// that follows makes both again.
		rec.MadeAddress = false
		rec.BridgeIndex = 0
	case br.Index != rec.BridgeIndex:
		// Someone deleted the bridge and made another of that name: it is theirs.
		rec.MadeBridge, rec.MadeAddress = false, false
		rec.BridgeIndex = br.Index
	}
	return rec, nil
}

type upCall struct {
	d   state.Dir
	n   config.Net
	rec state.Network
	tap netlink.Link // nil for an up with no VM (Pin, Heal)
	br  *netlink.Bridge
	fw  firewall.Firewall

	starting func() (*ctl.Process, error) // the DHCP/DNS daemon this up is starting

	dom *state.Domain // the libvirt domain this up is for (Join), else nil

	// reconfig: the configuration differs from the one the network last
	// applied (or `kvmnet reload` asks), so rules and daemon are checked anew.
	reconfig bool

	warnings []string
}

func (u *upCall) steps() []step {
	br := u.n.Bridge
	steps := []step{{name: "make bridge " + br, do: u.bridge, undo: u.unbridge}}
	if u.n.VXLAN != nil {
		steps = append(steps, step{name: fmt.Sprintf("make vxlan %s on %s", u.n.VXLAN.Device, br), do: u.overlay, undo: u.unoverlay})
	}
	if u.n.Mode.Routed() {
		steps = append(steps, step{name: fmt.Sprintf("add %s to %s", u.n.Gateway, br), do: u.address, undo: u.unaddress})
	}
	if u.n.Mode == config.NAT {
		steps = append(steps, step{name: "turn on ip_forward", do: u.forwarding, undo: u.unforwarding})
	}
	// The daemon starts before the rules and is waited for after them: a
	// cold network pays for the two side by side, not one after the other.
	if serves(u.n) {
		steps = append(steps, step{name: "start DHCP/DNS on " + br, do: u.services, undo: u.unservices})
	}
	steps = append(steps, step{name: "install rules for " + u.n.Name, do: u.rules, undo: u.unrules})
	if serves(u.n) {
		steps = append(steps, step{name: "wait for DHCP/DNS on " + br, do: u.servicesReady})
	}
	if u.dom != nil {
		steps = append(steps, step{name: "record domain " + u.dom.Name, do: u.recordDomain, undo: u.unrecordDomain})
	}
	if u.tap == nil {
		return steps
	}
	tap := u.tap.Attrs().Name
	return append(steps,
		step{name: fmt.Sprintf("attach %s to %s", tap, br), do: u.attach, undo: u.detach},
		step{name: "record " + tap, do: u.record, undo: u.unrecord},
	)
}

func (u *upCall) bridge() (bool, error) {
	br, err := bridge.Find(u.n.Bridge)
	if err != nil {
		return false, err
	}
	if br != nil {
		u.br, u.rec.BridgeIndex = br, br.Index
		return false, bridge.Up(br)
	}
	if u.br, err = bridge.Create(u.n.Bridge, u.n.MTU); err != nil {
		return false, err
	}
	u.rec.BridgeIndex, u.rec.MadeBridge = u.br.Index, true
	return true, nil
}

func (u *upCall) unbridge() error {
	u.rec.MadeBridge = false
	return bridge.Delete(u.n.Bridge)
}

func (u *upCall) address() (bool, error) {
	has, err := bridge.HasAddress(u.br, u.n.Gateway)
	if err != nil || has {
		return false, err
	}
	if err := bridge.CheckOverlap(u.n.Subnet(), u.br.Index); err != nil {
		return false, err
	}
	if err := bridge.AddAddress(u.br, u.n.Gateway); err != nil {
		return false, err
	}
	u.rec.MadeAddress = true
	return true, nil
}

func (u *upCall) unaddress() error {
	u.rec.MadeAddress = false
	return bridge.DelAddress(u.br, u.n.Gateway)
}

func (u *upCall) forwarding() (bool, error) {
	if u.rec.Forwarding {
		if on, err := Forwarding(); err != nil || on {
			return false, err
		}
	}
	changed, err := acquireForwarding(u.d, u.n.Name)
	if err != nil {
		return false, err
	}
	u.rec.Forwarding = true
	return changed, nil
}

func (u *upCall) unforwarding() error {
	u.rec.Forwarding = false
	return releaseForwarding(u.d, u.n.Name)
}

// rules makes sure the network's rules are whole. On nf_tables an unchanged
// ruleset generation since they were last seen whole proves they still are,
// at the cost of one netlink round trip instead of an iptables-save exec.
func (u *upCall) rules() (bool, error) {
	fw, err := u.firewall()
	if err != nil {
		return false, err
	}
	if !u.reconfig && u.rec.Rules && u.rec.RulesGen != 0 && fw.Unchanged(u.rec.RulesGen) {
		return false, nil
	}
	if !u.reconfig {
		if u.rec.Forwards, err = u.d.LoadForwards(u.n.Name); err != nil {
			return false, err
		}
	}
	if err := u.localnetBefore(); err != nil {
		return false, err
	}
	r, err := fw.Ensure(fwNetwork(u.rec, serves(u.n)))
	if err != nil {
		return false, err
	}
	if err := u.localnetAfter(); err != nil {
		return false, err
	}
	u.rec.Rules, u.rec.Services = true, serves(u.n)
	u.rec.RulesGen = 0
	if r.GenOK {
		u.rec.RulesGen = r.Gen
	}
	return r.Changed, nil
}

func (u *upCall) unrules() error {
	u.rec.Rules = false
	if u.rec.RouteLocalnet {
		if err := setRouteLocalnet(u.n.Bridge, false); err != nil {
			return err
		}
		u.rec.RouteLocalnet = false
	}
	fw, err := u.firewall()
	if err != nil {
		return err
	}
	return fw.Remove(fwNetwork(u.rec, serves(u.n)))
}

// firewall opens the network's rule engine: the recorded one, or for a
// network getting its first rules, the one the configuration picks.
func (u *upCall) firewall() (firewall.Firewall, error) {
	if u.fw != nil {
		return u.fw, nil
	}
	if u.rec.Firewall == "" && !u.rec.Rules {
		b, _, err := firewall.Choose(firewall.Backend(u.n.Firewall))
		if err != nil {
			return nil, err
		}
		u.rec.Firewall = string(b)
	}
	fw, err := firewall.New(firewall.Backend(u.rec.Firewall))
	if err != nil {
		return nil, err
	}
	u.fw = fw
	return fw, nil
}

// sameFirewall refuses a configuration that names another backend than the
// one a running network's rules are in: switching would strand them. auto
// keeps whatever the network has.
func sameFirewall(rec state.Network, n config.Net) error {
	have := rec.Firewall
	if have == "" && rec.Rules {
		have = string(firewall.IPTables)
	}
	if have == "" || n.Firewall == "" || n.Firewall == "auto" || string(n.Firewall) == have {
		return nil
	}
	return fmt.Errorf("network %s is up with firewall %s, the configuration asks for %s: %w (take its VMs down or run `kvmnet down %s` first)",
		n.Name, have, n.Firewall, ErrConflict, n.Name)
}

// services starts the DHCP/DNS daemon in the background: forking and
// executing it takes a millisecond or more, which the rules step that follows
// pays for meanwhile; servicesReady then waits for it. Its ports (53, 67)
// need CAP_NET_BIND_SERVICE, which libvirt does not give its scripts: then
// the VM still gets its network, without DHCP/DNS until `kvmnet up` (run as
// root, e.g. at boot) starts the daemon, and the run says so.
func (u *upCall) services() (bool, error) {
	if _, running := ServicesPID(u.d, u.n.Name); running {
		u.rec.Services = true
		if !u.reconfig {
			return false, nil
		}
		// Static hosts, names, the pool: the daemon reads them at start, and
		// its leases from its lease file, so a restart keeps them.
		if same, err := servicesCurrent(u.d, u.n); err != nil || same {
			return false, err
		}
		if err := stopServices(u.d, u.n.Name); err != nil {
			return false, err
		}
	}
	if !HasCap(unix.CAP_NET_BIND_SERVICE) {
		u.warnings = append(u.warnings, "DHCP/DNS not started: ports 53 and 67 need CAP_NET_BIND_SERVICE; run `kvmnet up "+u.n.Name+"` as root to start them")
		return false, nil
	}
	exe, err := findDaemonBinary()
	if err != nil {
		return false, err
	}
	u.starting = inBackground(func() (*ctl.Process, error) { return startServices(u.d, u.n, exe) })
	u.rec.Services = true
	return true, nil
}

func (u *upCall) servicesReady() (bool, error) {
	if u.starting == nil {
		return false, nil
	}
	p, err := u.starting()
	if err != nil {
		return false, err
	}
	_, err = p.Wait()
	return false, err
}

func (u *upCall) unservices() error {
	if u.starting != nil {
		if p, err := u.starting(); err == nil {
			p.Kill()
		}
	}
	if err := stopServices(u.d, u.n.Name); err != nil {
		return err
	}
	// The error this undo belongs to carries the daemon's last log line.
	return errors.Join(u.d.RemoveFile(u.n.Name+svcConf), u.d.RemoveFile(u.n.Name+svcLog))
}

func (u *upCall) attach() (bool, error) {
	if u.tap.Attrs().MasterIndex == u.br.Index && u.tap.Attrs().Flags&net.FlagUp != 0 {
		return false, nil
	}
	return true, bridge.Attach(u.tap, u.br)
}

func (u *upCall) detach() error { return bridge.Detach(u.tap, u.br) }

func (u *upCall) record() (bool, error) {
	return false, u.d.AddPort(u.n.Name, u.tap.Attrs().Name)
}

func (u *upCall) unrecord() error { return u.d.DelPort(u.n.Name, u.tap.Attrs().Name) }

func gwString(p netip.Prefix) string {
	if !p.IsValid() {
		return "(no address)"
	}
	return p.String()
}

// HasCap reports whether the process holds capability c in its effective set.
func HasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}
