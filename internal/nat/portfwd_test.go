package nat

import (
	"net"
	"net/netip"
	"strconv"
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

// TestReachForwards6: an IPv6 forward of the hypervisor's port 8080 to a
// guest's probe port answers from the outside host over IPv6 (unmasqueraded),
// from the hypervisor itself (its uplink and gateway addresses, not ::1, which
// Linux cannot route to a guest), and from a second guest through the
// hypervisor's address (hairpin, masqueraded as the IPv6 gateway), and from
// a guest of another NAT network, which reaches no other port of the guest;
// a forward on one host address answers there only; ip6tables' FORWARD
// policy is DROP throughout.
func TestReachForwards6(t *testing.T) {
	w := newWorld6(t)
	w.brNF()
	n := reachNet6(1, NAT)
	w.network6(n)
	w.guest6(n, guestAddr(1, 10), guestAddr6(1, 10))
	g2 := w.guest6(n, guestAddr(1, 11), guestAddr6(1, 11))
	// A second address of the hypervisor's, which the host_ip forward does not take.
	const other6 = "2001:db8:1::3"
	w.hv.MustRun("ip", "addr", "add", other6+"/64", "dev", "up0", "nodad")

	guest := netip.MustParseAddr(guestAddr6(1, 10))
	n.Forwards = []PortForward{
		{Proto: "tcp", First: 8080, Last: 8080, Guest: guest, GuestPort: 7777},
		{Proto: "tcp", HostIP: netip.MustParseAddr(uplink6), First: 8443, Last: 8443, Guest: guest, GuestPort: 7777},
	}
	ensure(t, w.hv, n)
	at := func(a string, port int) string { return net.JoinHostPort(a, strconv.Itoa(port)) }
	if seen := expectTo(t, "outside -> [uplink]:8080", w.out, at(uplink6, 8080), open); seen != outside6 {
		t.Errorf("guest saw the outside host as %s, want %s (not masqueraded)", seen, outside6)
	}
	expectTo(t, "outside -> [other address]:8080", w.out, at(other6, 8080), open)
	expectTo(t, "hypervisor -> its [uplink]:8080", w.hv, at(uplink6, 8080), open)
	expectTo(t, "hypervisor -> its [gateway]:8080", w.hv, at(n.Gateway6.String(), 8080), open)
	expectTo(t, "hypervisor -> [::1]:8080 (no IPv6 loopback forwarding)", w.hv, at("::1", 8080), refused)
	if seen := expectTo(t, "guest 2 -> [uplink]:8080 (hairpin)", g2, at(uplink6, 8080), open); seen != n.Gateway6.String() {
		t.Errorf("guest 1 saw guest 2 as %s, want the gateway %s (masqueraded)", seen, n.Gateway6)
	}
	expectTo(t, "outside -> [uplink]:8443 (host_ip)", w.out, at(uplink6, 8443), open)
	expectTo(t, "outside -> [other address]:8443 (not its host_ip)", w.out, at(other6, 8443), refused)
	expectTo(t, "hypervisor -> its [uplink]:8443 (host_ip)", w.hv, at(uplink6, 8443), open)
	expectTo(t, "outside -> [uplink]:8081 (not forwarded)", w.out, at(uplink6, 8081), refused)
	w.out.MustRun("ip", "-6", "route", "add", n.Subnet6.String(), "via", uplink6)
	expect(t, "outside -> guest itself (no forward)", w.out, guestAddr6(1, 10), refused)
	// A guest of another NAT network reaches the forward through the
	// hypervisor's address too, masqueraded, and no other port of the guest.
	y := reachNet6(2, NAT)
	w.network6(y)
	gy := w.guest6(y, guestAddr(2, 10), guestAddr6(2, 10))
	ensure(t, w.hv, y)
	if seen := expectTo(t, "other network's guest -> [uplink]:8080", gy, at(uplink6, 8080), open); seen != n.Gateway6.String() {
		t.Errorf("guest 1 saw the other network's guest as %s, want %s", seen, n.Gateway6)
	}
	expect(t, "other network's guest -> guest 1 itself (no forward)", gy, guestAddr6(1, 10), refused)

	n.Forwards = nil
	ensure(t, w.hv, n)
	expectTo(t, "outside -> [uplink]:8080 after the forwards went", w.out, at(uplink6, 8080), refused)
	if save := w.hv.Ip6tablesSave(); strings.Contains(save, "KVMNET-PRE") || strings.Contains(save, "DNAT") {
		t.Errorf("forward rules left in ip6tables after the last forward went:\n%s", save)
	}
}
