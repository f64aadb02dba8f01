package config

import (
	"strings"
	"testing"
)

const lab6 = lab + "address6 = \"fd00:7::1/64\"\n"

// TestAddress6Mistakes: every bad address6 or ip6 is refused at load, naming the line and the key.
func TestAddress6Mistakes(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{lab + "address6 = \"10.7.0.1/24\"\n", `k.toml:3: network.lab.address6: address6 "10.7.0.1/24": want an IPv6 address with prefix`},
		{lab + "address6 = \"fd00:7::1\"\n", `want an IPv6 address with prefix`},
		{lab + "address6 = \"fd00:7::1/48\"\n", `address6 "fd00:7::1/48": prefix length must be 64`},
		{lab + "address6 = \"fd00:7::/64\"\n", `address6 "fd00:7::/64": host bits are zero (the subnet-router anycast address): want the gateway's address, like fd00:7::1`},
		{lab + "address6 = \"fe80::1/64\"\n", `address6 "fe80::1/64": link-local, multicast`},
		{lab + "address6 = \"ff02::1/64\"\n", `link-local, multicast`},
		{lab + "address6 = \"::ffff:10.0.0.1/64\"\n", `want an IPv6 address`},
		{lab6 + "[network.dmz]\naddress = \"10.8.0.1/24\"\naddress6 = \"fd00:7::2/64\"\n",
			`k.toml:3: network.lab.address6: fd00:7::1/64: want a prefix of its own: fd00:7::/64 is network dmz's`},
		{lab6 + host("52:54:00:00:00:01", "10.7.0.10", "a") + "ip6 = \"fd00:8::5\"\n", `k.toml:8: network.lab.host.ip6: fd00:8::5 is not a guest address of fd00:7::1/64`},
		{lab6 + host("52:54:00:00:00:01", "10.7.0.10", "a") + "ip6 = \"fd00:7::1\"\n", `network.lab.host.ip6: fd00:7::1 is not a guest address`},
		{lab + host("52:54:00:00:00:01", "10.7.0.10", "a") + "ip6 = \"fd00:7::5\"\n", `network.lab.host.ip6: fd00:7::5: the network has no address6`},
		{lab6 + host("52:54:00:00:00:01", "10.7.0.10", "a") + "ip6 = \"fd00:7::5\"\n" + host("52:54:00:00:00:02", "10.7.0.11", "b") + "ip6 = \"fd00:7::5\"\n",
			`k.toml:13: network.lab.host.ip6: "fd00:7::5" is also host 52:54:00:00:00:01's`},
		{lab6 + "upstreams = [\"fd00:7::1\"]\n", `network.lab.upstreams: [fd00:7::1]:53 is this network's own DNS forwarder`},
	} {
		_, err := Parse("k.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q:\n got %v\nwant …%s…", tc.file, err, tc.want)
		}
	}
}

// TestAddress6Resolved: address6 is off unless set, also on default, and reaches Net.
func TestAddress6Resolved(t *testing.T) {
	f, err := Parse("k.toml", []byte(lab6+host("52:54:00:00:00:01", "10.7.0.10", "a")+"ip6 = \"fd00:7::a\"\n[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("lab", NAT)
	if err != nil || n.Gateway6.String() != "fd00:7::1/64" || n.Subnet6().String() != "fd00:7::/64" || n.Hosts[0].IP6.String() != "fd00:7::a" {
		t.Fatalf("lab: %+v, %v", n, err)
	}
	if d, _ := f.Network("default", NAT); d.Gateway6.String() != "fd00:6b76:6d6e::1/64" {
		t.Errorf("default: address6 %s", d.Gateway6)
	}
	empty, _ := Parse("k.toml", nil)
	if d, _ := empty.Network("default", NAT); d.Gateway6.IsValid() {
		t.Errorf("default with no file: address6 %s, want off", d.Gateway6)
	}
	if i, _ := f.Network("lab", Isolated); i.Gateway6.IsValid() {
		// mode from the file is empty here, so the helper's isolated applies
		t.Errorf("isolated: address6 %s, want none", i.Gateway6)
	}
}
