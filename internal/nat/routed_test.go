package nat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// routedNet is a routed network beside two other kvmnet networks (its peers).
var routedNet = Network{Name: "lab", Bridge: "kvmbr5", Mode: Routed, Subnet: netip.MustParsePrefix("10.55.0.0/24"),
	Gateway: netip.MustParseAddr("10.55.0.1"), Services: true, Peers: []string{"kvmbr0", "kvmbr1"}}

// TestGoldenRouted pins a routed network's iptables and ip6tables rules, and
// a nat network's with a routed peer: no masquerade, anything to the subnet
// let in, the peers refused first. A second Ensure changes nothing.
func TestGoldenRouted(t *testing.T) {
	natPeer := netA
	natPeer.Peers = []string{"kvmbr5"}
	for _, fx := range []struct {
		golden string
		n      Network
		six    bool
	}{
		{"routed-services", routedNet, false},
		{"routed-services-ipv6", with6(routedNet, "fd00:6b76:55::/64", "fd00:6b76:55::1"), true},
		{"nat-routed-peer", natPeer, false},
	} {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			for _, tool := range []string{"iptables", "ip6tables"} {
				ns.MustRun(tool, "-P", "FORWARD", "ACCEPT")
				ns.MustRun(tool, "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
			}
			if r := ensure(t, ns, fx.n); !r.Changed {
				t.Fatal("Ensure on an empty namespace changed nothing")
			}
			peers := "# peers=" + strings.Join(fx.n.Peers, ",") + "\n"
			if fx.six {
				golden(t, fx.golden, "ip6tables-save", goldenHeader6(fx.n)+peers+ns.Ip6tablesSave())
			} else {
				golden(t, fx.golden, "iptables-save", goldenHeader(fx.n)+peers+ns.IptablesSave())
			}
			if r := ensure(t, ns, fx.n); r.Changed {
				t.Error("second Ensure changed something: a rule is not spelt as iptables-save prints it")
			}
		})
	}
}

// TestRoutedRefusesForwards: port forwards are DNAT into a nat network only.
func TestRoutedRefusesForwards(t *testing.T) {
	n := withForwards(routedNet)
	if err := n.Validate(); err == nil || !strings.Contains(err.Error(), "need mode nat") {
		t.Fatalf("Validate of a routed network with forwards: %v", err)
	}
}
