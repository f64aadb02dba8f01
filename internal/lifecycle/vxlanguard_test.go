package lifecycle

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
)

// TestVXLANGuardRecord: a peers overlay's guard goes into the record and
// back as the rule engine's Overlay, and so does an evpn overlay's, whose
// VTEPs are no part of it; no overlay has none; a
// record edited by hand into nonsense gives none rather than failing.
func TestVXLANGuardRecord(t *testing.T) {
	peers := []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}
	n := config.Net{VXLAN: &config.Overlay{VNI: 4242, Port: 4789, Peers: peers}}
	g := vxlanGuard(n)
	if g != "4242 4789 198.51.100.2,198.51.100.3" {
		t.Errorf("vxlanGuard = %q", g)
	}
	if got, want := overlayOf(g), (&firewall.Overlay{VNI: 4242, Port: 4789, Peers: peers}); !reflect.DeepEqual(got, want) {
		t.Errorf("overlayOf(%q) = %v, want %v", g, got, want)
	}
	if g := vxlanGuard(config.Net{}); g != "" {
		t.Errorf("vxlanGuard without a VXLAN = %q, want none", g)
	}
	evpn := vxlanGuard(config.Net{VXLAN: &config.Overlay{VNI: 7, Port: 4789, EVPN: true}})
	if evpn != "7 4789 evpn" {
		t.Errorf("vxlanGuard of evpn = %q", evpn)
	}
	if got, want := overlayOf(evpn), (&firewall.Overlay{VNI: 7, Port: 4789, EVPN: true}); !reflect.DeepEqual(got, want) {
		t.Errorf("overlayOf(%q) = %v, want %v", evpn, got, want)
	}
	for _, bad := range []string{"", "x 4789", "7 70000 198.51.100.2", "7 4789 nonsense", "1 2 3 4"} {
		if o := overlayOf(bad); o != nil {
			t.Errorf("overlayOf(%q) = %v, want nil", bad, o)
		}
	}
}
