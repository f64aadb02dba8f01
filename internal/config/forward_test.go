package config

import (
	"net/netip"
	"strings"
	"testing"
)

const forwards = `
[network.default]

[[network.default.host]]
mac = "52:54:00:00:00:15"
ip = "192.168.100.21"
name = "web"

[[network.default.forward]]
proto = "tcp"
port = 8080
to = "192.168.100.21:80"

[[network.default.forward]]
proto = "udp"
port = "5000-5002"
to = "web:6000-6002"
host_ip = "203.0.113.2"

[[network.default.forward]]
proto = "udp"
port = 8080
to = "web:80"
`

// TestForwards: a [network.default] that only adds hosts and forwards keeps
// every default, and forwards resolve names of static hosts.
func TestForwards(t *testing.T) {
	f, err := Parse("k.toml", []byte(forwards))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network(DefaultNetwork, NAT)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != DefaultBridge || n.Gateway != DefaultGateway || !n.DHCP || !n.DNS || n.Domain != DefaultDomain {
		t.Errorf("default network with forwards lost a default: %+v", n)
	}
	var got []string
	for _, fw := range n.Forwards {
		got = append(got, fw.String())
	}
	want := "tcp 8080 -> 192.168.100.21:80|udp 203.0.113.2:5000-5002 -> 192.168.100.21:6000-6002|udp 8080 -> 192.168.100.21:80"
	if strings.Join(got, "|") != want {
		t.Errorf("forwards:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if n.Forwards[1].HostIP != netip.MustParseAddr("203.0.113.2") {
		t.Errorf("host_ip = %s", n.Forwards[1].HostIP)
	}
	if _, err := f.Network(DefaultNetwork, Isolated); err == nil || !strings.Contains(err.Error(), "forwards need mode nat") {
		t.Errorf("isolated default network with forwards: %v", err)
	}
}

// TestForwardErrors: every bad forward is one line naming the file, the line and why.
func TestForwardErrors(t *testing.T) {
	fw := func(body string) string { return "[network.default]\n[[network.default.forward]]\n" + body }
	for _, tc := range []struct{ file, want string }{
		{fw("proto = \"sctp\"\nport = 1\nto = \"192.168.100.5:1\"\n"), `k.toml:3: network.default.forward.proto: proto "sctp": want "tcp" or "udp"`},
		{fw("proto = \"tcp\"\nport = 0\nto = \"192.168.100.5:1\"\n"), `k.toml:4: network.default.forward.port: port 0: want 1 to 65535`},
		{fw("proto = \"tcp\"\nport = 70000\nto = \"192.168.100.5:1\"\n"), `k.toml:4: network.default.forward.port: port 70000: want 1 to 65535`},
		{fw("proto = \"tcp\"\nport = \"9-3\"\nto = \"192.168.100.5:1\"\n"), `k.toml:4: network.default.forward.port: port range "9-3": ends before it starts`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:0\"\n"), `k.toml:5: network.default.forward.to: "192.168.100.5:0": port "0": want a port`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5\"\n"), `k.toml:5: network.default.forward.to: "192.168.100.5": want ADDRESS:PORT`},
		{fw("proto = \"tcp\"\nport = \"80-81\"\nto = \"192.168.100.5:80-82\"\n"), `k.toml:5: network.default.forward.to: "192.168.100.5:80-82": 3 ports, but port 80-81 has 2`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.101.5:80\"\n"), `k.toml:5: network.default.forward.to: "192.168.101.5:80": 192.168.101.5 is outside the network's subnet 192.168.100.0/24`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.1:80\"\n"), `192.168.100.1 is the gateway, not a guest`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.255:80\"\n"), `is the network or broadcast address`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"nosuch:80\"\n"), `"nosuch" is neither an IP address nor a static host of the network`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\nhost_ip = \"::1\"\n"), `k.toml:6: network.default.forward.host_ip: address "::1": IPv6 loopback, multicast or unspecified cannot be forwarded`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\nhost_ip = \"2001:db8::2\"\n"),
			`k.toml:6: network.default.forward.host_ip: "192.168.100.5:80": host_ip and the guest must be of one family: host_ip 2001:db8::2 is IPv6, 192.168.100.5 IPv4`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6e::21]:80\"\n"),
			`k.toml:5: network.default.forward.to: "[fd00:6b76:6d6e::21]:80": fd00:6b76:6d6e::21: the network has no IPv6 prefix (set address6)`},
		{"[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6f::21]:80\"\n",
			`k.toml:6: network.default.forward.to: "[fd00:6b76:6d6f::21]:80": fd00:6b76:6d6f::21 is outside the network's IPv6 prefix fd00:6b76:6d6e::/64`},
		{"[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6e::1]:80\"\n", `fd00:6b76:6d6e::1 is the gateway, not a guest`},
		{"[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6e::21]:80\"\nhost_ip = \"203.0.113.2\"\n",
			`k.toml:7: network.default.forward.host_ip: "[fd00:6b76:6d6e::21]:80": host_ip and the guest must be of one family: host_ip 203.0.113.2 is IPv4, fd00:6b76:6d6e::21 IPv6`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"fd00:6b76:6d6e::21:80\"\n"), `k.toml:5: network.default.forward.to: "fd00:6b76:6d6e::21:80": want ADDRESS:PORT, [IPV6]:PORT or HOSTNAME:PORT`},
		{"[network.default]\n[[network.default.host]]\nmac = \"52:54:00:00:00:15\"\nip = \"192.168.100.21\"\nname = \"web\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"web:80\"\nhost_ip = \"2001:db8::2\"\n",
			`k.toml:10: network.default.forward.host_ip: "web:80": host_ip and the guest must be of one family: host_ip 2001:db8::2 is IPv6, host web has no ip6`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = \"70-90\"\nto = \"192.168.100.6:70-90\"\n"),
			`k.toml:8: network.default.forward.port: tcp 70-90 is already forwarded by network default's forward 1 (tcp 80 -> 192.168.100.5:80)`},
		{"[network.lab]\nmode = \"hostonly\"\naddress = \"10.0.0.1/24\"\n[[network.lab.forward]]\nproto = \"tcp\"\nport = 80\nto = \"10.0.0.5:80\"\n",
			`k.toml:7: network.lab.forward.to: a forward needs a nat network, this one is hostonly`},
		{"[network.lab]\nmode = \"nat\"\naddress = \"10.0.0.1/24\"\n[[network.lab.forward]]\nproto = \"udp\"\nport = 53\nto = \"10.0.0.5:53\"\nhost_ip = \"203.0.113.2\"\n" +
			"[network.b]\nmode = \"nat\"\naddress = \"10.1.0.1/24\"\n[[network.b.forward]]\nproto = \"udp\"\nport = 53\nto = \"10.1.0.5:53\"\n",
			`k.toml:6: network.lab.forward.port: udp 53 is already forwarded by network b's forward 1`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q:\n got %v\nwant …%s…", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
	// Two forwards on different host addresses, or protocols, share a port.
	ok := fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\nhost_ip = \"10.9.0.1\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.100.6:80\"\nhost_ip = \"10.9.0.2\"\n" +
		"[[network.default.forward]]\nproto = \"udp\"\nport = 80\nto = \"192.168.100.6:80\"\n")
	if _, err := Parse("k.toml", []byte(ok)); err != nil {
		t.Errorf("forwards on two host addresses: %v", err)
	}
	// An IPv4 and an IPv6 forward share a port; a dual-stack host's forward
	// holds it in both families.
	six := "[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n[[network.default.host]]\nmac = \"52:54:00:00:00:15\"\nip = \"192.168.100.21\"\nip6 = \"fd00:6b76:6d6e::21\"\nname = \"web\"\n" +
		"[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\n[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"[fd00:6b76:6d6e::5]:80\"\n"
	if _, err := Parse("k.toml", []byte(six)); err != nil {
		t.Errorf("an IPv4 and an IPv6 forward of one port: %v", err)
	}
	dual := six + "[[network.default.forward]]\nproto = \"tcp\"\nport = 80\nto = \"web:80\"\n"
	if _, err := Parse("k.toml", []byte(dual)); err == nil || !strings.Contains(err.Error(), "k.toml:18: network.default.forward.port: tcp 80 is already forwarded by network default's forward 1") {
		t.Errorf("a dual-stack forward over an IPv4 one: %v", err)
	}
}

// TestForwards6: a static host with ip and ip6 forwards in both families
// unless host_ip picks one; IPv6 literals and host addresses are bracketed.
func TestForwards6(t *testing.T) {
	file := `
[network.default]
address6 = "fd00:6b76:6d6e::1/64"

[[network.default.host]]
mac = "52:54:00:00:00:15"
ip = "192.168.100.21"
ip6 = "fd00:6b76:6d6e::21"
name = "web"

[[network.default.forward]]
proto = "tcp"
port = 8080
to = "web:80"

[[network.default.forward]]
proto = "tcp"
port = 8443
to = "web:443"
host_ip = "2001:db8::2"

[[network.default.forward]]
proto = "udp"
port = "5000-5001"
to = "[fd00:6b76:6d6e::22]:6000-6001"
`
	f, err := Parse("k.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network(DefaultNetwork, NAT)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fw := range n.Forwards {
		got = append(got, fw.String())
	}
	want := "tcp 8080 -> 192.168.100.21:80|tcp 8080 -> [fd00:6b76:6d6e::21]:80|tcp [2001:db8::2]:8443 -> [fd00:6b76:6d6e::21]:443|udp 5000-5001 -> [fd00:6b76:6d6e::22]:6000-6001"
	if strings.Join(got, "|") != want {
		t.Errorf("forwards:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
}
