package integration

import (
	"slices"
	"strings"
	"testing"
)

// TestForwardOrderReasserted: with two networks up, another program's rule
// inserted on top of FORWARD (Docker does that when it restarts) is put back
// below kvmnet's jumps by the next VM's up on either network: every guard jump,
// then every accept jump, then the other rules, untouched. The last downs leave
// the namespace as it was.
func TestForwardOrderReasserted(t *testing.T) {
	h := newHost(t, "iptables", "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n")
	h.foreignRules()
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 3)
	h.mustHelper("kvmnet-natup", taps[0])
	h.mustHelper("kvmnet-ifup@lab", taps[1])
	h.MustRun("iptables", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	h.mustHelper("kvmnet-natup", taps[2])
	want := []string{"KVMNET-GRD-default", "KVMNET-GRD-lab", "KVMNET-FWD-default", "KVMNET-FWD-lab", "DOCKER-USER", "DOCKER-USER"}
	if got := forwardTargets(h); !slices.Equal(got, want) {
		t.Errorf("FORWARD after the next up jumps to\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	h.MustRun("iptables", "-D", "FORWARD", "-j", "DOCKER-USER") // the test's own, one of two alike
	for i, prog := range []string{"kvmnet-natdown", "kvmnet-ifdown@lab", "kvmnet-natdown"} {
		h.mustHelper(prog, taps[i])
	}
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// forwardTargets lists where FORWARD's rules jump, in order.
func forwardTargets(h *host) []string {
	var ts []string
	for _, l := range strings.Split(strings.TrimSpace(h.MustRun("iptables", "-S", "FORWARD")), "\n")[1:] {
		f := strings.Fields(l)
		ts = append(ts, f[len(f)-1])
	}
	return ts
}
