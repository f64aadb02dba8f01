package ctl

import (
	"net"
	"net/netip"
)

var (
	testGW     = netip.MustParseAddr("192.168.100.1")
	testStatic = Host{MAC: mustMAC("52:54:00:00:00:99"), IP: netip.MustParseAddr("192.168.100.99"), Name: "fixed"}
)

// testConfig is a /24 network with one static host, defaults filled.
func testConfig() Config {
	c := Config{
		Network: "test", Bridge: "br0", Gateway: netip.MustParsePrefix("192.168.100.1/24"),
		DHCP: true, DNS: true, Hosts: []Host{testStatic},
	}
	c.Defaults()
	return c
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// macN is a distinct locally administered MAC for client n.
func macN(n int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x01, byte(n >> 16), byte(n >> 8), byte(n)}
}
