package nat

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// fixtures6 are the networks with IPv6 the ip6tables goldens show.
var fixtures6 = []struct {
	golden string
	n      Network
}{
	{"nat-services-ipv6", with6(fixtures[1].n, "fd00:6b76:6d6e::/64", "fd00:6b76:6d6e::1")},
	{"nat-ipv6", with6(fixtures[0].n, "fd00:6b76:6d6e::/64", "fd00:6b76:6d6e::1")},
	{"hostonly-services-ipv6", with6(fixtures[2].n, "fd00:6b76:6d6f::/64", "fd00:6b76:6d6f::1")},
	{"hostonly-ipv6", with6(fixtures[3].n, "fd00:6b76:6d6f::/64", "fd00:6b76:6d6f::1")},
	{"nat-forwards-ipv6", withForwards6(with6(fixtures[5].n, "fd00:6b76:6d6e::/64", "fd00:6b76:6d6e::1"))},
}

// withForwards6 gives n, beside its IPv4 forwards, the same three over IPv6
// (the host address one 2001:db8::2).
func withForwards6(n Network) Network {
	g := n.Subnet6.Addr().Next().Next().Next().Next().Next() // ::5
	n.Forwards = append(n.Forwards,
		PortForward{Proto: "tcp", First: 8080, Last: 8080, Guest: g, GuestPort: 80},
		PortForward{Proto: "udp", HostIP: netip.MustParseAddr("2001:db8::2"), First: 5000, Last: 5002, Guest: g, GuestPort: 6000},
		PortForward{Proto: "tcp", First: 9000, Last: 9009, Guest: g.Next(), GuestPort: 9000})
	return n
}

func with6(n Network, sub, gw string) Network {
	n.Subnet6, n.Gateway6 = netip.MustParsePrefix(sub), netip.MustParseAddr(gw)
	return n
}

// TestGoldenIPv6: Ensure of a network with IPv6 makes, in ip6tables, the
// rules of testdata/<fixture>.golden (IPv4's are those of the same network
// without IPv6); a second Ensure changes nothing and its generation vouches
// for both families; Remove leaves ip6tables as it found it.
func TestGoldenIPv6(t *testing.T) {
	for _, fx := range fixtures6 {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			for _, tool := range []string{"iptables", "ip6tables"} { // tables as every real host has them
				ns.MustRun(tool, "-P", "FORWARD", "ACCEPT")
				ns.MustRun(tool, "-t", "nat", "-P", "POSTROUTING", "ACCEPT")
			}
			before4, before6 := ns.IptablesSave(), ns.Ip6tablesSave()
			if r := ensure(t, ns, fx.n); !r.Changed {
				t.Fatal("Ensure on an empty namespace changed nothing")
			}
			got := goldenHeader6(fx.n) + ns.Ip6tablesSave()
			golden(t, fx.golden, "ip6tables-save", got)
			r := ensure(t, ns, fx.n)
			if r.Changed {
				t.Error("second Ensure changed something: a rule is not spelt as ip6tables-save prints it")
			}
			if !r.GenOK || r.Gen != generation(t, ns) {
				t.Errorf("second Ensure: generation %d ok=%t, want the current one", r.Gen, r.GenOK)
			}
			var missing []string
			do(t, ns, func(fw *Firewall) (err error) { missing, err = fw.Check(fx.n); return err })
			if len(missing) > 0 {
				t.Errorf("Check after Ensure: missing %q", missing)
			}
			ns.MustRun("ip6tables", "-F", "KVMNET-IN-"+fx.n.Name)
			do(t, ns, func(fw *Firewall) (err error) { missing, err = fw.Check(fx.n); return err })
			if len(missing) == 0 || missing[0][:10] != "ip6tables " {
				t.Errorf("Check after flushing the IPv6 INPUT chain: missing %q, want ip6tables rules", missing)
			}
			remove(t, ns, fx.n)
			if got := ns.Ip6tablesSave(); got != before6 {
				t.Errorf("ip6tables-save after Remove differs:\n%s", diff(before6, got))
			}
			if got := ns.IptablesSave(); got != before4 {
				t.Errorf("iptables-save after Remove differs:\n%s", diff(before4, got))
			}
		})
	}
}

func goldenHeader6(n Network) string {
	fws := ""
	for _, f := range n.Forwards {
		if !f.Guest.Is6() {
			continue
		}
		host := ""
		if f.HostIP.IsValid() {
			host = "[" + f.HostIP.String() + "]:"
		}
		fws += fmt.Sprintf("\n#   forward %s %s%d-%d -> [%s]:%d", f.Proto, host, f.First, f.Last, f.Guest, f.GuestPort)
	}
	return fmt.Sprintf("# ip6tables-save of an empty network namespace after Ensure of\n"+
		"#   name=%s bridge=%s mode=%s subnet6=%s gateway6=%s services=%t%s\n"+
		"# (counters and timestamps stripped; regenerate: go test ./internal/nat -update)\n",
		n.Name, n.Bridge, n.Mode, n.Subnet6, n.Gateway6, n.Services, fws)
}
