package nat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// loopbackReached reports whether a datagram guest g sends to 127.0.0.1
// reaches the hypervisor's 127.0.0.1, waiting as long as for a dropped probe.
func loopbackReached(t *testing.T, hv, g *testns.NS) bool {
	return hv.LoopbackReachedFrom(t, g, dropTimeout)
}

// TestReachForwards: a forward of the hypervisor's port 8080 to a guest's
// probe port answers from the outside host, from the hypervisor itself (its
// uplink address and 127.0.0.1, which needs route_localnet on the bridge, as
// lifecycle sets it), and from a second guest through the hypervisor's
// address (hairpin, masqueraded so the answer comes back the same way), and
// from a guest of another NAT network through it, which reaches no other port
// of the guest. The
// hypervisor's own loopback services stay out of a guest's reach although
// route_localnet is on (CVE-2020-8558): without the guard they are not.
func TestReachForwards(t *testing.T) {
	w := newWorld(t)
	w.brNF()
	n, subnet := reachNet(1, NAT)
	w.network(n, subnet)
	_, g2 := w.guest(n, guestAddr(1, 10)), w.guest(n, guestAddr(1, 11))
	w.hv.MustRun("sysctl", "-qw", "net.ipv4.conf."+n.Bridge+".route_localnet=1")
	// The guest sends to 127.0.0.1 through the gateway, as a hostile guest can.
	g2.MustRun("ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
	g2.MustRun("ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local")
	g2.MustRun("ip", "route", "add", "127.0.0.1/32", "via", n.Gateway.String())
	g2.MustRun("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1")

	ensure(t, w.hv, n)
	if !loopbackReached(t, w.hv, g2) {
		t.Error("without forwards (no guard) the hypervisor's 127.0.0.1 did not get the guest's datagram: the guard test proves nothing")
	}

	n.Forwards = []PortForward{{Proto: "tcp", First: 8080, Last: 8080, Guest: netip.MustParseAddr(guestAddr(1, 10)), GuestPort: 7777}}
	ensure(t, w.hv, n)
	if seen := expectTo(t, "outside -> uplink:8080", w.out, uplinkAddr+":8080", open); seen != outsideAddr {
		t.Errorf("guest saw the outside host as %s, want %s (not masqueraded)", seen, outsideAddr)
	}
	expectTo(t, "hypervisor -> its uplink:8080", w.hv, uplinkAddr+":8080", open)
	if seen := expectTo(t, "hypervisor -> 127.0.0.1:8080", w.hv, "127.0.0.1:8080", open); seen != n.Gateway.String() {
		t.Errorf("guest saw the hypervisor's 127.0.0.1 as %s, want the gateway %s", seen, n.Gateway)
	}
	if seen := expectTo(t, "guest 2 -> uplink:8080 (hairpin)", g2, uplinkAddr+":8080", open); seen != n.Gateway.String() {
		t.Errorf("guest 1 saw guest 2 as %s, want the gateway %s (masqueraded)", seen, n.Gateway)
	}
	if loopbackReached(t, w.hv, g2) {
		t.Error("a guest's datagram reached the hypervisor's 127.0.0.1 although the network's guard is in")
	}
	// A guest of another NAT network reaches the forward through the
	// hypervisor's address too; it arrives masqueraded as its own gateway.
	y, ys := reachNet(2, NAT)
	w.network(y, ys)
	gy := w.guest(y, guestAddr(2, 10))
	ensure(t, w.hv, y)
	if seen := expectTo(t, "other network's guest -> uplink:8080", gy, uplinkAddr+":8080", open); seen != n.Gateway.String() {
		t.Errorf("guest 1 saw the other network's guest as %s, want %s", seen, n.Gateway)
	}
	expect(t, "other network's guest -> guest 1 itself (no forward)", gy, guestAddr(1, 10), refused)
	expectTo(t, "outside -> uplink:8081 (not forwarded)", w.out, uplinkAddr+":8081", refused)

	// Moved to 9090: the old port is the hypervisor's own again, nothing stale.
	n.Forwards[0].First, n.Forwards[0].Last = 9090, 9090
	ensure(t, w.hv, n)
	expectTo(t, "outside -> uplink:9090 after the move", w.out, uplinkAddr+":9090", open)
	expectTo(t, "outside -> uplink:8080 after the move", w.out, uplinkAddr+":8080", refused)
	if save := w.hv.IptablesSave(); strings.Contains(save, "8080") {
		t.Errorf("a rule for 8080 is left after the move:\n%s", save)
	}
	n.Forwards = nil
	ensure(t, w.hv, n)
	if save := w.hv.IptablesSave(); strings.Contains(save, "KVMNET-PRE") || strings.Contains(save, "DNAT") || strings.Contains(save, "127.0.0.0") {
		t.Errorf("forward rules left after the last forward went:\n%s", save)
	}
}
