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
		{fw("proto = \"tcp\"\nport = 80\nto = \"nosuch:80\"\n"), `"nosuch" is neither an IPv4 address nor a static host of the network`},
		{fw("proto = \"tcp\"\nport = 80\nto = \"192.168.100.5:80\"\nhost_ip = \"::1\"\n"), `k.toml:6: network.default.forward.host_ip: address "::1": want an IPv4 address`},
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
}
