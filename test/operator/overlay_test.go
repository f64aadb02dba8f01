package operator

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// overlayHosts are two hypervisors on an underlay veth (198.51.100.1, .2),
// each with network lab on bridge kvlab0 and VNI 4242; host 1 is its
// host-only gateway (10.99.0.1) and host 2 a second host-only address on it
// (10.99.0.2), so that the hosts can ping across: an isolated host would drop it.
func overlayHosts(t *testing.T) [2]*host {
	conf := `
[network.lab]
bridge = "kvlab0"
mode = "%s"
%s
[network.lab.vxlan]
id = 4242
peers = ["198.51.100.%d"]
`
	hs := [2]*host{
		newHost(t, fmt.Sprintf(conf, "hostonly", "address = \"10.99.0.1/24\"\ndhcp = false\ndns = false", 2)),
		newHost(t, fmt.Sprintf(conf, "hostonly", "address = \"10.99.0.2/24\"\ndhcp = false\ndns = false", 1)),
	}
	hs[0].MustRun("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", hs[1].Name)
	for i, h := range hs {
		h.MustRun("ip", "addr", "add", fmt.Sprintf("198.51.100.%d/24", i+1), "dev", "ul0")
		h.MustRun("ip", "link", "set", "ul0", "up")
	}
	for _, h := range hs {
		testhost.WaitFor(t, func() bool { return strings.Contains(h.MustRun("ip", "-br", "link", "show", "ul0"), " UP ") }, &testhost.Buffer{})
		h.SetLinks(h.Links())
	}
	return hs
}

// TestOverlayStatus: status shows the overlay's link, VNI and MTU, and a peer
// as heard from once a frame came from it; down removes the link.
func TestOverlayStatus(t *testing.T) {
	hs := overlayHosts(t)
	var before [2][2]string
	for i, h := range hs {
		before[i] = [2]string{h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")}
		h.must("up", "lab")
	}
	v := hs[0].status("lab").Networks[0].VXLAN
	if v == nil || v.Device != "vx-lab" || !v.Exists || !v.Owned || v.VNI != 4242 || v.Port != 4789 || v.MTU != 1450 ||
		len(v.Peers) != 1 || v.Peers[0].Address != "198.51.100.2" || !v.Peers[0].Flood {
		t.Fatalf("host 1's overlay: %+v", v)
	}
	for _, p := range hs[0].status("lab").Networks[0].Ports {
		if p.Name == "vx-lab" && (!p.KVMnet || p.Kind != "vxlan" || !p.Attached) {
			t.Errorf("port vx-lab: %+v", p)
		}
	}
	hs[0].MustRun("ping", "-c", "1", "-W", "5", "-M", "do", "-s", "1422", "10.99.0.2")
	if v := hs[0].status("lab").Networks[0].VXLAN; !v.Peers[0].Heard {
		t.Errorf("host 1 has not heard from its peer after a ping: %+v", v)
	}
	table := hs[1].must("status", "lab")
	if !strings.Contains(table, "vx-lab (made)") || !strings.Contains(table, "198.51.100.1 (heard)") {
		t.Errorf("status table:\n%s", table)
	}
	for i, h := range hs {
		h.must("down", "lab")
		h.AssertClean(before[i][0], before[i][1])
	}
}

// TestOverlayDoctor: doctor warns when the underlay leaves guests less than
// 1280 bytes and when a peer has no route; --fix puts back a deleted flood
// entry and makes a deleted link again.
func TestOverlayDoctor(t *testing.T) {
	h := newHost(t, "[network.lab]\nmode = \"isolated\"\n[network.lab.vxlan]\nid = 7\npeers = [\"198.51.100.2\", \"192.0.2.9\"]\n")
	h.MustRun("ip", "link", "add", "ul0", "mtu", "1300", "type", "veth", "peer", "name", "ul1")
	h.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "ul0")
	h.MustRun("ip", "link", "set", "ul0", "up")
	h.MustRun("ip", "link", "set", "ul1", "up")
	h.expectFinding("problem", "network lab: the underlay's MTU leaves guests 1250 bytes after VXLAN's 50, less than 1280", 1)
	h.expectFinding("problem", "network lab: overlay peer 192.0.2.9 is unreachable", 1)
	h.MustRun("ip", "link", "set", "ul0", "mtu", "1500")
	h.MustRun("ip", "route", "add", "192.0.2.0/24", "dev", "ul0")
	h.must("up", "lab")
	h.MustRun("bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vx-lab", "dst", "198.51.100.2")
	h.expectFinding("problem", "the overlay's peers differ from the file's", 1)
	h.fix()
	if fdb := h.MustRun("bridge", "fdb", "show", "dev", "vx-lab"); !strings.Contains(fdb, "dst 198.51.100.2") {
		t.Errorf("after --fix, vx-lab's fdb:\n%s", fdb)
	}
	h.MustRun("ip", "link", "del", "vx-lab")
	h.expectFinding("problem", "the overlay's link vx-lab is gone", 1)
	h.fix()
	if fdb := h.MustRun("bridge", "fdb", "show", "dev", "vx-lab"); !strings.Contains(fdb, "dst 192.0.2.9") {
		t.Errorf("after --fix, vx-lab's fdb:\n%s", fdb)
	}
	h.must("down", "lab")
}
