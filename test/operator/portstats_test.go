package operator

import (
	"net"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestPortTraffic: `kvmnet status --json` shows a VM port's counters, which
// grow by what its guest sent (200 datagrams of 1042-byte frames, give or
// take the guest's own ARP and IPv6 chatter), and the port's limits as the
// kernel holds them: the network's both ways and a static host's own; the
// table shows the same in its TRAFFIC rows.
func TestPortTraffic(t *testing.T) {
	h := newHostFW(t, "nftables", `[network.bw]
bridge = "kvbw0"
mode = "hostonly"
address = "10.66.0.1/24"
dhcp = false
dns = false
ports = "any"
bandwidth = { in = "20mbit", out = "10mbit" }
[[network.bw.host]]
mac = "52:54:00:00:66:21"
ip = "10.66.0.21"
bandwidth = { out = "5mbit" }
`)
	testhost.LoadIfb(t)
	g := testns.New(t)
	h.MustRun("ip", "link", "add", "vbw0", "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	g.MustRun("ip", "link", "set", "eth0", "address", "52:54:00:00:66:21", "up")
	g.MustRun("ip", "addr", "add", "10.66.0.21/24", "dev", "eth0")
	h.helper("kvmnet-natup@bw", "vbw0")
	port := func() portJSON {
		s := h.status("bw")
		for _, p := range s.Networks[s.network(t, "bw")].Ports {
			if p.Name == "vbw0" {
				return p
			}
		}
		t.Fatal("status shows no port vbw0")
		return portJSON{}
	}
	g.MustRun("ping", "-c", "1", "-W", "2", "10.66.0.1") // the gateway's MAC first: the datagrams must not wait in the ARP queue
	before := port()
	if before.Stats == nil || before.Limits == nil {
		t.Fatalf("port vbw0 without stats or limits: %+v", before)
	}
	if l := before.Limits; l.In != 20e6 || l.Out != 10e6 || len(l.Hosts) != 1 || l.Hosts[0].MAC != "52:54:00:00:66:21" || l.Hosts[0].In != 0 || l.Hosts[0].Out != 5e6 {
		t.Errorf("limits %+v, want in 20e6, out 10e6, and host 52:54:00:00:66:21 out 5e6", *l)
	}
	const n, frame = 200, 14 + 20 + 8 + 1000
	if err := g.Do(func() error {
		// Unconnected: the host's port unreachable answers must not fail the next write.
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(10, 66, 0, 1), Port: 9}
		for range n {
			if _, err := c.WriteTo(make([]byte, 1000), to); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after := port()
	pkts, bytes := after.Stats.RxPackets-before.Stats.RxPackets, after.Stats.RxBytes-before.Stats.RxBytes
	if pkts < n || pkts > n+20 || bytes < n*frame || bytes > n*frame+20*200 {
		t.Errorf("rx grew by %d packets, %d bytes; want %d packets, %d bytes (and a little chatter)", pkts, bytes, n, n*frame)
	}
	table := h.must("status", "bw")
	if !strings.Contains(table, "in 20Mbit; out 10Mbit; 52:54:00:00:66:21: in -, out 5Mbit") {
		t.Errorf("the table shows no TRAFFIC row with the limits:\n%s", table)
	}
	h.helper("kvmnet-natdown@bw", "vbw0")
}
