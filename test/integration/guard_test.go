package integration

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// The guards (docs/guard.md), against guests that are namespaces on veths
// (ports = "any") sending frames by hand through AF_PACKET. Every case is
// one a host without the guard lets through: the guard-off cases show that
// the test can see it.

var (
	gwAddr = netip.MustParseAddr("192.168.100.1")
	aAddr  = netip.MustParseAddr("192.168.100.10")
	bAddr  = netip.MustParseAddr("192.168.100.11")
)

// guardWorld is a NAT network, the default one with extra in its section,
// and two hand-configured guests on it, a (.10 on vnetA) and b (.11 on
// vnetB), each having spoken to the gateway first.
func guardWorld(t *testing.T, fw, extra string) (h *host, a, b *testns.NS) {
	t.Helper()
	h = newHost(t, fw, "[network.default]\nports = \"any\"\n"+extra)
	a = h.guest("vnetA", aAddr.String()+"/24", gwAddr.String())
	b = h.guest("vnetB", bAddr.String()+"/24", gwAddr.String())
	h.mustHelper("kvmnet-natup", "vnetA")
	h.mustHelper("kvmnet-natup", "vnetB")
	for _, g := range []*testns.NS{a, b} {
		if _, _, err := g.Run("ping", "-c", "1", "-W", "2", gwAddr.String()); err != nil {
			t.Fatalf("a hand-configured guest does not reach the gateway: %v\n%s", err, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
		}
	}
	return h, a, b
}

// spoofCase is one frame guest a sends and guest b must not see.
type spoofCase struct {
	name  string
	frame func(a, b net.HardwareAddr, mark []byte) []byte
}

var spoofs = []spoofCase{
	{"another guest's address", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return ether(broadcast, a, 0x0800, ipv4(bAddr, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))
	}},
	{"a second address of its own", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return ether(broadcast, a, 0x0800, ipv4(netip.MustParseAddr("192.168.100.99"), netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))
	}},
	{"the gateway's address", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return ether(broadcast, a, 0x0800, ipv4(gwAddr, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))
	}},
	{"another guest's MAC", func(_, b net.HardwareAddr, mark []byte) []byte {
		return ether(broadcast, b, 0x0800, ipv4(aAddr, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))
	}},
	{"a second MAC", func(_, _ net.HardwareAddr, mark []byte) []byte {
		return ether(broadcast, net.HardwareAddr{0x52, 0x54, 0, 0x66, 0x66, 0x66}, 0x0800, ipv4(aAddr, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, mark)))
	}},
	{"an ARP reply for another guest's address", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return append(ether(broadcast, a, 0x0806, arp(2, a, bAddr, broadcast, bAddr)), mark...)
	}},
	{"an ARP reply for the gateway", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return append(ether(broadcast, a, 0x0806, arp(2, a, gwAddr, broadcast, gwAddr)), mark...)
	}},
	{"an ARP sender MAC not its own", func(a, _ net.HardwareAddr, mark []byte) []byte {
		return append(ether(broadcast, a, 0x0806, arp(2, net.HardwareAddr{0x52, 0x54, 0, 0x66, 0x66, 0x67}, aAddr, broadcast, aAddr)), mark...)
	}},
}

// TestGuardSpoofing: with the guard on (the default) a guest sending with
// another guest's or a second MAC or address, or answering ARP for another
// guest or the gateway, reaches no one, and the bridge and the host keep
// the victim where it is; its own frames pass, and guests reach each other.
// With guard = false the same spoofed address reaches the neighbour.
func TestGuardSpoofing(t *testing.T) {
	matrix(t, func(t *testing.T, fw string) {
		h, a, b := guardWorld(t, fw, "")
		if _, _, err := a.Run("ping", "-c", "1", "-W", "2", bAddr.String()); err != nil {
			t.Fatalf("guest a does not reach guest b: %v", err)
		}
		h.MustRun("ping", "-c", "1", "-W", "2", bAddr.String()) // the host's neighbour entry for b
		ra, rb := rawPair(t, a, b)
		am, bm := macOf(a), macOf(b)
		ok := []byte("kvmnet-guard-own-frame")
		if err := ra.send(ether(broadcast, am, 0x0800, ipv4(aAddr, netip.MustParseAddr("192.168.100.255"), 17, udp(9999, 9999, ok)))); err != nil {
			t.Fatal(err)
		}
		if !rb.seen(ok, 2*time.Second) {
			t.Fatal("guest b does not see guest a's own broadcast: the test cannot see anything")
		}
		for i, sc := range spoofs {
			mark := []byte("kvmnet-guard-spoof-" + string(rune('a'+i)))
			if err := ra.send(sc.frame(am, bm, mark)); err != nil {
				t.Fatal(err)
			}
			if rb.seen(mark, 700*time.Millisecond) {
				t.Errorf("%s: guest b received it", sc.name)
			}
		}
		if fdb := h.MustRun("bridge", "fdb", "show", "br", "br0"); !strings.Contains(fdb, bm.String()+" dev vnetB") {
			t.Errorf("guest b's MAC is no longer on vnetB:\n%s", fdb)
		}
		if n := h.MustRun("ip", "neigh", "show", bAddr.String(), "dev", "br0"); !strings.Contains(n, bm.String()) {
			t.Errorf("the host's neighbour entry for guest b changed: %s", n)
		}
		if _, _, err := a.Run("ping", "-c", "1", "-W", "2", bAddr.String()); err != nil {
			t.Errorf("guest a no longer reaches guest b: %v", err)
		}
		kvmnet := func(args ...string) string {
			out, _, _ := h.Run(append([]string{"env", "KVMNET_CONFIG=" + h.Config, h.Program("kvmnet")}, args...)...)
			return out
		}
		if out := kvmnet("status"); !strings.Contains(out, "GUARDED PORT") || !strings.Contains(out, am.String()) || !strings.Contains(out, aAddr.String()) {
			t.Errorf("kvmnet status does not show guest a's guarded MAC and address:\n%s", out)
		}
		if testing.Verbose() {
			t.Log(kvmnet("status"), kvmnet("doctor"))
		}
		if out := kvmnet("doctor"); !strings.Contains(out, "the guard dropped") {
			t.Errorf("kvmnet doctor does not report the guard's drops:\n%s", out)
		}
	})
}

// TestGuardOffLetsSpoofingBy: guard = false: a spoofed address reaches the
// neighbour (the test sees what the guard stops).
func TestGuardOffLetsSpoofingBy(t *testing.T) {
	_, a, b := guardWorld(t, "nftables", "guard = false\n")
	ra, rb := rawPair(t, a, b)
	mark := []byte("kvmnet-guard-off-spoof")
	if err := ra.send(spoofs[0].frame(macOf(a), macOf(b), mark)); err != nil {
		t.Fatal(err)
	}
	if !rb.seen(mark, 2*time.Second) {
		t.Error("with guard = false guest b does not see guest a's spoofed frame")
	}
}

// TestGuardRogueServers: guard on or off, a guest's router advertisement,
// DHCP offer, DHCPv6 answer and ICMP and ICMPv6 redirects reach neither the
// host (no route from the RA) nor another guest; a third guest still gets
// its lease from the gateway and uses it.
func TestGuardRogueServers(t *testing.T) {
	for _, extra := range []string{"", "guard = false\n"} {
		t.Run("guard="+map[string]string{"": "on", "guard = false\n": "off"}[extra], func(t *testing.T) {
			h, a, b := guardWorld(t, "nftables", extra)
			routes := h.MustRun("ip", "-6", "route", "show")
			ra, rb := rawPair(t, a, b)
			am, bm := macOf(a), macOf(b)
			ll := netip.MustParseAddr("fe80::5054:ff:fe00:66")
			allNodes, allNodesMAC := netip.MustParseAddr("ff02::1"), net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
			rogue := []struct {
				name  string
				frame []byte
			}{
				{"router advertisement", ether(allNodesMAC, am, 0x86dd, ipv6icmp(ll, allNodes, routerAdvert(netip.MustParseAddr("2001:db8:bad::"))))},
				{"ICMPv6 redirect", ether(bm, am, 0x86dd, ipv6icmp(ll, netip.MustParseAddr("fe80::1"), append([]byte{137, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 32)...)))},
				{"DHCP offer", ether(broadcast, am, 0x0800, ipv4(aAddr, netip.MustParseAddr("255.255.255.255"), 17, udp(67, 68, []byte("kvmnet-rogue-dhcp"))))},
				{"ICMP redirect", ether(bm, am, 0x0800, ipv4(aAddr, bAddr, 1, icmp4(5, 1, append(gwAddr.AsSlice(), ipv4(bAddr, netip.MustParseAddr("203.0.113.2"), 17, udp(1, 2, nil))...))))},
			}
			for _, r := range rogue {
				if err := ra.send(r.frame); err != nil {
					t.Fatal(err)
				}
				if rb.seen(r.frame[14:], 700*time.Millisecond) {
					t.Errorf("%s: guest b received it", r.name)
				}
			}
			if got := h.MustRun("ip", "-6", "route", "show"); got != routes {
				t.Errorf("the host's IPv6 routes changed after a guest's RA:\n%s\nwas:\n%s", got, routes)
			}
			c := h.guest("vnetC", "", "")
			h.mustHelper("kvmnet-natup", "vnetC")
			dir := t.TempDir()
			script, server := filepath.Join(dir, "udhcpc.sh"), filepath.Join(dir, "server")
			if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nbusybox ifconfig \"$interface\" \"$ip\" netmask \"$subnet\"\necho \"$serverid\" > "+server+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			// Guest a answers the neighbour's DHCP as a rogue server would.
			stop := make(chan struct{})
			go ra.rogueDHCP(am, aAddr, netip.MustParseAddr("192.168.100.200"), stop)
			defer close(stop)
			lease := func(g *testns.NS) string {
				t.Helper()
				_ = os.Remove(server)
				if _, stderr, err := g.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", script); err != nil {
					t.Fatalf("no DHCP lease: %v\n%s", err, stderr)
				}
				got, _ := os.ReadFile(server)
				return strings.TrimSpace(string(got))
			}
			rogueID := append([]byte{54, 4}, aAddr.AsSlice()...) // option 54, server id: guest a
			rc, err := openRaw(c)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.close()
			if got := lease(c); got != gwAddr.String() {
				t.Errorf("the neighbour's lease is from server %q, want the gateway %s", got, gwAddr)
			}
			if rc.seen(rogueID, 300*time.Millisecond) {
				t.Error("the rogue server's answer reached the neighbour")
			}
			if _, _, err := c.Run("ping", "-c", "1", "-W", "2", gwAddr.String()); err != nil {
				t.Errorf("a guest with a DHCP lease does not reach the gateway: %v\n%s", err, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
			}
			if extra == "" && !strings.Contains(h.MustRun("nft", "list", "set", "bridge", "kvmnet-default", "leases"), macOf(c).String()) {
				t.Errorf("the daemon did not tell the guard of the lease:\n%s", h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"))
			}
			// The check can see a rogue win: out of the guard's group, guest
			// a's answers reach a fourth guest first.
			h.MustRun("ip", "link", "set", "vnetA", "group", "default")
			d := h.guest("vnetD", "", "")
			h.mustHelper("kvmnet-natup", "vnetD")
			rd, err := openRaw(d)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.close()
			go d.Run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "3", "-s", "/bin/true")
			if !rd.seen(rogueID, 5*time.Second) {
				t.Error("unguarded, the rogue server's answer does not reach a fourth guest: the check sees nothing")
			}
		})
	}
}

// TestIsolateGuests: isolate_guests = true: guests reach the gateway, never
// each other, either way; the ports are isolated bridge ports.
func TestIsolateGuests(t *testing.T) {
	h, a, b := guardWorld(t, "nftables", "isolate_guests = true\n")
	for _, p := range []string{"vnetA", "vnetB"} {
		if out := h.MustRun("bridge", "-d", "link", "show", "dev", p); !strings.Contains(out, "isolated on") {
			t.Errorf("%s is not an isolated port:\n%s", p, out)
		}
	}
	if _, _, err := a.Run("ping", "-c", "1", "-W", "1", bAddr.String()); err == nil {
		t.Error("guest a reaches guest b")
	}
	if _, _, err := b.Run("ping", "-c", "1", "-W", "1", aAddr.String()); err == nil {
		t.Error("guest b reaches guest a")
	}
	// A warm front's up isolates the port too.
	if _, err := os.Stat(filepath.Join(h.State, "default.hot")); err != nil {
		t.Errorf("no hot file: the next up is not a warm front's: %v", err)
	}
	c := h.guest("vnetC", "192.168.100.12/24", gwAddr.String())
	h.mustHelper("kvmnet-natup", "vnetC")
	if out := h.MustRun("bridge", "-d", "link", "show", "dev", "vnetC"); !strings.Contains(out, "isolated on") {
		t.Errorf("vnetC, attached by a warm front, is not an isolated port:\n%s", out)
	}
	if _, _, err := c.Run("ping", "-c", "1", "-W", "2", gwAddr.String()); err != nil {
		t.Errorf("guest c does not reach the gateway: %v", err)
	}
	if _, _, err := c.Run("ping", "-c", "1", "-W", "1", aAddr.String()); err == nil {
		t.Error("guest c reaches guest a")
	}
}

// TestGuardPortReused: a VM started again, on a new port of the same name
// with its MAC and address, takes them back: the guard forgot the port that
// left (the daemon when its link went, the engine's up too).
func TestGuardPortReused(t *testing.T) {
	h, a, _ := guardWorld(t, "nftables", "")
	am := macOf(a)
	h.mustHelper("kvmnet-natdown", "vnetA")
	h.MustRun("ip", "link", "del", "vnetA")
	a2 := h.guest("vnetA", aAddr.String()+"/24", gwAddr.String())
	a2.MustRun("ip", "link", "set", "eth0", "address", am.String())
	h.mustHelper("kvmnet-natup", "vnetA")
	if _, _, err := a2.Run("ping", "-c", "2", "-W", "2", gwAddr.String()); err != nil {
		t.Errorf("a VM started again with its MAC and address does not reach the gateway: %v\n%s\n%s", err, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"), h.DaemonLogs())
	}
}

// TestGuardPortReusedPinned: on a network `kvmnet up` pinned, a VM killed
// (its port deleted, no down) and started again on a warm front's new port
// takes its MAC and address back: the daemon forgot the port as it went,
// though it was the last, and gc left the network up.
func TestGuardPortReusedPinned(t *testing.T) {
	h := newHost(t, "nftables", "[network.default]\nports = \"any\"\n")
	h.operator("up", "default")
	a := h.guest("vnetA", aAddr.String()+"/24", gwAddr.String())
	h.mustHelper("kvmnet-natup", "vnetA")
	if _, _, err := a.Run("ping", "-c", "1", "-W", "2", gwAddr.String()); err != nil {
		t.Fatalf("guest a does not reach the gateway: %v", err)
	}
	am := macOf(a)
	h.MustRun("ip", "link", "del", "vnetA") // killed: no downscript
	a2 := h.guest("vnetA", aAddr.String()+"/24", gwAddr.String())
	a2.MustRun("ip", "link", "set", "eth0", "address", am.String())
	h.mustHelper("kvmnet-natup", "vnetA")
	var err error
	for range 20 { // the daemon forgets within a moment of the deletion
		if _, _, err = a2.Run("ping", "-c", "1", "-W", "1", gwAddr.String()); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("a VM started again on a pinned network does not reach the gateway: %v\n%s\n%s", err, h.MustRun("nft", "list", "table", "bridge", "kvmnet-default"), h.DaemonLogs())
	}
}

// TestGuardSLAAC: with the guard on, a guest takes its IPv6 address from the
// daemon's router advertisements (SLAAC) and reaches the IPv6 gateway from
// it, while a source outside link-local and the prefix reaches no one.
func TestGuardSLAAC(t *testing.T) {
	h, a, b := guardWorld(t, "nftables", "address6 = \"fd00:6b76:6d6e::1/64\"\n")
	var addr string
	for range 50 {
		out := a.MustRun("ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
		if f := strings.Fields(out); len(f) > 3 && !strings.Contains(out, "tentative") {
			addr = f[3]
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(addr, "fd00:6b76:6d6e:0:") {
		t.Fatalf("guest a took no SLAAC address of the prefix: %q\n%s", addr, h.DaemonLogs())
	}
	if _, _, err := a.Run("ping", "-6", "-c", "1", "-W", "2", "fd00:6b76:6d6e::1"); err != nil {
		t.Errorf("guest a does not reach the IPv6 gateway from %s: %v", addr, err)
	}
	ra, rb := rawPair(t, a, b)
	echo := func(src netip.Addr, mark string) []byte {
		msg := append([]byte{128, 0, 0, 0, 0, 1, 0, 1}, mark...)
		return ether(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, macOf(a), 0x86dd, ipv6icmp(src, netip.MustParseAddr("ff02::1"), msg))
	}
	if err := ra.send(echo(netip.MustParseAddr("fe80::5054:ff:fe00:77"), "kvmnet-guard-v6-linklocal")); err != nil {
		t.Fatal(err)
	}
	if !rb.seen([]byte("kvmnet-guard-v6-linklocal"), 2*time.Second) {
		t.Fatal("guest b does not see guest a's link-local echo: the test cannot see anything")
	}
	for _, src := range []string{"2001:db8::66", "fd00:6b76:6d6e::1"} {
		if err := ra.send(echo(netip.MustParseAddr(src), "kvmnet-guard-v6-"+src)); err != nil {
			t.Fatal(err)
		}
		if rb.seen([]byte("kvmnet-guard-v6-"+src), 700*time.Millisecond) {
			t.Errorf("guest b received guest a's echo from %s", src)
		}
	}
}
