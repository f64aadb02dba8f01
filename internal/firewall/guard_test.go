package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var guardFixtures = []fixture{
	{"guard-nat", Network{Name: "lab", Bridge: "kvmbr0", Mode: NAT, Gateway: netip.MustParsePrefix("10.77.0.1/24"), Services: true,
		Gateway6: netip.MustParsePrefix("fd00:6b76::1/64"),
		Guard: PortGuard{On: true, Hosts: []GuardHost{{mustMAC("52:54:00:00:00:05"), netip.MustParseAddr("10.77.0.5")}},
			Host6: []netip.Addr{netip.MustParseAddr("fd00:6b76::1"), netip.MustParseAddr("fe80::ac:1eff:fe2b:3c4d")}}}},
	{"guard-hostonly-off", Network{Name: "host", Bridge: "kvmbr1", Mode: HostOnly, Gateway: netip.MustParsePrefix("192.168.101.1/24")}},
	{"guard-isolated", Network{Name: "iso", Bridge: "kvmbr2", Mode: Isolated, Guard: PortGuard{On: true}}},
}

// TestGuardGolden pins the guard table (`nft -s list table bridge
// kvmnet-NAME`) per mode, guard on and off; a second Ensure changes
// nothing, Check finds nothing missing, Remove takes the table.
func TestGuardGolden(t *testing.T) {
	for _, fx := range guardFixtures {
		t.Run(fx.golden, func(t *testing.T) {
			ns := testns.New(t)
			before := ruleset(ns)
			r := ensure(t, ns, fx.n)
			if !r.Changed || !r.GenOK {
				t.Fatalf("first Ensure: %+v, want changed with a generation", r)
			}
			golden(t, fx.golden, fmt.Sprintf("# %s %s guard %+v\n", fx.n.Name, fx.n.Mode, fx.n.Guard)+ns.MustRun("nft", "-s", "list", "table", "bridge", "kvmnet-"+fx.n.Name))
			if r2 := ensure(t, ns, fx.n); r2.Changed || r2.Gen != r.Gen {
				t.Errorf("second Ensure: %+v, want unchanged at generation %d", r2, r.Gen)
			}
			if m := check(t, ns, fx.n); len(m) > 0 {
				t.Errorf("Check after Ensure: %q", m)
			}
			ns.MustRun("nft", "flush", "chain", "bridge", "kvmnet-"+fx.n.Name, "guests")
			if m := check(t, ns, fx.n); len(m) == 0 || !strings.Contains(m[0], "bridge kvmnet-"+fx.n.Name+" guests: ether type 8021q counter drop") {
				t.Errorf("Check after a flush: %q, want the guests chain's rules", m)
			}
			if r3 := ensure(t, ns, fx.n); !r3.Changed {
				t.Error("Ensure after a flush changed nothing")
			}
			remove(t, ns, fx.n)
			if got := ruleset(ns); got != before {
				t.Errorf("ruleset after Remove:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

// TestGuardTurnedOff: turning the guard off rewrites the table to the
// always-on drops and deletes the per-port chains; static hosts that left
// the configuration leave the leases set.
func TestGuardTurnedOff(t *testing.T) {
	ns := testns.New(t)
	on := guardFixtures[0].n
	ensure(t, ns, on)
	off := on
	off.Guard = PortGuard{}
	if r := ensure(t, ns, off); !r.Changed {
		t.Fatal("Ensure with the guard off changed nothing")
	}
	got := ns.MustRun("nft", "list", "table", "bridge", "kvmnet-lab")
	for _, gone := range []string{"chain mac", "chain arp", "chain ip {", "jump mac", "10.77.0.5"} {
		if strings.Contains(got, gone) {
			t.Errorf("guard off: table still has %q:\n%s", gone, got)
		}
	}
	if !strings.Contains(got, "udp sport 67") {
		t.Errorf("guard off: the always-on drops are gone:\n%s", got)
	}
}
