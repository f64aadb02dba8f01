package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestEVPNParsed(t *testing.T) {
	f, err := Parse("k.toml", []byte(`
[network.lab]
mode    = "nat"
address = "10.77.0.1/24"
[network.lab.vxlan]
id    = 4242
evpn  = true
local = "198.51.100.1"
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("lab", NAT)
	if err != nil {
		t.Fatal(err)
	}
	if o := n.VXLAN; o == nil || !o.EVPN || o.VNI != 4242 || len(o.Peers) != 0 || o.Local != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("lab's overlay = %+v", o)
	}
}

func TestEVPNErrorsNameFileLine(t *testing.T) {
	const head = "[network.a]\nmode = \"isolated\"\n[network.a.vxlan]\nid = 7\n"
	for _, tc := range []struct{ file, want string }{
		{head + "evpn = true\npeers = [\"198.51.100.2\"]\n", `k.toml:6: network.a.vxlan: peers: with evpn = true FRR's BGP EVPN finds the other hypervisors: leave peers out, or evpn`},
		{head + "peers = [\"198.51.100.2\"]\nevpn = true\n", `k.toml:5: network.a.vxlan: peers: with evpn = true`},
		{head + "evpn = \"yes\"\n", `k.toml:5: network.a.vxlan.evpn: "yes": want true or false`},
		{head + "evpn = false\n", `k.toml:3: network.a.vxlan: peers: missing: give the other hypervisors' underlay addresses, or evpn = true`},
		{head + "evpn = true\nlocal = \"127.0.0.1\"\n", `k.toml:6: network.a.vxlan.local: address "127.0.0.1": not a unicast address`},
		{head + "evpn = true\n[network.b.vxlan]\nid = 7\nevpn = true\n", `k.toml:7: network.b.vxlan.id: 7: want a VNI of its own on port 4789, not network a's`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q:\n got %v\nwant …%s…", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}
