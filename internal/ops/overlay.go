package ops

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// What status and doctor say of a network's VXLAN overlay.

// VXLANStatus is a network's overlay: its link, and its peers.
type VXLANStatus struct {
	Device string       `json:"device"`
	Exists bool         `json:"exists"`
	Owned  bool         `json:"owned"`
	VNI    uint32       `json:"vni"`
	Port   int          `json:"port"`
	MTU    int          `json:"mtu"`
	Peers  []PeerStatus `json:"peers"`
	// With evpn: Peers are the remote VTEPs zebra installed, MACs the
	// remote guests it installed (each at its VTEP).
	EVPN bool        `json:"evpn"`
	MACs []MACStatus `json:"macs"`
}

// PeerStatus is one hypervisor of an overlay. Flood: frames for unknown
// guests go to it (its all-zero FDB entry is there). Heard: a guest's frame
// came from it lately (the link learned a MAC from it; such entries age out
// after 300 s without traffic).
type PeerStatus struct {
	Address string `json:"address"`
	Flood   bool   `json:"flood"`
	Heard   bool   `json:"heard"`
}

// overlayStatus reads the overlay of a network, configured or recorded; nil
// when it has none.
func overlayStatus(rec state.Network, o *config.Overlay, fail func(error)) *VXLANStatus {
	if o == nil && rec.VXLAN == "" {
		return nil
	}
	s := &VXLANStatus{Device: rec.VXLAN, Owned: rec.MadeVXLAN, Peers: []PeerStatus{}, MACs: []MACStatus{}}
	var want []netip.Addr
	if o != nil {
		s.VNI, s.Port, want, s.EVPN = o.VNI, o.Port, o.Peers, o.EVPN
		if s.Device == "" {
			s.Device = o.Device
		}
	}
	l, err := bridge.Link(s.Device)
	if errors.Is(err, bridge.ErrNoLink) {
		return withPeers(s, want, nil, nil)
	}
	if err != nil {
		fail(err)
		return withPeers(s, want, nil, nil)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		fail(fmt.Errorf("%s is a %s link, not a vxlan", s.Device, l.Type()))
		return withPeers(s, want, nil, nil)
	}
	s.Exists, s.VNI, s.Port, s.MTU = true, uint32(vx.VxlanId), vx.Port, vx.MTU
	if s.EVPN {
		return evpnStatus(s, vx, fail)
	}
	flood, heard, err := bridge.Remotes(vx)
	if err != nil {
		fail(err)
	}
	return withPeers(s, want, flood, heard)
}

// withPeers lists the configured peers and any other the link floods to.
func withPeers(s *VXLANStatus, want, flood, heard []netip.Addr) *VXLANStatus {
	all := slices.Clone(want)
	for _, p := range flood {
		if !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	for _, p := range all {
		s.Peers = append(s.Peers, PeerStatus{Address: p.String(), Flood: slices.Contains(flood, p), Heard: slices.Contains(heard, p)})
	}
	return s
}

// overlayRow is the network's line in status's OVERLAY table, "" without one.
func overlayRow(n NetworkStatus) string {
	v := n.VXLAN
	if v == nil {
		return ""
	}
	dev := v.Device
	switch {
	case !v.Exists:
		dev += " (absent)"
	case v.Owned:
		dev += " (made)"
	default:
		dev += " (found)"
	}
	if v.EVPN {
		return evpnRow(dev, n)
	}
	var peers []string
	for _, p := range v.Peers {
		state := "silent"
		switch {
		case v.Exists && !p.Flood:
			state = "NO FLOOD ENTRY"
		case p.Heard:
			state = "heard"
		case !v.Exists:
			state = "-"
		}
		peers = append(peers, p.Address+" ("+state+")")
	}
	return fmt.Sprintf("%s\t%s\t%d\t%d\t%s\t%s", dev, n.Name, v.VNI, v.Port, mtuOf(v.MTU), strings.Join(peers, ", "))
}

// minGuestMTU is the least MTU an IPv6 link may have (RFC 8200), and what
// many guests' stacks assume.
const minGuestMTU = 1280

// underlay: the overlay's link kvmnet made is gone; the underlay leaves too
// small an MTU; a peer has no route.
func (c *netCheck) underlay() []Finding {
	o := c.conf.VXLAN
	var fs []Finding
	if c.up && c.rec.MadeVXLAN && c.br != nil {
		vx, err := bridge.Link(c.rec.VXLAN)
		switch {
		case errors.Is(err, bridge.ErrNoLink):
			fs = append(fs, c.heal(Finding{Problem: "the overlay's link " + c.rec.VXLAN + " is gone: guests here reach no other host",
				Evidence: "ip link show " + c.rec.VXLAN + ": no such device", Fix: "kvmnet doctor --fix makes it again"}))
		case err == nil && o != nil && o.EVPN:
			fs = append(fs, c.evpnFindings(vx, o)...)
		case err == nil && o != nil:
			fs = append(fs, c.floodFindings(vx, o)...)
		}
	}
	if o == nil {
		return fs
	}
	if o.EVPN {
		fs = append(fs, c.frrFindings()...)
	}
	ul, err := lifecycle.ReadUnderlay(o)
	if err != nil {
		return append(fs, Finding{Network: c.name, Problem: "the overlay's underlay cannot be read", Evidence: err.Error(), Fix: "see the evidence"})
	}
	if ul.MTU > 0 && ul.MTU-bridge.VXLANOverhead < minGuestMTU {
		fs = append(fs, Finding{Network: c.name,
			Problem:  fmt.Sprintf("the underlay's MTU leaves guests %d bytes after VXLAN's %d, less than %d (IPv6's minimum)", ul.MTU-bridge.VXLANOverhead, bridge.VXLANOverhead, minGuestMTU),
			Evidence: "underlay mtu " + strconv.Itoa(ul.MTU),
			Fix:      fmt.Sprintf("raise the underlay's MTU to at least %d on every host", minGuestMTU+bridge.VXLANOverhead)})
	}
	for _, p := range ul.Unrouted {
		fs = append(fs, Finding{Network: c.name,
			Problem:  "overlay peer " + p.String() + " is unreachable: guests there cannot be reached",
			Evidence: "ip route get " + p.String() + ": no route",
			Fix:      "give the underlay a route to " + p.String() + " (or correct peers in " + c.h.File.Path + ")"})
	}
	return fs
}

// floodFindings: the link's flood entries are not the file's peers (a host
// added to or removed from the overlay since it came up, or an entry deleted).
func (c *netCheck) floodFindings(vx netlink.Link, o *config.Overlay) []Finding {
	flood, _, err := bridge.Remotes(vx)
	if err != nil {
		return nil
	}
	var missing, extra []string
	for _, p := range o.Peers {
		if !slices.Contains(flood, p) {
			missing = append(missing, p.String())
		}
	}
	for _, p := range flood {
		if !slices.Contains(o.Peers, p) {
			extra = append(extra, p.String())
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	return []Finding{c.heal(Finding{Problem: "the overlay's peers differ from the file's: frames do not reach every host, or go to one no longer in it",
		Evidence: fmt.Sprintf("bridge fdb show dev %s: no flood entry for [%s], one for [%s] not in peers",
			vx.Attrs().Name, strings.Join(missing, " "), strings.Join(extra, " ")),
		Fix: "kvmnet doctor --fix (or kvmnet up " + c.name + ") sets them to the file's peers"})}
}
