package firewall

import (
	"net/netip"
	"testing"
)

// routedFixtures: a routed network beside two peers, with and without IPv6,
// and a nat network with a routed peer.
var routedFixtures = []fixture{
	{"nft-routed-services", Network{Name: "lab", Bridge: "kvmbr5", Mode: Routed, Gateway: netip.MustParsePrefix("10.55.0.1/24"), Services: true, Peers: []string{"kvmbr0", "kvmbr1"}}},
	{"nft-routed-services-ipv6", Network{Name: "lab", Bridge: "kvmbr5", Mode: Routed, Gateway: netip.MustParsePrefix("10.55.0.1/24"), Services: true,
		Gateway6: netip.MustParsePrefix("fd00:6b76:55::1/64"), Peers: []string{"kvmbr0"}}},
	{"nft-nat-routed-peer", Network{Name: "a", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("10.10.0.1/24"), Services: true, Peers: []string{"kvmbr5"}}},
}

// TestNFTRoutedGolden pins the routed rule sets as TestNFTGolden does the
// others: no masquerade chain, anything to the subnet let into the bridge,
// the peers refused before any return.
func TestNFTRoutedGolden(t *testing.T) { goldenRoundTrip(t, routedFixtures) }

// TestRoutedRefusesForwardsNFT: port forwards are DNAT into a nat network only.
func TestRoutedRefusesForwardsNFT(t *testing.T) {
	n := routedFixtures[0].n
	n.Forwards = []PortForward{{Proto: "tcp", First: 80, Last: 80, Guest: netip.MustParseAddr("10.55.0.5"), GuestPort: 80}}
	if err := n.Validate(); err == nil {
		t.Fatal("Validate took a routed network with a forward")
	}
}
