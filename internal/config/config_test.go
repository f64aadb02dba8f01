package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDefaultNetworkNeedsNoFile(t *testing.T) {
	f, err := Load("/nonexistent/kvmnet.toml")
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("", NAT)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "br0" || n.Gateway != DefaultGateway || n.Mode != NAT || !n.DHCP || !n.DNS {
		t.Errorf("default nat network = %+v", n)
	}
	if n.RangeFrom != netip.MustParseAddr("192.168.100.2") || n.RangeTo != netip.MustParseAddr("192.168.100.254") {
		t.Errorf("default range = %s-%s", n.RangeFrom, n.RangeTo)
	}
	iso, err := f.Network("", Isolated)
	if err != nil {
		t.Fatal(err)
	}
	if iso.Gateway.IsValid() || iso.DHCP || iso.Bridge != "br0" {
		t.Errorf("default isolated network = %+v", iso)
	}
}

const sample = `
lease_dir = "/tmp/leases"

[network.lab]
bridge = "kvlab0"
mode = "host-only"
address = "10.77.0.1/24"
mtu = 9000
dhcp_from = "10.77.0.100"
dhcp_to = "10.77.0.199"
lease_time = "30m"
domain = "lab.example"
upstreams = ["10.0.0.53", "10.0.0.54:5353"]

[[network.lab.host]]
mac = "52:54:00:00:00:01"
ip = "10.77.0.10"
name = "web"

[network.iso]
mode = "isolated"
`

func TestParseNamedNetworks(t *testing.T) {
	f, err := Parse("kvmnet.toml", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("lab", NAT)
	if err != nil {
		t.Fatal(err)
	}
	if n.Mode != HostOnly || n.Bridge != "kvlab0" || n.MTU != 9000 || n.LeaseTime.Minutes() != 30 ||
		n.Upstreams[1] != "10.0.0.54:5353" || n.Upstreams[0] != "10.0.0.53:53" || len(n.Hosts) != 1 ||
		n.LeaseFile != "/tmp/leases/lab.leases" || n.RangeFrom.String() != "10.77.0.100" {
		t.Errorf("lab = %+v", n)
	}
	iso, err := f.Network("iso", NAT)
	if err != nil || iso.Mode != Isolated || iso.Bridge != "iso" {
		t.Errorf("iso = %+v, %v", iso, err)
	}
	if _, err := f.Network("nope", NAT); err == nil || !strings.Contains(err.Error(), "network nope: not defined in kvmnet.toml") {
		t.Errorf("undefined network: %v", err)
	}
}

func TestBridgedAndPorts(t *testing.T) {
	f, err := Parse("k.toml", []byte("[network.lan]\nbridge = \"br-lan\"\nmode = \"bridged\"\n[network.ct]\nports = \"any\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	lan, err := f.Network("lan", NAT)
	if err != nil || lan.Mode != Bridged || lan.Bridge != "br-lan" || lan.Gateway.IsValid() || lan.DHCP || lan.DNS || lan.Ports != TapPorts {
		t.Errorf("lan = %+v, %v", lan, err)
	}
	ct, err := f.Network("ct", Isolated)
	if err != nil || ct.Ports != AnyPorts {
		t.Errorf("ct = %+v, %v", ct, err)
	}
}

func TestParseErrorsNameFileLineAndValue(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"[network.a]\nbridge = \"x\"\naddress = \"10.0.0.1\"\n", `k.toml:3: network.a.address: address "10.0.0.1": want an IPv4 address with prefix`},
		{"[network.a]\nmode = \"bridge\"\n", `k.toml:2: network.a.mode: mode "bridge": want isolated, hostonly, nat or bridged`},
		{"[network.a]\nports = \"veth\"\n", `k.toml:2: network.a.ports: ports "veth": want tap or any`},
		{"[network.a]\nmtu = 10\n", `k.toml:2: network.a.mtu: mtu 10: want an integer from 576 to 65521`},
		{"[network.a]\nbridge = \"a-very-long-bridge-name\"\n", `k.toml:2: network.a.bridge: interface name "a-very-long-bridge-name" is longer than 15 bytes`},
		{"[network.a]\nbridge = \"b r\"\n", `contains '/', ':' or white space`},
		{"[network.a]\nbridge = \"br+\"\n", `k.toml:2: network.a.bridge: bridge name "br+": want letters, digits`},
		{"[network.a]\n\ncolour = \"red\"\n", `k.toml:3: unknown key "network.a.colour"`},
		{"[network.A]\n", `k.toml:1: network A: network name "A"`},
		{"[network.a\n", `k.toml:2: expected '.' or ']'`},
		{"[network.a]\naddress = \"10.0.0.1/24\"\ndhcp_from = \"10.1.0.5\"\ndhcp_to = \"10.0.0.9\"\n", `k.toml:3: network.a.dhcp_from: dhcp range address 10.1.0.5: not inside`},
		{"[network.a]\naddress = \"10.0.0.0/24\"\n", `is the network or broadcast address`},
		{"[network.a]\naddress = \"10.0.0.1/24\"\n[network.b]\naddress = \"10.0.0.129/25\"\n", `k.toml:4: network.b.address: 10.0.0.129/25: want a subnet of its own: 10.0.0.128/25 overlaps network a's 10.0.0.0/24`},
		{"[network.a]\nbridge = \"x\"\n[network.b]\nbridge = \"x\"\n", `k.toml:4: network.b.bridge: x: want a bridge of its own, not network a's`},
		{"[network.a]\naddress = \"10.0.0.1/24\"\n[[network.a.host]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.1.5\"\n", `k.toml:5: network.a.host.ip: 10.0.1.5 is not a guest address of 10.0.0.1/24`},
		{"[network.a]\nlease_time = \"5s\"\n", `duration "5s": want`},
		{"[network.lab]\n[network.b]\nbridge = \"lab\"\n", `k.toml:3: network.b.bridge: lab: want a bridge of its own, not network lab's`},
		{"[network.default]\n[network.b]\nbridge = \"br0\"\n", `k.toml:3: network.b.bridge: br0: want a bridge of its own, not network default's`},
		// The network that writes the key is blamed, not the one left at its default.
		{"[network.default]\n[network.b]\naddress = \"192.168.100.5/24\"\n", `k.toml:3: network.b.address: 192.168.100.5/24: want a subnet of its own: 192.168.100.0/24 overlaps network default's 192.168.100.0/24`},
		{"[network.b]\naddress = \"192.168.100.5/24\"\n[network.default]\n", `k.toml:2: network.b.address: 192.168.100.5/24: want a subnet of its own`},
		{"[network.z]\nbridge = \"x\"\n[network.a]\nbridge = \"x\"\n", `k.toml:2: network.z.bridge: x: want a bridge of its own, not network a's`},
		{"[[network.default.host]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.1.5\"\n",
			`k.toml:3: network.default.host.ip: 10.0.1.5 is not a guest address of 192.168.100.1/24`},
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

// TestDefaultNetworkStaticHosts: the default network's hosts are checked
// against the address it has without one in the file.
func TestDefaultNetworkStaticHosts(t *testing.T) {
	f, err := Parse("k.toml", []byte("[[network.default.host]]\nmac = \"52:54:00:00:00:99\"\nip = \"192.168.100.99\"\nname = \"fixed\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network(DefaultNetwork, NAT)
	if err != nil {
		t.Fatal(err)
	}
	if n.Gateway != DefaultGateway || n.Bridge != DefaultBridge || len(n.Hosts) != 1 {
		t.Errorf("default network with a static host: %+v", n)
	}
}

// TestRoutedNetworkNeedsAddress: a nat or hostonly network without an
// address is broken, at its mode's line, or at its table's when the helper
// gives the mode.
func TestRoutedNetworkNeedsAddress(t *testing.T) {
	want := `k.toml:3: network.a.mode: "nat": want an address beside it (e.g. address = "10.0.0.1/24")`
	f, err := Parse("k.toml", []byte("[network.a]\nbridge = \"kva\"\nmode = \"nat\"\n"))
	if err == nil || err.Error() != want {
		t.Errorf("Parse: %v, want %s", err, want)
	}
	if _, err := f.Network("a", NAT); err == nil || err.Error() != want {
		t.Errorf("Network: %v, want %s", err, want)
	}
	f, err = Parse("k.toml", []byte("[network.a]\nbridge = \"kva\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = `k.toml:1: network.a.address: missing: want one for mode hostonly (the helper's), e.g. address = "10.0.0.1/24"`
	if _, err := f.Network("a", HostOnly); err == nil || err.Error() != want {
		t.Errorf("Network(a, hostonly): %v, want %s", err, want)
	}
	if _, err := f.Network("a", Isolated); err != nil {
		t.Errorf("Network(a, isolated): %v", err)
	}
}

func TestFromProgram(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/libexec/kvmnet-natup":     "",
		"/usr/libexec/kvmnet-natup@lab": "lab",
		"/etc/qemu-ifup":                "",
		"kvmnet-ifdown@a@b":             "b",
	} {
		if got := FromProgram(in); got != want {
			t.Errorf("FromProgram(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckIfName(t *testing.T) {
	for _, bad := range []string{"", "0123456789abcdef", "a/b", "a b", "a\tb", "..", "a:b"} {
		if CheckIfName(bad) == nil {
			t.Errorf("CheckIfName(%q) accepted", bad)
		}
	}
	for _, good := range []string{"vnet0", "tap-abc_1", "012345678901234"} {
		if err := CheckIfName(good); err != nil {
			t.Errorf("CheckIfName(%q): %v", good, err)
		}
	}
}

// TestDHCPRouter: DHCP hands out a default route on nat networks only, unless
// dhcp_router says otherwise.
func TestDHCPRouter(t *testing.T) {
	f, err := Parse("kvmnet.toml", []byte(sample+"\n[network.ho]\nmode = \"hostonly\"\naddress = \"10.78.0.1/24\"\ndhcp_router = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mode Mode
		want bool
	}{{"default", NAT, true}, {"default", HostOnly, false}, {"lab", NAT, false}, {"ho", NAT, true}} {
		n, err := f.Network(tc.name, tc.mode)
		if err != nil || n.Router != tc.want {
			t.Errorf("network %s (%s): router %v, want %v (%v)", tc.name, tc.mode, n.Router, tc.want, err)
		}
	}
}

func TestFirewall(t *testing.T) {
	f, err := Parse("k.toml", []byte("firewall = \"nftables\"\n[network.lab]\nmode = \"isolated\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Network("lab", ""); err != nil || n.Firewall != "nftables" {
		t.Errorf("lab = %+v, %v; want firewall nftables", n, err)
	}
	_, err = Parse("k.toml", []byte("firewall = \"pf\"\n"))
	if err == nil || !strings.Contains(err.Error(), "k.toml:1") || !strings.Contains(err.Error(), `firewall "pf"`) {
		t.Errorf("firewall = pf: %v", err)
	}
}
