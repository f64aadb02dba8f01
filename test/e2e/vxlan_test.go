package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// One network, lab (10.77.0.0/24, VNI 4242), across three hypervisors on an
// underlay bridge: host 1 is its NAT gateway (DHCP/DNS, a static host for
// g2, the way out), set up with `kvmnet up`; hosts 2 and 3 carry the overlay
// only (isolated), set up by their guests' helpers.
const (
	labGW     = "10.77.0.1"
	g2IP      = "10.77.0.10"
	vxlanHead = `
[network.lab]
bridge = "kvlab0"
mode = "%s"
%s
[network.lab.vxlan]
id = 4242
peers = [%s]
`
)

// underlayHost is one hypervisor on the underlay: its namespace, its own
// config file and helpers (a world of its own, without the outside host).
func underlayHost(t *testing.T, ul *testns.NS, i int, w *world) *world {
	t.Helper()
	if w == nil {
		dir := t.TempDir() // first: removed after the namespace's cleanup has killed its daemon
		w = &world{t: t, host: testns.New(t), dir: dir}
		w.conf = filepath.Join(w.dir, "kvmnet.toml")
		w.env = append(os.Environ(), "KVMNET_CONFIG="+w.conf)
	}
	h, port := w.host.Name, fmt.Sprintf("h%d", i)
	ul.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "ul0", "netns", h)
	ul.MustRun("ip", "link", "set", port, "addrgenmode", "none", "master", "ulbr", "up")
	w.host.MustRun("ip", "link", "set", "ul0", "addrgenmode", "none")
	w.host.MustRun("ip", "addr", "add", fmt.Sprintf("198.51.100.%d/24", i), "dev", "ul0")
	w.host.MustRun("ip", "link", "set", "ul0", "up")
	return w
}

// writeConf gives a hypervisor its configuration: network lab in mode, with
// extra keys, and every host of the underlay but itself as a peer.
func (w *world) writeConf(i int, mode, extra string) {
	var peers []string
	for p := 1; p <= 3; p++ {
		if p != i {
			peers = append(peers, fmt.Sprintf("%q", fmt.Sprintf("198.51.100.%d", p)))
		}
	}
	conf := fmt.Sprintf("lease_dir = %q\n", filepath.Join(w.dir, "leases")) + fmt.Sprintf(vxlanHead, mode, extra, strings.Join(peers, ", "))
	if err := os.WriteFile(w.conf, []byte(conf), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// settled waits until the host's underlay link has its carrier, then takes
// the snapshot its guests' exit must restore.
func (w *world) settled() {
	w.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if strings.Contains(w.host.MustRun("ip", "-br", "link", "show", "ul0"), " UP ") {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("ul0 of %s has no carrier", w.host.Name)
		}
	}
	w.before = w.snap()
}

// TestVXLANThreeHosts: a guest on host 2 gets its static lease from host 1
// and reaches the outside host through it, masqueraded; a guest on host 3
// gets a lease and reaches the first, by address and by name; both see MTU 1450 on the 1500-byte
// underlay, and a full-size packet with DF crosses hosts. Once the guests
// stop and `kvmnet down lab` runs on host 1, no host keeps a bridge, VXLAN
// link, FDB entry or kvmnet rule.
func TestVXLANThreeHosts(t *testing.T) {
	t.Parallel()
	setup(t)
	tool := filepath.Join(binDir, "kvmnet")
	if _, err := os.Stat(tool); err != nil {
		t.Skipf("no operator tool %s", tool)
	}
	ul := testns.New(t)
	ul.MustRun("ip", "link", "add", "ulbr", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	ul.MustRun("ip", "link", "set", "ulbr", "up")

	g2MAC := newMAC()
	h1 := underlayHost(t, ul, 1, newWorld(t, ""))
	h1.writeConf(1, "nat", fmt.Sprintf("address = \"%s/24\"\n[[network.lab.host]]\nmac = %q\nip = %q\nname = \"g2\"", labGW, g2MAC, g2IP))
	h2, h3 := underlayHost(t, ul, 2, nil), underlayHost(t, ul, 3, nil)
	h2.writeConf(2, "isolated", "")
	h3.writeConf(3, "isolated", "")
	for _, h := range []*world{h1, h2, h3} {
		h.settled()
	}
	if out, err := h1.run(tool, "up", "lab"); err != nil {
		t.Fatalf("kvmnet up lab on host 1: %v\n%s", err, out)
	}

	var dfPing string
	var wg sync.WaitGroup
	var b2, b3 *boot
	wg.Add(2)
	go func() {
		defer wg.Done()
		b2 = h2.boot(guest{Name: "g2", MAC: g2MAC, Net: "dhcp", Serve: []int{8080}, Hold: 10,
			Check: []string{toOutside}, Up: h2.helper("ifup", "lab"), Down: h2.helper("ifdown", "lab"),
			OnLine: func(l string, _ *os.Process) {
				if strings.HasPrefix(l, "done") {
					// From the gateway host across the overlay, with DF: 1400
					// bytes of payload, then the guest's full MTU (1422+28).
					out, err := h1.run("sh", "-c", "ping -c 1 -W 5 -M do -s 1400 "+g2IP+" && ping -c 1 -W 5 -M do -s 1422 "+g2IP)
					dfPing = fmt.Sprintf("%v\n%s", err, out)
				}
			}})[0]
	}()
	go func() {
		defer wg.Done()
		b3 = h3.boot(guest{Name: "g3", Net: "dhcp", Check: []string{"tcp:" + g2IP + ":8080", "dns:g2"},
			Up: h3.helper("ifup", "lab"), Down: h3.helper("ifdown", "lab")})[0]
	}()
	wg.Wait()

	for _, b := range []*boot{b2, b3} {
		b.ran(t)
		lease, _ := b.find("lease")
		if !strings.Contains(lease, "router="+labGW) || !strings.Contains(lease, " mtu=1450 ") {
			b.dump(t)
			t.Errorf("guest %s: lease %q, want router %s and mtu 1450", b.g.Name, lease, labGW)
		}
	}
	if lease, _ := b2.find("lease"); !strings.HasPrefix(lease, "ip="+g2IP+"/24 ") {
		t.Errorf("g2 did not get its static lease %s: %q", g2IP, lease)
	}
	masqueraded(t, h1, b2)
	if r := b3.reached(t, "tcp:"+g2IP+":8080"); r != "kvmnet-guest g2" {
		t.Errorf("g3 got %q from g2", r)
	}
	if r := b3.reached(t, "dns:g2"); r != g2IP {
		t.Errorf("g3 resolved g2 to %q, want %s", r, g2IP)
	}
	if !strings.HasPrefix(dfPing, "<nil>") {
		t.Errorf("ping with DF from host 1 to g2 on host 2: %s", dfPing)
	}

	if out, err := h1.run(tool, "down", "lab"); err != nil {
		t.Fatalf("kvmnet down lab on host 1: %v\n%s", err, out)
	}
	for _, h := range []*world{h1, h2, h3} {
		h.checkRestored()
		if fdb := h.host.MustRun("bridge", "fdb", "show"); strings.Contains(fdb, " dst ") || strings.Contains(fdb, "vx-lab") {
			t.Errorf("%s keeps overlay FDB entries:\n%s", h.host.Name, fdb)
		}
	}
}
