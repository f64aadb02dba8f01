package lifecycle

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
)

// vxlanGuard is n's VXLAN as the record keeps what its rules let through
// (state.Network.VXLANGuard): "VNI PORT PEER,PEER…", "" when n has none or
// its VTEPs come from BGP EVPN: those are in the kernel's FDB, not the file,
// and following them is the EVPN VTEP filter's (docs/evpn.md), not done.
func vxlanGuard(n config.Net) string {
	o := n.VXLAN
	if o == nil || o.EVPN {
		return ""
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
