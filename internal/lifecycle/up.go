package lifecycle

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
	"github.com/kvmnet/kvmnet/internal/warm"
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
	if err := coolDown(d, n.Name); err != nil {
		return Result{}, err
	}
	disk, existed, err := d.Load(n.Name)
	if err == nil && existed {
		var gone bool
		if gone, err = finishTeardown(d, disk); gone {
			disk, existed = state.Network{}, false
		}
	}
	if err != nil || ((kind == healUp || kind == reloadUp) && !existed) {
		return Result{}, err
	}
	rec, br, err := current(n, disk, existed)
	if err != nil {
		return Result{}, err
	}
	u := &upCall{d: d, n: n, rec: rec, held: rec, disk: disk, existed: existed, fresh: !existed,
		recovering: disk.Doing != "" || kind == healUp, dom: dom} // doctor --fix checks every part too
	if kind == reloadUp || n.Hash != rec.ConfigHash {
		if n.Elided {
			return Result{}, ErrConfigStale
		}
		u.reconfig, u.forwards = true, recordForwards(n)
	}
	if existed && !u.recovering {
		u.seen, u.looked = br, true
	}
	if kind == vmUp {
		if u.tap, err = findTap(tapName, n); err != nil {
			return Result{}, err
		}
	}
	encoded := encodeNetwork(n)
	changes, err := run(u.steps())
	if err != nil {
		return Result{Changes: changes}, errors.Join(err, u.settle())
	}
	// Pinned is set only now: an interrupted `kvmnet up` leaves a network
	// that gc reclaims, not one pinned half-made.
	if kind == pinUp && !u.rec.Pinned {
		u.rec.Pinned = true
		changes = append(changes, "pin "+n.Name)
	}
	res := Result{Changes: changes, Warnings: u.warnings}
	if u.reconfig {
		// The forwards' file first: killed between the two, the old hash
		// makes the next up apply the configuration again.
		if err := d.SaveForwards(n.Name, u.forwards); err != nil {
			return res, err
		}
		u.rec.ConfigHash = n.Hash
	}
	u.rec.Doing = ""
	if err := u.save(); err != nil {
		return res, err
	}
	writeCache(d, n.Name, encoded)
	u.writeHot()
	return res, nil
}

// findTap returns the VM's port: a tun/tap link (any link but a bridge when
// the network's ports = "any") that is no other bridge's port.
func findTap(tapName string, n config.Net) (netlink.Link, error) {
	tap, err := bridge.Link(tapName)
	if err != nil {
		return nil, fmt.Errorf("find tap: %w", err)
	}
	a := tap.Attrs()
	switch _, isBridge := tap.(*netlink.Bridge); {
	case isBridge || tapName == n.Bridge:
		return nil, fmt.Errorf("tap %s is a bridge, not a VM's port", tapName)
	case n.Ports != config.AnyPorts && !bridge.IsTap(tap):
		return nil, fmt.Errorf("tap %s is a %s link, not a tap: network %s attaches only taps (ports = \"any\" in its configuration allows any link)",
			tapName, tap.Type(), n.Name)
	case a.MasterIndex != 0:
		if br, err := bridge.Find(n.Bridge); err != nil || br == nil || br.Index != a.MasterIndex {
			return nil, fmt.Errorf("tap %s is a port of %s already: refusing to move it to %s", tapName, bridge.Name(a.MasterIndex), n.Bridge)
		}
	}
	return tap, nil
}

// Result is what an up or a down did.
type Result struct {
	Changes  []string // the changes made, named as the steps are
	Warnings []string // what was left out, and why
}

// current returns the record of n, rec as read (ok false: none), checked
// against the running network, and, when there was a record, the bridge it
// found (nil: none).
func current(n config.Net, rec state.Network, ok bool) (state.Network, *netlink.Bridge, error) {
	fresh := state.Network{Name: n.Name, Bridge: n.Bridge, Mode: string(n.Mode), Gateway: n.Gateway, Gateway6: n.Gateway6}
	if !ok {
		return fresh, nil, nil
	}
	if rec.Gateway6 != n.Gateway6 {
		return rec, nil, fmt.Errorf("network %s is up with address6 %s, asked for %s: %w (take its VMs down or run `kvmnet down %s` first)",
			n.Name, gwString(rec.Gateway6), gwString(n.Gateway6), ErrConflict, n.Name)
	}
	if rec.Bridge != n.Bridge || rec.Mode != string(n.Mode) || rec.Gateway != n.Gateway {
		return rec, nil, fmt.Errorf("network %s is up as %s on %s %s, asked for %s on %s %s: %w (take its VMs down or run `kvmnet down %s` first)",
			n.Name, rec.Mode, rec.Bridge, gwString(rec.Gateway), n.Mode, n.Bridge, gwString(n.Gateway), ErrConflict, n.Name)
	}
	if err := sameFirewall(rec, n); err != nil {
		return rec, nil, err
	}
	br, err := bridge.Find(n.Bridge)
	if err != nil {
		return rec, nil, err
	}
	switch {
	case br == nil:
		// Someone deleted the bridge: its address and settings went with
		// it, and the up that follows makes them again.
		rec.MadeAddress, rec.MadeAddress6, rec.BridgeIndex = false, false, 0
		forgetQuiet(&rec)
	case ownsBridge(rec, br):
		rec.BridgeIndex = br.Index
	case br.Index != rec.BridgeIndex:
		// Someone deleted the bridge and made another of that name: it is theirs.
		rec.MadeBridge, rec.MadeAddress, rec.MadeAddress6, rec.BridgeIndex = false, false, false, 0
		forgetQuiet(&rec)
	}
	return rec, br, nil
}

// ownsBridge reports whether br is the bridge rec says kvmnet made: the one
// it recorded, or, when an up was killed before it could record the new
// bridge's index, one carrying the MAC kvmnet derives from its name.
func ownsBridge(rec state.Network, br *netlink.Bridge) bool {
	if !rec.MadeBridge || br == nil {
		return false
	}
	if rec.BridgeIndex == 0 {
		return bridge.Made(br)
	}
	return br.Index == rec.BridgeIndex
}

type upCall struct {
	d   state.Dir
	n   config.Net
	rec state.Network
	tap netlink.Link // nil for an up with no VM (Pin, Heal)
	br  *netlink.Bridge
	fw  firewall.Firewall

	seen   *netlink.Bridge // the bridge current found (nil: none), while looked
	looked bool            // seen is still fresh: no step has looked since

	disk       state.Network // the record as it is in the state directory
	held       state.Network // the record when the up began, as current checked it: what a repair restores
	existed    bool          // there was a record when the up began
	fresh      bool          // there was no record when the up began: this up begins the network
	recovering bool          // an up was killed, or doctor --fix asks: check every part, trust no shortcut

	starting func() (*ctl.Process, error) // the DHCP/DNS daemon this up is starting

	// early: the network's first up installs its rules in the background
	// while it makes the bridge (see rulesEarly); ensuring is that work.
	early    bool
	ensuring func() (firewall.Result, error)
	// guardNew: this up's rules made the guard table, whose learned sets
	// are empty: guardPort has no gone port to forget.
	guardNew bool

	dom *state.Domain // the libvirt domain this up is for (Join), else nil

	tapWas bridge.Port // the tap as attach found it, for its undo

	// quietFound: the quiet settings this up found already set on a bridge
	// kvmnet did not quiet (an admin's, set so by the admin), each file with
	// its value; what a front must read again (writeHot).
	quietFound []warm.Sysctl

	// reconfig: the configuration differs from the one the network last
	// applied (or `kvmnet reload` asks), so rules and daemon are checked
	// anew; forwards are the network's (recorded in their own file).
	reconfig bool
	forwards []state.Forward

	warnings []string
}

// intend records what the up is about to do, before it does it: a helper
// killed while doing it leaves a record that names the change, for the next
// run to finish or undo.
func (u *upCall) intend(what string) error {
	u.rec.Doing = what
	return u.save()
}

// save writes the record if it differs from the one in the state directory,
// so an up that changes nothing writes nothing.
func (u *upCall) save() error {
	if u.rec == u.disk && u.existed {
		return nil
	}
	if err := u.d.Save(u.rec); err != nil {
		return err
	}
	u.disk, u.existed = u.rec, true
	return nil
}

// settle records what a failed up left after its undo: nothing at all when
// it began the network and undid all of it, else what is left for the next
// down or gc to undo.
func (u *upCall) settle() error {
	u.rec.Doing = ""
	switch {
	case !u.existed: // nothing was written
		return nil
	case u.fresh && !u.rec.Owns():
		return u.d.Remove(u.n.Name)
	}
	return u.save()
}

func (u *upCall) steps() []step {
	br := u.n.Bridge
	if u.n.Mode == config.Bridged {
		return append([]step{{name: "find bridge " + br, do: u.adminBridge}}, u.tapSteps()...)
	}
	// A network's first up installs its rules side by side with the bridge,
	// its address and ip_forward: the rules name the bridge, they need not
	// wait for it. Not for an isolated network, whose rules cut off all
	// traffic through the bridge: the bridge's check (adopt) must come first.
	var steps []step
	rules := step{name: "install rules for " + u.n.Name, do: u.rules, undo: u.unrules}
	if u.early = u.fresh && u.n.Mode.Routed(); u.early {
		steps = append(steps, step{name: rules.name, do: u.rulesEarly, undo: u.unrules})
		rules = step{name: rules.name, do: u.rulesJoin}
	}
	steps = append(steps, step{name: "make bridge " + br, do: u.bridge, undo: u.unbridge})
	if u.n.VXLAN != nil {
		steps = append(steps, step{name: fmt.Sprintf("make vxlan %s on %s", u.n.VXLAN.Device, br), do: u.overlay, undo: u.unoverlay})
	}
	if u.n.Mode == config.Isolated {
		steps = append(steps, step{name: "quiet the host on " + br, do: u.quiet, undo: u.unquiet})
	}
	// The daemon's start (binding its sockets, forking and executing it)
	// needs only the bridge, and goes on in the background until it is
	// joined last: a cold network pays for it side by side with its
	// address, ip_forward, rules and the VM's port. Nothing waits for the
	// daemon to serve, and no guest runs before the up returns.
	if serves(u.n) {
		steps = append(steps, step{name: "start DHCP/DNS on " + br, do: u.services, undo: u.unservices})
	}
	if u.n.Mode.Routed() {
		steps = append(steps, step{name: fmt.Sprintf("add %s to %s", u.n.Gateway, br), do: u.address, undo: u.unaddress, named: true})
	}
	if u.n.Mode.Routed() && u.n.Gateway6.IsValid() {
		steps = append(steps, step{name: fmt.Sprintf("add %s to %s", u.n.Gateway6, br), do: u.address6, undo: u.unaddress6, named: true})
	}
	if u.n.Mode.Forwards() {
		steps = append(steps, step{name: "turn on ip_forward", do: u.forwarding, undo: u.unforwarding})
	}
	if u.n.Mode.Forwards() && u.n.Gateway6.IsValid() {
		steps = append(steps, step{name: "turn on IPv6 forwarding", do: u.forwarding6, undo: u.unforwarding6})
	}
	steps = append(steps, rules)
	steps = append(steps, step{name: "put " + br + " into a firewalld zone", do: u.zone, undo: u.unzone})
	if watchesAlone(u.n) {
		steps = append(steps, step{name: "watch the rules of " + u.n.Name, do: u.watch, undo: u.unwatch})
	}
	if u.dom != nil {
		steps = append(steps, step{name: "record domain " + u.dom.Name, do: u.recordDomain, undo: u.unrecordDomain})
	}
	steps = append(steps, u.tapSteps()...)
	if serves(u.n) {
		steps = append(steps, step{name: "bind DHCP/DNS on " + br, do: u.servicesReady})
	}
	if u.fresh && resolvesNames(u.n) {
		steps = append(steps, step{name: "register " + br + "'s DNS with systemd-resolved", do: u.registerNames, undo: u.unregisterNames})
	}
	return steps
}

// tapSteps record the VM's tap, then attach it: a down detaches only the
// taps kvmnet recorded, so a tap is recorded before it is attached.
func (u *upCall) tapSteps() []step {
	if u.tap == nil {
		return nil
	}
	tap := u.tap.Attrs().Name
	steps := append([]step{{name: "record " + tap, do: u.record, undo: u.unrecord}}, u.guardSteps()...)
	steps = append(steps, step{name: fmt.Sprintf("attach %s to %s", tap, u.n.Bridge), do: u.attach, undo: u.detach, named: true})
	return append(steps, u.attachedSteps()...)
}

// attachedSteps are what an attached port of the network gets: isolation
// and bandwidth. The libvirt hook takes them too, for the taps libvirt
// attached itself (domainports.go).
func (u *upCall) attachedSteps() []step {
	steps := u.isolateSteps()
	if u.n.Shaped() {
		steps = append(steps, u.shapeStep())
	}
	return steps
}

// adminBridge finds a bridged network's bridge, which is the admin's: kvmnet
// never makes it, never changes it, and touches nothing on it but its taps.
func (u *upCall) adminBridge() (outcome, error) {
	br, err := u.findBridge()
	if err != nil {
		return unchanged, err
	}
	if br == nil {
		return unchanged, fmt.Errorf("no bridge %s: a bridged network's bridge is made by the admin, with the host's NIC, never by kvmnet", u.n.Bridge)
	}
	u.br, u.rec.BridgeIndex = br, br.Index
	return unchanged, nil
}

func (u *upCall) bridge() (outcome, error) {
	br, err := u.findBridge()
	if err != nil {
		return unchanged, err
	}
	if br != nil {
		switch {
		case ownsBridge(u.rec, br) || br.Index == u.rec.BridgeIndex:
		case bridge.Made(br):
			// kvmnet made it, and a helper killed before it recorded
			// anything (one older than the journal) lost the record: it is
			// still kvmnet's to delete, never someone else's.
			u.rec.MadeBridge = true
		default:
			if err := u.adopt(br); err != nil {
				return unchanged, err
			}
		}
		u.br, u.rec.BridgeIndex = br, br.Index
		if u.recovering && u.rec.MadeBridge {
			// A bridge made by a kvmnet older than NoRA, or set back by hand.
			if err := bridge.NoRA(br.Name); err != nil {
				return unchanged, err
			}
		}
		return unchanged, bridge.Up(br)
	}
	u.rec.MadeBridge, u.rec.BridgeIndex = true, 0
	if err := u.intend("make bridge " + u.n.Bridge); err != nil {
		return unchanged, err
	}
	if u.br, err = bridge.Create(u.n.Bridge, u.n.MTU); u.br == nil {
		u.rec.MadeBridge = false
		return unchanged, err
	}
	u.rec.BridgeIndex = u.br.Index
	return changed, err
}

// adopt checks a bridge kvmnet did not make before a network first uses it,
// when it carries an address or a port that is not kvmnet's (an admin's LAN
// bridge). An isolated network's rules reject all traffic routed through
// its bridge, which would cut it off. A nat or hostonly network would put
// its gateway and DHCP on the admin's LAN: only when the file names the
// bridge in the network's section, never for the default name a network
// (the default one's br0) takes unasked, which a user in group kvm can
// make a helper use (kvmnet-bridge-helper --br=br0).
func (u *upCall) adopt(br *netlink.Bridge) error {
	var why string
	switch {
	case u.n.Mode == config.Isolated:
		why = "an isolated network would cut it off; for guests on that bridge's LAN use mode = \"bridged\""
	case u.n.Mode.Routed() && !u.n.BridgeNamed:
		why = fmt.Sprintf("network %s would add %s to it unasked; for guests on that bridge's LAN use mode = \"bridged\", or name it (bridge = %q) in [network.%s]",
			u.n.Name, u.n.Gateway, br.Name, u.n.Name)
	default:
		return nil
	}
	foreign, err := u.foreign(br)
	if err != nil || foreign == "" {
		return err
	}
	return fmt.Errorf("bridge %s %s: %s", br.Name, foreign, why)
}

// foreign says what of br is not kvmnet's: an address, or a port kvmnet did
// not attach for this network; "" when there is none.
func (u *upCall) foreign(br *netlink.Bridge) (string, error) {
	addrs, err := bridge.Addresses(br)
	if err != nil {
		return "", err
	}
	if len(addrs) > 0 {
		return fmt.Sprintf("carries the host's address %s", addrs[0]), nil
	}
	ports, err := bridge.Ports(br)
	if err != nil {
		return "", err
	}
	for _, p := range ports {
		ours, err := u.d.HasPort(u.n.Name, p.Attrs().Name)
		if err != nil {
			return "", err
		}
		if !ours {
			return "has a port kvmnet did not attach, " + p.Attrs().Name, nil
		}
	}
	return "", nil
}

// findBridge returns the network's bridge (nil: none): the one current found
// a moment ago under the lock, which a warm up need not ask the kernel for
// again, else a fresh lookup.
func (u *upCall) findBridge() (*netlink.Bridge, error) {
	if u.looked {
		u.looked = false
		return u.seen, nil
	}
	return bridge.Find(u.n.Bridge)
}

func (u *upCall) unbridge() error {
	u.rec.MadeBridge = false
	return bridge.Delete(u.n.Bridge)
}

func (u *upCall) address() (outcome, error) {
	has, err := bridge.HasAddress(u.br, u.n.Gateway)
	if err != nil || has {
		return unchanged, err
	}
	if err := bridge.CheckOverlap(u.n.Subnet(), u.br.Index); err != nil {
		return unchanged, fmt.Errorf("add %s to %s: %w", u.n.Gateway, u.n.Bridge, err)
	}
	u.rec.MadeAddress = true
	if err := u.intend(fmt.Sprintf("add %s to %s", u.n.Gateway, u.n.Bridge)); err != nil {
		return unchanged, err
	}
	if err := bridge.AddAddress(u.br, u.n.Gateway); err != nil {
		u.rec.MadeAddress = u.held.MadeAddress
		return unchanged, err
	}
	return u.repairOf(u.held.MadeAddress), nil
}

// repairOf is the outcome of a step that changed the host: repaired when
// the record held what it made when the up began, else changed.
func (u *upCall) repairOf(held bool) outcome {
	if held {
		return repaired
	}
	return changed
}

func (u *upCall) unaddress() error {
	u.rec.MadeAddress = false
	return bridge.DelAddress(u.br, u.n.Gateway)
}

// forwarding takes a use of ip_forward, turning it on if it is off. Only
// turning it on is reported: a network that joins an ip_forward already on
// changed nothing on the host.
func (u *upCall) forwarding() (outcome, error) {
	if u.rec.Forwarding && !u.recovering {
		if on, err := Forwarding(); err != nil || on {
			return unchanged, err
		}
	}
	if !u.rec.Forwarding {
		u.rec.Forwarding = true
		if err := u.intend("take ip_forward"); err != nil {
			return unchanged, err
		}
	}
	turnedOn, err := acquireForwarding(u.d, u.n.Name)
	switch {
	case turnedOn:
		return u.repairOf(u.held.Forwarding), err
	case u.held.Forwarding:
		return unchanged, err // its use was held already: nothing to give back
	}
	return noted, err
}

func (u *upCall) unforwarding() error {
	u.rec.Forwarding = false
	_, err := releaseForwarding(u.d, u.n.Name)
	return err
}

// rules makes sure the network's rules are whole. On nf_tables an unchanged
// ruleset generation since they were last seen whole proves they still are,
// at the cost of one netlink round trip instead of an iptables-save exec;
// not rules another kvmnet version made (an upgrade), which it rewrites.
func (u *upCall) rules() (outcome, error) {
	fw, err := u.firewall()
	if err != nil {
		return unchanged, err
	}
	// A VXLAN's peers are no part of the configuration's hash: a change of
	// them is seen here.
	if u.rec.Rules && u.rec.RulesGen != 0 && !u.recovering && !u.reconfig && u.rec.VXLANGuard == vxlanGuard(u.n) &&
		u.rec.RulesVersion == version.Version && fw.Unchanged(u.rec.RulesGen) {
		return unchanged, nil
	}
	if !u.reconfig {
		if u.forwards, err = u.d.LoadForwards(u.n.Name); err != nil {
			return unchanged, err
		}
	}
	if err := u.localnetBefore(); err != nil {
		return unchanged, err
	}
	began := !u.rec.Rules
	if began {
		u.rec.Rules, u.rec.Services, u.rec.RulesGen = true, serves(u.n), 0
		if err := u.intend("install rules for " + u.n.Name); err != nil {
			return unchanged, err
		}
	}
	r, err := fw.Ensure(u.wantRules())
	if err != nil {
		if began { // iptables-restore commits table by table: undo what it may have committed
			return noted, err
		}
		return unchanged, err
	}
	out, err := u.rulesIn(r)
	if out == changed && !began {
		out = repaired // rules the network had, made whole again (or to a reload's configuration)
	}
	return out, err
}

// rulesEarly begins a network's first rules in the background, recorded
// first as any change is; rulesJoin, after the bridge's steps, finishes them.
// The network has no record yet, so no forward's route_localnet to turn off
// first (localnetBefore).
func (u *upCall) rulesEarly() (outcome, error) {
	fw, err := u.firewall()
	if err != nil {
		return unchanged, err
	}
	if !u.reconfig {
		if u.forwards, err = u.d.LoadForwards(u.n.Name); err != nil {
			return unchanged, err
		}
	}
	u.rec.Rules, u.rec.Services, u.rec.RulesGen = true, serves(u.n), 0
	if err := u.intend("install rules for " + u.n.Name); err != nil {
		return unchanged, err
	}
	want := u.wantRules()
	u.ensuring = inBackground(func() (firewall.Result, error) { return fw.Ensure(want) })
	return noted, nil
}

// wantRules is the network's rules as Ensure takes them, built from the
// record after noting in it what they let through (allowed sources, the
// VXLAN's peers): a down and doctor rebuild them from the record alone.
func (u *upCall) wantRules() firewall.Network {
	u.rec.AllowFrom, u.rec.VXLANGuard = strings.Join(u.n.AllowFrom, ","), vxlanGuard(u.n)
	u.rec.Peers = strings.Join(u.n.Peers, ",")
	want := fwNetwork(u.rec, serves(u.n), u.forwards)
	want.Guard = PortGuard(u.n)
	if o := want.Overlay; o != nil && o.EVPN && firewall.Backend(u.rec.Firewall) != firewall.NFTables {
		u.warnings = append(u.warnings, "vxlan port of "+u.n.Name+" not filtered: the evpn VTEP filter needs the nftables backend")
	}
	return want
}

// rulesJoin waits for rulesEarly's rules. Its failure is undone by
// rulesEarly's undo.
func (u *upCall) rulesJoin() (outcome, error) {
	r, err := u.ensuring()
	if err != nil {
		return unchanged, err
	}
	return u.rulesIn(r)
}

// rulesIn records rules Ensure has made whole, and turns on route_localnet
// for forwards once the rules that guard it are in.
func (u *upCall) rulesIn(r firewall.Result) (outcome, error) {
	u.guardNew = r.GuardNew
	u.rec.Rules, u.rec.Services = true, serves(u.n)
	u.rec.RulesGen, u.rec.RulesVersion = 0, version.Version
	if r.GenOK {
		u.rec.RulesGen = r.Gen
	}
	if err := u.localnetAfter(); err != nil {
		return noted, err
	}
	if r.Changed {
		return changed, nil
	}
	return unchanged, nil
}

func (u *upCall) unrules() error {
	if u.ensuring != nil {
		_, _ = u.ensuring() // Remove after it, whatever it made
	}
	if u.early {
		// rulesEarly noted the daemon's ports in the rules before the
		// services step, which may not have run: nothing of it is left.
		u.rec.Services = false
	}
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
	return fw.Remove(fwNetwork(u.rec, serves(u.n), nil))
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

// services starts the DHCP/DNS daemon in the background (ctl.Start: bind its
// sockets, fork and execute it), which the steps that follow pay for
// meanwhile; servicesReady then joins it. Its ports (53, 67)
// need CAP_NET_BIND_SERVICE, which libvirt does not give its scripts: then
// the VM still gets its network, without DHCP/DNS until `kvmnet up` (run as
// root, e.g. at boot) starts the daemon, and the run says so.
func (u *upCall) services() (outcome, error) {
	if _, running := ServicesPID(u.d, u.n.Name); running {
		u.rec.Services = true
		if !u.reconfig {
			return unchanged, nil
		}
		// Static hosts, names, the pool: the daemon reads them at start, and
		// its leases from its lease file, so a restart keeps them.
		if same, err := servicesCurrent(u.d, u.n, u.evpnLink()); err != nil || same {
			return unchanged, err
		}
		if !HasCap(unix.CAP_NET_BIND_SERVICE) {
			// Stopped, it could not be started again (libvirt's helpers).
			u.warnings = append(u.warnings, "DHCP/DNS keeps its old settings: restarting it needs CAP_NET_BIND_SERVICE; run `kvmnet reload "+u.n.Name+"` as root")
			return unchanged, nil
		}
		if err := stopServices(u.d, u.n.Name); err != nil {
			return unchanged, err
		}
	}
	if !HasCap(unix.CAP_NET_BIND_SERVICE) {
		u.warnings = append(u.warnings, "DHCP/DNS not started: ports 53 and 67 need CAP_NET_BIND_SERVICE; run `kvmnet up "+u.n.Name+"` as root to start them")
		return unchanged, nil
	}
	exe, err := findDaemonBinary()
	if err != nil {
		return unchanged, err
	}
	u.rec.Services = true
	if err := u.intend("start DHCP/DNS on " + u.n.Bridge); err != nil {
		return unchanged, err
	}
	if u.recovering {
		// A killed up may have started a daemon that had not yet written
		// its pid file; a second one would find its ports taken.
		if err := killStrays(u.d, u.n.Name); err != nil {
			return noted, err
		}
	}
	link := u.evpnLink()
	u.starting = inBackground(func() (*ctl.Process, error) { return startServices(u.d, u.n, exe, link) })
	return changed, nil
}

// servicesReady joins services' start, which has bound the daemon's sockets
// (a port taken fails the up here) and started it. It does not wait for the
// daemon to serve: guests' first datagrams wait for it in those sockets.
func (u *upCall) servicesReady() (outcome, error) {
	if u.starting == nil {
		return unchanged, nil
	}
	_, err := u.starting()
	return unchanged, err
}

func (u *upCall) unservices() error {
	// A network that had a daemon when the up began still should: its
	// record keeps saying so, and doctor that it is not running.
	u.rec.Services = u.held.Services
	if u.starting != nil {
		if p, err := u.starting(); err == nil {
			p.Kill()
		}
	}
	if err := stopServices(u.d, u.n.Name); err != nil {
		return err
	}
	if u.held.Services {
		return nil // its log says why the last one died
	}
	// The error this undo belongs to carries the daemon's last log line.
	return errors.Join(u.d.RemoveFile(u.n.Name+svcConf), u.d.RemoveFile(u.n.Name+svcLog))
}

// attach makes the VM's port a port of the bridge, with a MAC that never
// becomes the bridge's (bridge.PortMAC).
func (u *upCall) attach() (outcome, error) {
	if u.tap.Attrs().MasterIndex == u.br.Index && u.tap.Attrs().Flags&net.FlagUp != 0 {
		return unchanged, nil
	}
	var err error
	u.tapWas, err = bridge.AttachPort(u.tap, u.br)
	return changed, err
}

// detach, a failed up's undo, leaves the port as the up found it: down, off
// the bridge, its MTU and MAC its own again.
func (u *upCall) detach() error { return bridge.Restore(u.tapWas) }

// record notes the tap before it is attached. The first VM of a network
// that made nothing else (a bridged one) writes the network's record first,
// so that no port is recorded for a network gc cannot see.
func (u *upCall) record() (outcome, error) {
	if !u.existed {
		if err := u.intend("record " + u.tap.Attrs().Name); err != nil {
			return unchanged, err
		}
	}
	if err := u.d.AddPort(u.n.Name, u.tap.Attrs().Name); err != nil {
		return unchanged, err
	}
	return noted, nil
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
