package config

import (
	"slices"
	"strings"
	"testing"
)

const routedFile = `[network.lab]
mode    = "routed"
address = "10.55.0.1/24"
[network.natty]
address = "10.56.0.1/24"
[network.lan]
mode    = "bridged"
bridge  = "br-lan"
`

// TestRouted: a routed network resolves as nat does (DHCP, DNS, the gateway
// as the guests' router) and lists every other kvmnet network's bridge as a
// peer, the built-in default's included but not a bridged LAN's; any other
// network lists the routed one's.
func TestRouted(t *testing.T) {
	f, err := Parse("k.toml", []byte(routedFile))
	if err != nil {
		t.Fatal(err)
	}
	lab, err := f.Network("lab", NAT)
	if err != nil || lab.Mode != RoutedMode || !lab.DHCP || !lab.DNS || !lab.Router || !lab.Mode.Routed() || !lab.Mode.Forwards() {
		t.Fatalf("lab = %+v, %v", lab, err)
	}
	if want := []string{"br0", "natty"}; !slices.Equal(lab.Peers, want) {
		t.Errorf("lab's peers %q, want %q", lab.Peers, want)
	}
	natty, err := f.Network("natty", NAT)
	if err != nil || !slices.Equal(natty.Peers, []string{"lab"}) {
		t.Errorf("natty = %+v, %v; want peers [lab]", natty, err)
	}
	lan, err := f.Network("lan", NAT)
	if err != nil || lan.Peers != nil {
		t.Errorf("lan = %+v, %v; want no peers", lan, err)
	}
}

// TestRoutedRefusesForward: a forward on a routed network is an error at its line.
func TestRoutedRefusesForward(t *testing.T) {
	file := routedFile + "[[network.lab.forward]]\nport = 8080\nto = \"10.55.0.5:80\"\n"
	_, err := Parse("k.toml", []byte(file))
	want := `k.toml:11: network.lab.forward.to: a routed network's guests are reached by their own addresses`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %s…", err, want)
	}
}
