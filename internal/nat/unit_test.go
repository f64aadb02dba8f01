package nat

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRuleKey(t *testing.T) {
	same := [][2]string{
		{`-s 10.0.0.0/24 -d 1.2.3.4 -m comment --comment "kvmnet:x" -j RETURN`, `-m comment --comment kvmnet:x --destination 1.2.3.4/32 --source 10.0.0.0/24 -j RETURN`},
		{`-i br0 -p udp -m udp --dport 67 -m comment --comment "kvmnet:x" -j ACCEPT`, `-p udp --dport 67 -i br0 -m comment --comment kvmnet:x -j ACCEPT`},
		{`-s 10.0.0.0/24 ! -d 10.0.0.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535`, `-p tcp ! -d 10.0.0.0/24 -s 10.0.0.0/24 -j MASQUERADE --to-ports 1024-65535`},
	}
	for _, p := range same {
		a, _ := splitArgs(p[0])
		b, _ := splitArgs(p[1])
		if ruleKey(a) != ruleKey(b) {
			t.Errorf("different keys:\n%s\n%s", ruleKey(a), ruleKey(b))
		}
	}
	differ := [][2]string{
		{`-s 10.0.0.0/24 ! -d 10.0.0.0/24 -j MASQUERADE`, `-s 10.0.0.0/24 -d 10.0.0.0/24 -j MASQUERADE`},
		{`-i br0 -j ACCEPT`, `-o br0 -j ACCEPT`},
		{`-i br0 -p udp --dport 67 -j ACCEPT`, `-i br0 -p udp --dport 68 -j ACCEPT`},
		{`-j MASQUERADE`, `-j MASQUERADE --to-ports 1024-65535`},
	}
	for _, p := range differ {
		a, _ := splitArgs(p[0])
		b, _ := splitArgs(p[1])
		if ruleKey(a) == ruleKey(b) {
			t.Errorf("same key for %q and %q", p[0], p[1])
		}
	}
}

func TestSplitArgs(t *testing.T) {
	got, err := splitArgs(`-m comment --comment "a \"b\" c" -j X`)
	if err != nil || strings.Join(got, "|") != `-m|comment|--comment|a "b" c|-j|X` {
		t.Fatalf("splitArgs: %q, %v", got, err)
	}
	if q := quoteArgs(got); q != `-m comment --comment "a \"b\" c" -j X` {
		t.Fatalf("quoteArgs: %s", q)
	}
	if _, err := splitArgs(`--comment "open`); err == nil {
		t.Fatal("unterminated quote accepted")
	}
}

func TestValidate(t *testing.T) {
	ok := Network{Name: "lab-1", Bridge: "br0", Mode: NAT, Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1")}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(n *Network){
		func(n *Network) { n.Name = "Lab" },
		func(n *Network) { n.Name = "a23456789012345x" },
		func(n *Network) { n.Bridge = "br0\n-F" },
		func(n *Network) { n.Bridge = "-br" },
		func(n *Network) { n.Bridge = "br+" },
		func(n *Network) { n.Bridge = "" },
		func(n *Network) { n.Subnet = netip.MustParsePrefix("10.0.0.1/24") },
		func(n *Network) { n.Subnet = netip.Prefix{} },
		func(n *Network) { n.Subnet = netip.MustParsePrefix("fd00::/64") },
		func(n *Network) { n.Mode = 7 },
		func(n *Network) { n.Gateway = netip.Addr{} },
		func(n *Network) { n.Gateway = netip.MustParseAddr("10.0.1.1") },
		func(n *Network) { n.Mode, n.Gateway = HostOnly, netip.Addr{} },
		func(n *Network) { n.Gateway = netip.MustParseAddr("fd00::1") },
	} {
		n := ok
		bad(&n)
		if n.Validate() == nil {
			t.Errorf("Validate accepted %+v", n)
		}
	}
	iso := Network{Name: "iso", Bridge: "br1", Mode: Isolated}
	if err := iso.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestChainNameLength(t *testing.T) {
	for _, c := range ownedChains("a23456789012345") {
		if len(c.name) > 28 {
			t.Errorf("%s: %d bytes, iptables allows 28", c.name, len(c.name))
		}
	}
}
