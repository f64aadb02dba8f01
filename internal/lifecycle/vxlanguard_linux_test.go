package lifecycle

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestOverlayOnlyPeers: host A's VXLAN port is open to the whole underlay,
// where a third host (not a peer) sends a VXLAN datagram of the network's
// VNI carrying an ARP request: it is dropped, and the bridge learns nothing
// of it. The same datagram from B, the peer, is taken (its inner MAC shows
// in the VXLAN's forwarding table: the check can see one taken), and the
// hosts still ping each other across the overlay. For both firewall backends.
func TestOverlayOnlyPeers(t *testing.T) {
	for _, fw := range []string{"nftables", "iptables"} {
		t.Run(fw, func(t *testing.T) { testOverlayOnlyPeers(t, fw) })
	}
}

func testOverlayOnlyPeers(t *testing.T, fw string) {
	hosts, nets := overlayPairOn(t, true, fw)
	a, b := hosts[0], hosts[1]
	stranger := testns.New(t)
	a.MustRun("ip", "link", "add", "ul1", "type", "veth", "peer", "name", "eth0", "netns", stranger.Name)
	a.MustRun("ip", "addr", "add", "203.0.113.1/24", "dev", "ul1")
	a.MustRun("ip", "link", "set", "ul1", "up")
	stranger.MustRun("ip", "addr", "add", "203.0.113.9/24", "dev", "eth0")
	stranger.MustRun("ip", "link", "set", "eth0", "up")
	var before [2][2]string
	for i, h := range hosts {
		h.SetLinks(h.Links())
		before[i] = [2]string{h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")}
		inNS(t, h, func(d state.Dir) error { _, err := Pin(d, nets[i]); return err })
	}
	learnt := func(mac string) bool {
		return strings.Contains(a.MustRun("bridge", "fdb", "show", "dev", "vx-lab"), mac)
	}
	const strangerMAC, peerMAC = "02:66:66:66:66:66", "02:77:77:77:77:77"
	for range 5 {
		injectARP(t, stranger, "203.0.113.1", 4242, strangerMAC)
		time.Sleep(20 * time.Millisecond)
	}
	if learnt(strangerMAC) {
		t.Errorf("a host that is no peer injected a frame into the overlay:\n%s", a.MustRun("bridge", "fdb", "show", "dev", "vx-lab"))
	}
	testhost.WaitFor(t, func() bool {
		injectARP(t, b.NS, "198.51.100.1", 4242, peerMAC)
		return learnt(peerMAC)
	}, &testhost.Buffer{})
	a.MustRun("ping", "-c", "1", "-W", "5", "10.99.0.2")

	for i, h := range hosts {
		inNS(t, h, func(d state.Dir) error { _, err := Release(d, "lab", false); return err })
		h.AssertClean(before[i][0], before[i][1])
	}
}

// injectARP sends, from namespace ns, a VXLAN datagram of vni to dst's port
// 4789 carrying a broadcast ARP request from mac for 10.99.0.1.
func injectARP(t *testing.T, ns *testns.NS, dst string, vni uint32, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	pkt := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0} // VXLAN: the I flag, the VNI
	pkt = append(pkt, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)                       // Ethernet: broadcast,
	pkt = append(append(pkt, hw...), 0x08, 0x06)                                // from mac, ARP
	pkt = append(pkt, 0, 1, 0x08, 0, 6, 4, 0, 1)                                // Ethernet/IPv4, a request
	pkt = append(append(pkt, hw...), 10, 99, 0, 66)                             // sender
	pkt = append(pkt, 0, 0, 0, 0, 0, 0, 10, 99, 0, 1)                           // target
	err = ns.Do(func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(dst, "4789"))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(pkt)
		return err
	})
	if err != nil {
		t.Fatalf("send VXLAN datagram to %s: %v", dst, err)
	}
}
