package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestVXLANParsed(t *testing.T) {
	f, err := Parse("k.toml", []byte(`
[network.lab]
mode = "isolated"

[network.lab.vxlan]
id    = 4242                              # VNI
peers = ["198.51.100.2", "198.51.100.3"]
local = "198.51.100.1"
dev   = "eth1"

[network.other.vxlan]
id    = 4242
port  = 8472
peers = ["198.51.100.2"]
`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("lab", Isolated)
	if err != nil {
		t.Fatal(err)
	}
	o := n.VXLAN
	if o == nil || o.VNI != 4242 || o.Port != VXLANPort || len(o.Peers) != 2 || o.Peers[1] != netip.MustParseAddr("198.51.100.3") ||
		o.Local != netip.MustParseAddr("198.51.100.1") || o.Dev != "eth1" || o.Device != "vx-lab" {
		t.Errorf("lab's overlay = %+v", o)
	}
	if other, err := f.Network("other", Isolated); err != nil || other.VXLAN.Port != 8472 {
		t.Errorf("other = %+v, %v", other.VXLAN, err)
	}
	if plain, err := f.Network("default", NAT); err != nil || plain.VXLAN != nil {
		t.Errorf("default has an overlay %+v, %v", plain.VXLAN, err)
	}
}

func TestVXLANErrorsNameFileLineAndValue(t *testing.T) {
	const head = "[network.a]\nmode = \"isolated\"\n[network.a.vxlan]\n"
	for _, tc := range []struct{ file, want string }{
		{head + "id = 0\npeers = [\"198.51.100.2\"]\n", `k.toml:4: network.a.vxlan.id: id 0: want a VNI, an integer from 1 to 16777215`},
		{head + "id = 16777216\npeers = [\"198.51.100.2\"]\n", `k.toml:4: network.a.vxlan.id: id 16777216: want a VNI`},
		{head + "id = \"7\"\npeers = [\"198.51.100.2\"]\n", `k.toml:4: network.a.vxlan.id: id 7: want a VNI`},
		{head + "peers = [\"198.51.100.2\"]\n", `k.toml:3: network.a.vxlan: id: missing`},
		{head + "id = 7\n", `k.toml:3: network.a.vxlan: peers: missing`},
		{head + "id = 7\npeers = []\n", `k.toml:5: network.a.vxlan: peers: missing`},
		{head + "id = 7\npeers = [\"198.51.100\"]\n", `k.toml:5: network.a.vxlan.peers: address "198.51.100": want an IPv4 address`},
		{head + "id = 7\npeers = [\"2001:db8::1\"]\n", `want an IPv4 address`},
		{head + "id = 7\npeers = [\"239.1.1.1\"]\n", `k.toml:5: network.a.vxlan.peers: address "239.1.1.1": not a unicast address`},
		{head + "id = 7\npeers = [\"127.0.0.1\"]\n", `address "127.0.0.1": not a unicast address`},
		{head + "id = 7\npeers = [\"0.0.0.0\"]\n", `address "0.0.0.0": not a unicast address`},
		{head + "id = 7\npeers = [\"255.255.255.255\"]\n", `not a unicast address`},
		{head + "id = 7\npeers = [\"198.51.100.2\", \"198.51.100.2\"]\n", `k.toml:5: network.a.vxlan: peers: 198.51.100.2 given twice`},
		{head + "id = 7\npeers = [\"198.51.100.2\"]\nlocal = \"198.51.100.2\"\n", `k.toml:5: network.a.vxlan: peers: 198.51.100.2 is also local`},
		{head + "id = 7\npeers = [\"198.51.100.2\"]\nport = 0\n", `k.toml:6: network.a.vxlan.port: port 0: want a UDP port`},
		{head + "id = 7\npeers = [\"198.51.100.2\"]\ndev = \"a/b\"\n", `k.toml:6: network.a.vxlan.dev: interface name "a/b"`},
		{head + "id = 7\npeers = [\"198.51.100.2\"]\ngroup = \"239.1.1.1\"\n", `k.toml:6: unknown key "network.a.vxlan.group"`},
		{head + "id = 7\npeers = [\"198.51.100.2\"]\n[network.b.vxlan]\nid = 7\npeers = [\"198.51.100.3\"]\n",
			`k.toml:7: network.b.vxlan.id: 7: want a VNI of its own on port 4789, not network a's: one VNI per network`},
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

func TestVXLANDevice(t *testing.T) {
	a, b := VXLANDevice("averylongname-1"), VXLANDevice("averylongname-2")
	if VXLANDevice("lab") != "vx-lab" || len(a) > 15 || a == b || CheckIfName(a) != nil {
		t.Errorf("VXLANDevice: lab %q, long %q and %q", VXLANDevice("lab"), a, b)
	}
}
