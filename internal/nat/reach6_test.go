package nat

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// The IPv6 reachability test: the world of reach_test.go with IPv6 on the
// uplink (hypervisor 2001:db8:1::1, outside 2001:db8:1::2), networks with an
// IPv6 prefix each, guests with a static address in it (what SLAAC would give
// them) and a default route via the IPv6 gateway, and ip6tables' FORWARD
// policy DROP.
const (
	uplink6  = "2001:db8:1::1"
	outside6 = "2001:db8:1::2"
)

func reachNet6(i int, m Mode) Network {
	n, _ := reachNet(i, m)
	n.Subnet6 = netip.MustParsePrefix(fmt.Sprintf("fd00:%d::/64", 50+i))
	n.Gateway6 = netip.MustParseAddr(fmt.Sprintf("fd00:%d::1", 50+i))
	return n
}

func guestAddr6(i, host int) string { return fmt.Sprintf("fd00:%d::%d", 50+i, host) }

func newWorld6(t *testing.T) *world {
	w := newWorld(t)
	w.noDAD = true
	w.hv.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.accept_dad=0")
	w.hv.MustRun("ip6tables", "-P", "FORWARD", "DROP")
	w.hv.MustRun("ip", "addr", "add", uplink6+"/64", "dev", "up0", "nodad")
	w.out.MustRun("ip", "addr", "add", outside6+"/64", "dev", "eth0", "nodad")
	serve6(t, w.hv)
	serve6(t, w.out)
	return w
}

func (w *world) network6(n Network) {
	w.network(n, n.Subnet.String())
	w.hv.MustRun("ip", "addr", "add", netip.PrefixFrom(n.Gateway6, 64).String(), "dev", n.Bridge, "nodad")
}

func (w *world) guest6(n Network, addr4, addr6 string) *testns.NS {
	g := w.guest(n, addr4)
	g.MustRun("ip", "addr", "add", addr6+"/64", "dev", "eth0", "nodad")
	g.MustRun("ip", "-6", "route", "add", "default", "via", n.Gateway6.String())
	serve6(w.t, g)
	return g
}

// serve6 is serve on IPv6.
func serve6(t *testing.T, ns *testns.NS) { ns.EchoSource(t, "tcp6", "[::]:"+probePort) }

// TestReachIPv6: over IPv6 as over IPv4, a guest reaches the guest beside it
// and its gateway; the hypervisor's uplink address and the outside only on
// NAT, masqueraded (refused on host-only); no guest of the other network,
// either way, whichever came up first; and nothing from outside reaches it.
func TestReachIPv6(t *testing.T) {
	for _, order := range []string{"nat-first", "hostonly-first"} {
		t.Run(order, func(t *testing.T) {
			w := newWorld6(t)
			x, y := reachNet6(1, NAT), reachNet6(2, HostOnly)
			w.network6(x)
			w.network6(y)
			gx := w.guest6(x, guestAddr(1, 10), guestAddr6(1, 10))
			gx2 := w.guest6(x, guestAddr(1, 11), guestAddr6(1, 11))
			gy := w.guest6(y, guestAddr(2, 10), guestAddr6(2, 10))
			if order == "nat-first" {
				ensure(t, w.hv, x)
				ensure(t, w.hv, y)
			} else {
				ensure(t, w.hv, y)
				ensure(t, w.hv, x)
			}
			w.out.MustRun("ip", "-6", "route", "add", x.Subnet6.String(), "via", uplink6)
			w.out.MustRun("ip", "-6", "route", "add", y.Subnet6.String(), "via", uplink6)

			expect(t, "nat guest -> guest beside it", gx, guestAddr6(1, 11), open)
			expect(t, "nat guest -> gateway", gx, x.Gateway6.String(), open)
			expect(t, "hostonly guest -> gateway", gy, y.Gateway6.String(), open)
			expect(t, "nat guest -> host's uplink address", gx, uplink6, open)
			expect(t, "hostonly guest -> host's uplink address", gy, uplink6, refused)
			if seen := expect(t, "nat guest -> outside", gx, outside6, open); seen != uplink6 {
				t.Errorf("outside saw the nat guest as %s, want %s (masqueraded)", seen, uplink6)
			}
			expect(t, "hostonly guest -> outside", gy, outside6, refused)
			expect(t, "nat guest -> hostonly guest", gx, guestAddr6(2, 10), refused)
			expect(t, "hostonly guest -> nat guest", gy, guestAddr6(1, 10), refused)
			expect(t, "outside -> nat guest", w.out, guestAddr6(1, 10), refused)
			expect(t, "outside -> hostonly guest", w.out, guestAddr6(2, 10), refused)
			expect(t, "nat guest -> guest beside it", gx2, guestAddr6(1, 10), open)
		})
	}
}
