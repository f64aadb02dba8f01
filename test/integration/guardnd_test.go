package integration

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The host's own IPv6 addresses on the bridge (the IPv6 gateway, the
// bridge's link-local) against a guest that claims them in neighbour
// discovery: what it sends must not move another guest's neighbour entry
// for its router to the sender's MAC.

var (
	gw6    = netip.MustParseAddr("fd00:6b76:6d6e::1")
	a6, b6 = netip.MustParseAddr("fd00:6b76:6d6e::a"), netip.MustParseAddr("fd00:6b76:6d6e::b")
	aLL    = netip.MustParseAddr("fe80::5054:ff:fe00:a")
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// neighAdvert is an NA for target with flags (0x80 router, 0x40 solicited,
// 0x20 override) and mac as its target link-layer address.
func neighAdvert(flags byte, target netip.Addr, mac net.HardwareAddr) []byte {
	t := target.As16()
	m := append([]byte{136, 0, 0, 0, flags, 0, 0, 0}, t[:]...)
	return append(append(m, 2, 1), mac...)
}

// neighSolicit is an NS for target, with mac as its source link-layer
// address (none for duplicate address detection, from ::).
func neighSolicit(target netip.Addr, mac net.HardwareAddr) []byte {
	t := target.As16()
	m := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, t[:]...)
	if mac != nil {
		m = append(append(m, 1, 1), mac...)
	}
	return m
}

// withRouterAlert puts a hop-by-hop header with a router alert option
// before an ipv6icmp packet's ICMPv6 message (whose checksum it keeps: the
// pseudo-header names the upper layer, not the next header).
func withRouterAlert(pkt []byte) []byte {
	h := append([]byte{}, pkt[:40]...)
	h[6] = 0                               // next header: hop-by-hop options
	h[5] += 8                              // payload length (the tests' messages are short)
	hbh := []byte{58, 0, 5, 2, 0, 0, 1, 0} // next ICMPv6; router alert (MLD), PadN
	return append(append(h, hbh...), pkt[40:]...)
}

// bridgeLinkLocal waits for br0's link-local address to be usable (the
// kernel adds it once the bridge has carrier, then runs DAD).
func bridgeLinkLocal(t *testing.T, h *host) netip.Addr {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out := h.MustRun("ip", "-6", "-o", "addr", "show", "dev", "br0", "scope", "link")
		if f := strings.Fields(out); len(f) > 3 && !strings.Contains(out, "tentative") {
			if p, err := netip.ParsePrefix(f[3]); err == nil {
				return p.Addr()
			}
		}
	}
	t.Fatalf("br0 has no usable link-local address:\n%s", h.MustRun("ip", "-6", "addr", "show", "dev", "br0"))
	return netip.Addr{}
}

// TestGuardHostNeighbours: with the guard on, a guest that advertises the
// IPv6 gateway's address or the bridge's link-local as its own (an
// unsolicited NA with override, also behind a hop-by-hop router alert),
// solicits with one of them as its source, sends from the bridge's
// link-local, or runs duplicate address detection for the gateway's
// address reaches no other guest, whose neighbour entries for both stay the
// bridge's MAC; its own neighbour discovery still works. With guard = false
// the same advertisement moves the neighbour's entry to the attacker (the
// test sees what the guard stops).
func TestGuardHostNeighbours(t *testing.T) {
	for _, guard := range []bool{true, false} {
		t.Run(map[bool]string{true: "guard=on", false: "guard=off"}[guard], func(t *testing.T) {
			extra := "address6 = \"" + gw6.String() + "/64\"\n"
			if !guard {
				extra += "guard = false\n"
			}
			h, a, b := guardWorld(t, "nftables", extra)
			a.MustRun("ip", "-6", "addr", "add", a6.String()+"/64", "dev", "eth0", "nodad")
			b.MustRun("ip", "-6", "addr", "add", b6.String()+"/64", "dev", "eth0", "nodad")
			ll := bridgeLinkLocal(t, h)
			brMAC := strings.TrimSpace(h.MustRun("cat", "/sys/class/net/br0/address"))
			// b's entries for its router, as a guest that has spoken to it.
			b.MustRun("ping", "-6", "-c", "1", "-W", "2", gw6.String())
			b.MustRun("ping", "-6", "-c", "1", "-W", "2", "-I", "eth0", ll.String())
			am, bm := macOf(a), macOf(b)
			ra, rb := rawPair(t, a, b)

			own := ether(allNodesMAC, am, 0x86dd, ipv6icmp(aLL, allNodes, neighAdvert(0x20, a6, am)))
			if err := ra.send(own); err != nil {
				t.Fatal(err)
			}
			if !rb.seen(own[14:], 2*time.Second) {
				t.Fatal("guest b does not see guest a's advertisement of its own address: the test cannot see anything")
			}
			echo := append([]byte{128, 0, 0, 0, 0, 1, 0, 1}, "kvmnet-guard-from-bridge-ll"...)
			attacks := []struct {
				name  string
				frame []byte
			}{
				{"an NA for the IPv6 gateway", ether(allNodesMAC, am, 0x86dd, ipv6icmp(aLL, allNodes, neighAdvert(0xa0, gw6, am)))},
				{"an NA for the bridge's link-local", ether(allNodesMAC, am, 0x86dd, ipv6icmp(aLL, allNodes, neighAdvert(0xa0, ll, am)))},
				{"an NA for the IPv6 gateway behind a router alert", ether(allNodesMAC, am, 0x86dd, withRouterAlert(ipv6icmp(aLL, allNodes, neighAdvert(0xa0, gw6, am))))},
				{"an NS from the bridge's link-local", ether(bm, am, 0x86dd, ipv6icmp(ll, b6, neighSolicit(b6, am)))},
				{"an NS from the IPv6 gateway", ether(bm, am, 0x86dd, ipv6icmp(gw6, b6, neighSolicit(b6, am)))},
				{"an echo from the bridge's link-local", ether(bm, am, 0x86dd, ipv6icmp(ll, b6, echo))},
				{"duplicate address detection of the IPv6 gateway", ether(allNodesMAC, am, 0x86dd, ipv6icmp(netip.IPv6Unspecified(), allNodes, neighSolicit(gw6, nil)))},
			}
			// b's entries for its router once the two advertisements are
			// sent: with guard = false the later frames (an NS, an echo
			// from the link-local) make b ask again, and the bridge's own
			// answer may take the entry back before it is read. With the
			// guard on they are read again after all the attacks.
			neigh := func() map[netip.Addr]string {
				m := map[netip.Addr]string{}
				for _, r := range []netip.Addr{gw6, ll} {
					m[r] = b.MustRun("ip", "-6", "neigh", "show", r.String(), "dev", "eth0")
				}
				return m
			}
			var entries map[netip.Addr]string
			for i, at := range attacks {
				if err := ra.send(at.frame); err != nil {
					t.Fatal(err)
				}
				if seen := rb.seen(at.frame[14:], 500*time.Millisecond); seen == guard {
					t.Errorf("%s: guest b received it: %v, want %v", at.name, seen, !guard)
				}
				if i == 1 {
					entries = neigh()
				}
			}
			if guard {
				entries = neigh()
			}
			for _, r := range []netip.Addr{gw6, ll} {
				n := entries[r]
				switch moved := strings.Contains(n, am.String()); {
				case guard && (moved || !strings.Contains(n, brMAC)):
					t.Errorf("guest b's neighbour entry for %s is no longer the bridge's %s: %s", r, brMAC, n)
				case !guard && !moved:
					t.Errorf("with guard = false guest b's entry for %s did not move to guest a: %s", r, n)
				}
			}
			if !guard {
				return
			}
			for _, r := range []string{gw6.String(), ll.String()} {
				if _, _, err := a.Run("ping", "-6", "-c", "1", "-W", "2", "-I", "eth0", r); err != nil {
					t.Errorf("guest a no longer reaches %s: %v", r, err)
				}
			}
			if _, _, err := b.Run("ping", "-6", "-c", "1", "-W", "2", a6.String()); err != nil {
				t.Errorf("guest b does not reach guest a over IPv6: %v", err)
			}
			if out := h.MustRun("nft", "list", "set", "bridge", "kvmnet-default", "host6"); !strings.Contains(out, ll.String()) || !strings.Contains(out, gw6.String()) {
				t.Errorf("the guard's host6 set lacks the bridge's addresses %s, %s:\n%s", ll, gw6, out)
			}
		})
	}
}
