package lifecycle

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/vtepset"
)

// vxlanGuard is n's VXLAN as the record keeps what its rules let through
// (state.Network.VXLANGuard): "VNI PORT PEER,PEER…", or "VNI PORT evpn"
// when its VTEPs come from BGP EVPN: those are in the kernel's FDB, not the
// file, and a set the resident process keeps current holds them
// (evpnLink); "" when n has no VXLAN.
func vxlanGuard(n config.Net) string {
	o := n.VXLAN
	if o == nil {
		return ""
	}
	if o.EVPN {
		return fmt.Sprintf("%d %d %s", o.VNI, o.Port, evpnGuard)
	}
	peers := make([]string, len(o.Peers))
	for i, p := range o.Peers {
		peers[i] = p.String()
	}
	return fmt.Sprintf("%d %d %s", o.VNI, o.Port, strings.Join(peers, ","))
}

// overlayOf reads a record's VXLANGuard back for the rule engine; nil when
// there is none, or it does not parse (a record is root's own file, so only
// a hand edit gets there, and the network then loses the guard's rules
// rather than a VM its network).
func overlayOf(guard string) *firewall.Overlay {
	f := strings.Fields(guard)
	if len(f) < 2 || len(f) > 3 {
		return nil
	}
	vni, err1 := strconv.ParseUint(f[0], 10, 32)
	port, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil {
		return nil
	}
	o := &firewall.Overlay{VNI: uint32(vni), Port: uint16(port)}
	if len(f) == 3 && f[2] == evpnGuard {
		o.EVPN = true
		return o
	}
	if len(f) == 3 {
		for _, s := range strings.Split(f[2], ",") {
			p, err := netip.ParseAddr(s)
			if err != nil {
				return nil
			}
			o.Peers = append(o.Peers, p)
		}
	}
	return o
}

// evpnGuard is the peers' field of an EVPN network's VXLANGuard.
const evpnGuard = "evpn"

// installedVTEPs gives an EVPN overlay the VTEPs zebra has installed on the
// network's VXLAN link (rec.VXLAN) now, the first elements of its set when
// Ensure makes it; none when the link is not there yet (a first up makes the
// rules beside it, and zebra fills it after) or cannot be read. An existing
// set is the resident's and keeps its own (firewall's ensureVTEPSet).
func installedVTEPs(o *firewall.Overlay, rec state.Network) {
	if o == nil || !o.EVPN || rec.VXLAN == "" {
		return
	}
	vx, err := bridge.Link(rec.VXLAN)
	if err != nil {
		return
	}
	o.Peers, _ = vtepset.Remotes(vx)
}

// evpnLink is the VXLAN link whose VTEPs the network's resident process (its
// DHCP/DNS daemon or its rule watcher) keeps in the network's VTEP set: an
// EVPN network's, when its rules are nftables'; "" otherwise, iptables
// having no set (see firewall.Overlay).
func (u *upCall) evpnLink() string {
	if u.n.VXLAN == nil || !u.n.VXLAN.EVPN || u.n.Mode == config.Bridged {
		return ""
	}
	if _, err := u.firewall(); err != nil || firewall.Backend(u.rec.Firewall) != firewall.NFTables {
		return ""
	}
	return u.n.VXLAN.Device
}
