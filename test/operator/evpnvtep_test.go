package operator

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// allowed is the host's VTEP set: the hosts (N of 198.51.100.N) whose VXLAN
// datagrams its rules let through, sorted; nil without the set.
func (h *fabricHost) allowed() []int {
	out, _, err := h.Run("nft", "list", "set", "inet", "kvmnet", "vtep-lab")
	if err != nil {
		return nil
	}
	hosts := []int{}
	for _, m := range regexp.MustCompile(`198\.51\.100\.(\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		hosts = append(hosts, n)
	}
	slices.Sort(hosts)
	return hosts
}

// otherHosts are the numbers of the hosts of hs but h.
func otherHosts(hs []*fabricHost, h *fabricHost) []int {
	var others []int
	for _, o := range hs {
		if o != h {
			others = append(others, o.i)
		}
	}
	return others
}

// waitAllowed waits until the host's VTEP set is exactly want.
func (h *fabricHost) waitAllowed(t *testing.T, want ...int) {
	t.Helper()
	waitUntil(t, 20*time.Second, fmt.Sprintf("host %d's VTEP set %v", h.i, want), func() bool {
		return slices.Equal(h.allowed(), want)
	})
}

// inEchos is how many ICMP echo requests the guest's stack has taken.
func inEchos(t *testing.T, g *testns.NS) int {
	t.Helper()
	lines := strings.Split(g.MustRun("cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "Icmp:" || len(values) != len(names) || values[0] != "Icmp:" {
			continue
		}
		if k := slices.Index(names, "InEchos"); k > 0 {
			n, err := strconv.Atoi(values[k])
			if err != nil {
				t.Fatalf("Icmp InEchos %q", values[k])
			}
			return n
		}
	}
	t.Fatal("no Icmp InEchos in the guest's /proc/net/snmp")
	return 0
}

// stranger is a host on the underlay, 198.51.100.99, that runs no FRR and
// is no VTEP of the fabric, with a VXLAN link of the fabric's VNI and port
// of its own (10.77.0.250 on it): whatever it sends is a stranger's VXLAN.
func stranger(t *testing.T, ul *testns.NS) *testns.NS {
	s := testns.New(t)
	ul.MustRun("ip", "link", "add", "hs", "type", "veth", "peer", "name", "ul0", "netns", s.Name)
	ul.MustRun("ip", "link", "set", "hs", "addrgenmode", "none", "master", "ulbr", "up")
	s.MustRun("ip", "addr", "add", "198.51.100.99/24", "dev", "ul0")
	s.MustRun("ip", "link", "set", "ul0", "up")
	s.MustRun("ip", "link", "add", "vxs", "type", "vxlan", "id", "4242", "dstport", "4789", "local", "198.51.100.99", "dev", "ul0", "nolearning")
	s.MustRun("ip", "addr", "add", "10.77.0.250/24", "dev", "vxs")
	s.MustRun("ip", "link", "set", "vxs", "up")
	return s
}

// reaches reports whether the stranger's pings, sent over VXLAN straight to
// h's VTEP and to the MAC of h's guest, arrive at that guest's stack.
func reaches(t *testing.T, s *testns.NS, h *fabricHost) bool {
	t.Helper()
	s.MustRun("bridge", "fdb", "replace", h.mac, "dev", "vxs", "dst", fmt.Sprintf("198.51.100.%d", h.i))
	s.MustRun("ip", "neigh", "replace", h.ip, "lladdr", h.mac, "dev", "vxs", "nud", "permanent")
	before := inEchos(t, h.guest)
	_, _, _ = s.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", h.ip)
	return inEchos(t, h.guest) > before
}

// TestEVPNVTEPFilter: on the nftables backend each host's VXLAN port takes
// only the VTEPs zebra installed, which the resident process (host 1's
// DHCP/DNS daemon, the others' watch-only role) keeps in the network's set.
// A stranger on the underlay injecting VXLAN of the VNI reaches no guest,
// the fabric's hosts do; a fourth host is let in with nothing changed on the
// others; a host that leaves is taken out of the others' sets. A set that
// another program removed comes back whole with the rule watcher's heal.
func TestEVPNVTEPFilter(t *testing.T) {
	ul, hs := newFabric(t, "nftables")
	s := stranger(t, ul)
	var before [][2]string
	for _, h := range hs {
		before = append(before, h.clean())
	}
	defer func() {
		if t.Failed() {
			for _, h := range hs {
				out, _, _ := h.Run("nft", "list", "table", "inet", "kvmnet")
				t.Logf("%s (host %d):\nfdb:\n%s\n%s", h.Name, h.i, h.fdb(), out)
			}
		}
	}()
	hs[0].must("up", "lab")
	for _, h := range hs {
		h.attach(t)
	}
	for _, h := range hs {
		h.waitAllowed(t, otherHosts(hs, h)...)
	}
	for _, h := range hs {
		h.leased(t)
	}
	if !pingsFrom(hs[1].guest, hs[2].ip) || !pingsFrom(hs[2].guest, hs[0].ip) {
		t.Errorf("guests do not reach each other across hosts through the VTEP filter")
	}

	// The stranger reaches neither the watch-only role's host nor the
	// daemon's; let in by hand, it reaches the guest, which proves the
	// injection would arrive but for the set.
	for _, h := range hs[:2] {
		if reaches(t, s, h) {
			t.Errorf("the stranger's VXLAN reaches host %d's guest", h.i)
		}
	}
	hs[1].MustRun("nft", "add", "element", "inet", "kvmnet", "vtep-lab", "{ 198.51.100.99 }")
	if !reaches(t, s, hs[1]) {
		t.Errorf("the stranger let into host 2's set does not reach its guest: the test proves nothing")
	}
	hs[1].MustRun("nft", "delete", "element", "inet", "kvmnet", "vtep-lab", "{ 198.51.100.99 }")
	// Its bridge port learns nothing in evpn, and neither does the link:
	// no entry of the stranger's MAC or address.
	smac := strings.TrimSpace(s.MustRun("cat", "/sys/class/net/vxs/address"))
	if fdb := hs[1].MustRun("bridge", "fdb", "show", "br", "kvlab0"); strings.Contains(fdb, smac) || strings.Contains(fdb, "198.51.100.99") {
		t.Errorf("host 2 learnt the stranger (%s):\n%s", smac, fdb)
	}

	// Another program takes host 2's rules and set away: the rule watcher's
	// heal makes the set again, and it holds the fabric's VTEPs.
	hs[1].MustRun("nft", "flush", "chain", "inet", "kvmnet", "in-lab")
	hs[1].MustRun("nft", "delete", "set", "inet", "kvmnet", "vtep-lab")
	hs[1].waitAllowed(t, 1, 3)
	if reaches(t, s, hs[1]) {
		t.Error("the stranger's VXLAN reaches host 2's guest after the heal")
	}

	// A fourth host: the others' residents let it in, their files untouched.
	h4 := newFabricHostFW(t, ul, 4, "nftables")
	hs = append(hs, h4)
	before = append(before, h4.clean())
	h4.attach(t)
	// How long host 1's set lags zebra's entry for host 4, polled every 5 ms.
	var installed time.Time
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if installed.IsZero() && strings.Contains(hs[0].fdb(), "00:00:00:00:00:00 dst 198.51.100.4 ") {
			installed = time.Now()
		}
		if slices.Contains(hs[0].allowed(), 4) {
			if !installed.IsZero() {
				t.Logf("host 1's set took host 4 within %s of zebra's entry (polled)", time.Since(installed).Round(time.Millisecond))
			}
			break
		}
	}
	h4.waitAllowed(t, 1, 2, 3)
	for _, h := range hs[:3] {
		h.waitAllowed(t, otherHosts(hs, h)...)
	}
	h4.leased(t)
	if !pingsFrom(h4.guest, hs[1].ip) || !pingsFrom(hs[2].guest, h4.ip) {
		t.Errorf("the guest on host 4 and the others' do not reach each other")
	}

	// Host 3's last guest leaves: the others take it out of their sets.
	hs[2].detach()
	hs[2].Settle()
	for _, h := range []*fabricHost{hs[0], hs[1], h4} {
		h.waitAllowed(t, otherHosts([]*fabricHost{hs[0], hs[1], h4}, h)...)
	}

	for _, h := range []*fabricHost{hs[1], h4, hs[0]} {
		h.detach()
	}
	hs[0].must("down", "lab")
	for i, h := range hs {
		h.stopFRR()
		h.AssertClean(before[i][0], before[i][1])
		if out := h.MustRun("nft", "list", "tables"); strings.Contains(out, "kvmnet") {
			t.Errorf("host %d keeps kvmnet's tables:\n%s", h.i, out)
		}
	}
}
