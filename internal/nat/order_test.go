package nat

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestForwardOrderHealed: another program's rule inserted on top of FORWARD
// (Docker does that when it restarts) and a kvmnet accept jump moved above a
// guard jump are both undone by the next Ensure of any network, which puts
// every network's jumps back in place and leaves the foreign rules below.
func TestForwardOrderHealed(t *testing.T) {
	ns := testns.New(t)
	foreign(t, ns)
	ensure(t, ns, netA)
	ensure(t, ns, netB)
	ns.MustRun("iptables", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	ns.MustRun("iptables", "-D", "FORWARD", "-m", "comment", "--comment", "kvmnet:a", "-j", prefixFwd+"a")
	ns.MustRun("iptables", "-I", "FORWARD", "1", "-m", "comment", "--comment", "kvmnet:a", "-j", prefixFwd+"a")
	do(t, ns, func(fw *Firewall) error {
		missing, err := fw.Check(netB)
		if err == nil && len(missing) != 2 {
			err = fmt.Errorf("Check of b with FORWARD out of order: %q, want its two jumps", missing)
		}
		return err
	})
	if r := ensure(t, ns, netB); !r.Changed {
		t.Fatal("Ensure with FORWARD out of order changed nothing")
	}
	assertForward(t, ns, prefixGrd+"a", prefixGrd+"b-2", prefixFwd+"a", prefixFwd+"b-2", "DOCKER-USER", "DOCKER-USER")
	if r := ensure(t, ns, netA); r.Changed {
		t.Fatal("second Ensure changed something")
	}
}

// TestForwardOrderConcurrent runs Ensures and Removes of different networks at
// once, as VMs of different networks starting and stopping together do (each
// network has its own lock, so nothing serialises them), with FORWARD's order
// broken first so that every Ensure moves the others' jumps. At the end
// FORWARD must hold exactly the live networks' jumps, in order.
func TestForwardOrderConcurrent(t *testing.T) {
	ns := testns.New(t)
	foreign(t, ns)
	nets := make([]Network, 8)
	for i := range nets {
		nets[i] = Network{Name: fmt.Sprintf("n%d", i), Bridge: fmt.Sprintf("kvbr%d", i), Mode: Mode(i % 3),
			Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", i)), Gateway: netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", i))}
		if nets[i].Mode == Isolated {
			nets[i].Subnet, nets[i].Gateway = netip.Prefix{}, netip.Addr{}
		}
		if i%4 == 3 {
			nets[i].AllowFrom = []string{"kvbr0"}
		}
	}
	all := func(f func(n Network) func(fw *Firewall) error, nets []Network) {
		var wg sync.WaitGroup
		for _, n := range nets {
			wg.Go(func() {
				if err := ns.Do(func() error {
					fw, err := New()
					if err != nil {
						return err
					}
					return f(n)(fw)
				}); err != nil {
					t.Errorf("%s: %v", n.Name, err)
				}
			})
		}
		wg.Wait()
	}
	ensureOf := func(n Network) func(fw *Firewall) error {
		return func(fw *Firewall) error { _, err := fw.Ensure(n); return err }
	}
	removeOf := func(n Network) func(fw *Firewall) error { return func(fw *Firewall) error { return fw.Remove(n) } }
	all(ensureOf, nets)
	assertLayout(t, ns, nets)
	for round := range 3 {
		ns.MustRun("iptables", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
		var wg sync.WaitGroup
		wg.Go(func() { all(removeOf, nets[:4]) })
		wg.Go(func() { all(ensureOf, nets[4:]) })
		wg.Wait()
		assertLayout(t, ns, nets[4:])
		all(ensureOf, nets[:4])
		assertLayout(t, ns, nets)
		t.Logf("round %d: FORWARD in order", round)
	}
}

// assertLayout checks that FORWARD starts with the allow jumps of the networks
// of nets that have one, then one guard jump per network, then one accept jump
// each, and holds no other kvmnet jump.
func assertLayout(t *testing.T, ns *testns.NS, nets []Network) {
	t.Helper()
	live, err := parseSave(ns.IptablesSave())
	if err != nil {
		t.Fatal(err)
	}
	fwd, _ := live.chain(tableFilter, "FORWARD")
	var got []string
	for _, r := range fwd {
		if tierOf(r) != tierOther {
			got = append(got, target(r))
		}
	}
	want := map[string]bool{}
	for _, n := range nets {
		want[prefixGrd+n.Name], want[prefixFwd+n.Name] = true, true
		if len(n.AllowFrom) > 0 {
			want[prefixAlw+n.Name] = true
		}
	}
	ok := ordered(fwd) && len(got) == len(want)
	for _, g := range got {
		ok = ok && want[g]
	}
	if !ok {
		t.Fatalf("FORWARD's kvmnet jumps out of order or not exactly those of %d networks:\n%s", len(nets), strings.Join(got, "\n"))
	}
}

// TestConvergeStopsOnOwnBatch: when the rules read back after a batch still
// want that same batch (an iptables that spells a rule its own way), converge
// applies it once and stops, as Ensure always did, instead of failing.
func TestConvergeStopsOnOwnBatch(t *testing.T) {
	ns := testns.New(t)
	ns.MustRun("iptables", "-N", "QUIRK")
	do(t, ns, func(fw *Firewall) error {
		r, err := fw.converge("quirk", func(ruleset) batch {
			return batch{tableFilter: {add: []string{"-A QUIRK -j RETURN"}}}
		})
		if err == nil && !r.Changed {
			err = fmt.Errorf("converge: %+v, want changed", r)
		}
		return err
	})
	if got := strings.Count(ns.IptablesSave(), "-A QUIRK -j RETURN"); got != 1 {
		t.Fatalf("the batch was applied %d times, want once", got)
	}
}
