package lifecycle

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// overlay gives the bridge its VXLAN port to the peers: on the first up it
// sizes the MTU for the underlay, makes the link attached to the bridge and
// adds a flood entry per peer; a VM's later up finds it and only passes its
// MTU on to the DHCP/DNS daemon (option 26), which a restarted daemon needs too.
func (u *upCall) overlay() (outcome, error) {
	o := u.n.VXLAN
	vx, err := bridge.FindVXLAN(o.Device)
	if err != nil {
		return unchanged, err
	}
	if vx != nil {
		return unchanged, u.adoptOverlay(vx)
	}
	ul, err := readUnderlay(o)
	if err != nil {
		return unchanged, err
	}
	mtu, err := u.overlayMTU(ul)
	if err != nil {
		return unchanged, err
	}
	if u.rec.MadeBridge {
		if err := u.sizeBridge(mtu, ul); err != nil {
			return unchanged, err
		}
	}
	// Recorded before it is made: a helper killed in between leaves a record
	// that a down or gc follows to the link by its name and kvmnet's alias.
	u.rec.VXLAN, u.rec.VXLANIndex, u.rec.MadeVXLAN = o.Device, 0, true
	if err := u.intend("make vxlan " + o.Device); err != nil {
		return unchanged, err
	}
	local := o.Local
	if o.EVPN {
		local = ul.Source // zebra takes the link's local address as this host's VTEP
	}
	vx, err = bridge.CreateVXLAN(bridge.VXLAN{Name: o.Device, VNI: o.VNI, Port: o.Port, Local: local, DevIndex: ul.DevIndex, MTU: mtu, EVPN: o.EVPN}, u.br)
	if err != nil {
		u.rec.MadeVXLAN = false
		return unchanged, err
	}
	u.rec.VXLANIndex = vx.Index
	if err := syncPeers(vx, o); err != nil {
		return changed, err // the undo deletes the link
	}
	u.n.MTU = mtu
	if !u.rec.MadeBridge {
		// The kernel lowers a bridge's MTU to its smallest port's unless an
		// admin set one; the taps take whatever it is now.
		if br, err := bridge.Find(u.n.Bridge); err == nil && br != nil {
			u.br = br
		}
	}
	return changed, nil
}

// sizeBridge gives the bridge kvmnet made the overlay's MTU, and a MAC of
// this host's own: bridge.MAC derives it from the name alone, so every host's
// bridge of the network would have the same, and a bridge drops a frame that
// arrives with its own address as the source (the gateway host's DHCP offers
// and ARP replies, on every other host).
func (u *upCall) sizeBridge(mtu int, ul bridge.Underlay) error {
	if err := bridge.SetMTU(u.br, mtu); err != nil {
		return err
	}
	host := u.n.VXLAN.Local
	if !host.IsValid() {
		host = ul.Source
	}
	id := fmt.Sprintf("%s on %s peers %v", u.n.Bridge, host, u.n.VXLAN.Peers)
	if u.n.VXLAN.EVPN {
		// No peer list: the host's own VTEP address tells the hosts apart,
		// and it stays the same across restarts as zebra needs (it advertises
		// the bridge's MAC with advertise-svi-ip).
		id = fmt.Sprintf("%s on %s vni %d", u.n.Bridge, ul.Source, u.n.VXLAN.VNI)
	}
	return bridge.SetMAC(u.br, bridge.MAC(id))
}

// adoptOverlay takes the existing VXLAN link of the network's name: the one
// kvmnet recorded, or one it made and lost the record of (it carries
// kvmnet's alias). Any other is an admin's, and kvmnet leaves it alone. An
// up with no VM (`kvmnet up`, `doctor --fix`) also brings its flood entries
// in line with the file's peers, so that a host joins or leaves the overlay
// without taking the network down.
func (u *upCall) adoptOverlay(vx *netlink.Vxlan) error {
	o := u.n.VXLAN
	if vx.Index != u.rec.VXLANIndex || u.rec.VXLAN == "" {
		if vx.Alias != bridge.Alias {
			return fmt.Errorf("vxlan %s exists and kvmnet did not make it: delete it (ip link del %s) or give this network another name", vx.Name, vx.Name)
		}
		u.rec.VXLAN, u.rec.VXLANIndex, u.rec.MadeVXLAN = vx.Name, vx.Index, true
	}
	if uint32(vx.VxlanId) != o.VNI || vx.Port != o.Port {
		return fmt.Errorf("network %s is up with VNI %d on port %d, asked for VNI %d on port %d: %w (take its VMs down or run `kvmnet down %s` first)",
			u.n.Name, vx.VxlanId, vx.Port, o.VNI, o.Port, ErrConflict, u.n.Name)
	}
	if vx.Learning == o.EVPN {
		return fmt.Errorf("network %s is up with %s, asked for %s: %w (take its VMs down or run `kvmnet down %s` first)",
			u.n.Name, overlayKind(!o.EVPN), overlayKind(o.EVPN), ErrConflict, u.n.Name)
	}
	u.n.MTU = vx.MTU
	if u.tap == nil {
		if err := bridge.CheckNotLocal(o.Peers); err != nil {
			return err
		}
		if err := syncPeers(vx, o); err != nil {
			return err
		}
	}
	if vx.MasterIndex == u.br.Index && vx.Flags&net.FlagUp != 0 {
		return nil
	}
	// Someone took it off the bridge, or deleted the bridge: put it back.
	if u.rec.MadeBridge {
		ul, err := readUnderlay(o)
		if err != nil {
			return err
		}
		if err := u.sizeBridge(vx.MTU, ul); err != nil {
			return err
		}
	}
	if err := bridge.Attach(vx, u.br); err != nil || !o.EVPN {
		return err
	}
	return bridge.EVPNPort(vx) // a new port has the bridge's defaults
}

// overlayKind names how an overlay finds the other hosts, for errors.
func overlayKind(evpn bool) string {
	if evpn {
		return "evpn"
	}
	return "static peers"
}

// ReadUnderlay reads what carries the overlay: towards the file's peers, or
// for EVPN, which has none, from this host's own underlay address. Status
// and doctor read it so too.
func ReadUnderlay(o *config.Overlay) (bridge.Underlay, error) {
	if o.EVPN {
		return bridge.ReadEVPNUnderlay(o.Dev, o.Local)
	}
	return bridge.ReadUnderlay(o.Dev, o.Peers)
}

// readUnderlay is ReadUnderlay for an up, which refuses a peer that is this
// host's own address before it makes anything towards it.
func readUnderlay(o *config.Overlay) (bridge.Underlay, error) {
	if err := bridge.CheckNotLocal(o.Peers); err != nil {
		return bridge.Underlay{}, err
	}
	return ReadUnderlay(o)
}

// syncPeers sets the link's flood entries to the file's peers; with EVPN
// they are zebra's, and kvmnet leaves them alone.
func syncPeers(vx netlink.Link, o *config.Overlay) error {
	if o.EVPN {
		return nil
	}
	_, _, err := bridge.SyncPeers(vx, o.Peers)
	return err
}

// overlayMTU is the MTU of the bridge and its taps: what the underlay's MTU
// leaves after VXLAN's encapsulation, or the file's mtu when that is less.
func (u *upCall) overlayMTU(ul bridge.Underlay) (int, error) {
	if len(ul.Unrouted) > 0 {
		var s []string
		for _, p := range ul.Unrouted {
			s = append(s, p.String())
		}
		u.warnings = append(u.warnings, fmt.Sprintf("no route to peer %s: its guests are unreachable until one appears", strings.Join(s, ",")))
	}
	underlay := ul.MTU
	if underlay == 0 {
		underlay = 1500
		u.warnings = append(u.warnings, "no route to any peer: MTU sized for a 1500-byte underlay")
	}
	mtu := underlay - bridge.VXLANOverhead
	if u.n.MTU > mtu {
		return 0, fmt.Errorf("mtu %d: the underlay's %d leaves %d for guests after VXLAN's %d bytes: lower mtu or leave it out",
			u.n.MTU, underlay, mtu, bridge.VXLANOverhead)
	}
	if u.n.MTU > 0 {
		mtu = u.n.MTU
	}
	return mtu, nil
}

func (u *upCall) unoverlay() error {
	if !u.rec.MadeVXLAN {
		return nil
	}
	u.rec.MadeVXLAN = false
	return deleteOverlay(u.rec)
}

// deleteOverlay is the teardown of what overlay made: the link it recorded,
// or, when an up was killed before it recorded the new link's index, the
// link of that name carrying kvmnet's alias.
func deleteOverlay(rec state.Network) error {
	if rec.VXLANIndex != 0 {
		return bridge.DeleteVXLAN(rec.VXLAN, rec.VXLANIndex)
	}
	vx, err := bridge.FindVXLAN(rec.VXLAN)
	if err != nil || vx == nil || vx.Alias != bridge.Alias {
		return err
	}
	return bridge.DeleteVXLAN(vx.Name, vx.Index)
}

// vmPorts leaves out of a bridge's ports the VXLAN link kvmnet attached: it
// carries the network, not a VM, and must not keep the network up.
func vmPorts(rec state.Network, ports []netlink.Link) []netlink.Link {
	if rec.VXLAN == "" {
		return ports
	}
	var vms []netlink.Link
	for _, p := range ports {
		if p.Attrs().Index != rec.VXLANIndex {
			vms = append(vms, p)
		}
	}
	return vms
}
