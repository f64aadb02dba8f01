package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The default NAT network (zero config): bridge br0, gateway 192.168.100.1/24.
const (
	natGW  = "192.168.100.1"
	natNet = "/24," + natGW
)

var toOutside = "tcp:" + outsideIP + ":80"

// masqueraded asserts the guest's request reached the outside host, and that
// it arrived from the hypervisor's uplink address, not from the guest's own.
func masqueraded(t *testing.T, w *world, b *boot) {
	t.Helper()
	reply := b.reached(t, toOutside)
	if want := "kvmnet-outside saw " + uplinkIP; reply != want {
		t.Errorf("guest %s: outside answered %q, want %q (masquerade)", b.g.Name, reply, want)
	}
	for _, src := range w.seen() {
		if src != uplinkIP {
			t.Errorf("outside host saw a request from %s, want only %s (masquerade)", src, uplinkIP)
		}
	}
}

func TestNATOneGuest(t *testing.T) { matrix(t, testNATOneGuest) }

func testNATOneGuest(t *testing.T, fw string) {
	t.Parallel()
	w := newWorld(t, fwConf(fw))
	b := w.boot(guest{
		Name: "g1", Net: "192.168.100.10" + natNet,
		Check: []string{toOutside, "ping:" + outsideIP, "tcp:" + natGW + ":80"},
		Up:    w.helper("natup", ""), Down: w.helper("natdown", ""),
	})[0]
	b.ran(t)
	masqueraded(t, w, b)
	if reply := b.reached(t, "tcp:"+natGW+":80"); reply != "kvmnet-host saw 192.168.100.10" {
		t.Errorf("host server on the bridge address answered %q", reply)
	}
	if len(w.seen()) == 0 {
		t.Errorf("the outside host saw no request")
	}
	w.checkRestored()
}

// natPair boots two guests on the default NAT network at the same moment;
// each serves a port, reaches the other's and the outside host.
func natPair(t *testing.T, w *world) {
	t.Helper()
	up, down := w.helper("natup", ""), w.helper("natdown", "")
	a, b := "192.168.100.11", "192.168.100.12"
	bs := w.boot(
		guest{Name: "g1", Net: a + natNet, Serve: []int{8080}, Hold: 5,
			Check: []string{"tcp:" + b + ":8080", toOutside}, Up: up, Down: down},
		guest{Name: "g2", Net: b + natNet, Serve: []int{8080}, Hold: 5,
			Check: []string{"tcp:" + a + ":8080", toOutside}, Up: up, Down: down},
	)
	for _, g := range bs {
		g.ran(t)
		masqueraded(t, w, g)
	}
	if r := bs[0].reached(t, "tcp:"+b+":8080"); r != "kvmnet-guest g2" {
		t.Errorf("g1 got %q from g2", r)
	}
	if r := bs[1].reached(t, "tcp:"+a+":8080"); r != "kvmnet-guest g1" {
		t.Errorf("g2 got %q from g1", r)
	}
	w.checkRestored()
}

func TestNATTwoGuestsAtOnce(t *testing.T) { matrix(t, testNATTwoGuestsAtOnce) }

func testNATTwoGuestsAtOnce(t *testing.T, fw string) {
	t.Parallel()
	natPair(t, newWorld(t, fwConf(fw)))
}

// A Docker host sets the FORWARD policy to DROP; the NAT network must still work.
func TestNATWithForwardDropPolicy(t *testing.T) { matrix(t, testNATWithForwardDropPolicy) }

func testNATWithForwardDropPolicy(t *testing.T, fw string) {
	t.Parallel()
	w := newWorld(t, fwConf(fw), []string{"iptables", "-P", "FORWARD", "DROP"})
	if !strings.Contains(w.before.iptables, ":FORWARD DROP") {
		t.Fatalf("FORWARD policy not DROP in the host namespace:\n%s", w.before.iptables)
	}
	natPair(t, w)
}

// Isolated (kvmnet-ifup, zero config): guests reach each other, not the host or outside.
func TestIsolated(t *testing.T) { matrix(t, testIsolated) }

func testIsolated(t *testing.T, fw string) {
	t.Parallel()
	// A host that forwards for other reasons must still not carry isolated traffic.
	w := newWorld(t, fwConf(fw), []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"})
	up, down := w.helper("ifup", ""), w.helper("ifdown", "")
	// The guests are given a gateway that would be the NAT network's, to show nothing answers there.
	a, b := "192.168.100.21", "192.168.100.22"
	try := []string{toOutside, "tcp:" + natGW + ":80"}
	bs := w.boot(
		guest{Name: "i1", Net: a + natNet, Serve: []int{8080}, Hold: 5,
			Check: []string{"tcp:" + b + ":8080"}, Try: try, Up: up, Down: down},
		guest{Name: "i2", Net: b + natNet, Serve: []int{8080}, Hold: 5,
			Check: []string{"tcp:" + a + ":8080"}, Try: try, Up: up, Down: down},
	)
	for _, g := range bs {
		g.ran(t)
		for _, c := range try {
			g.blocked(t, c)
		}
	}
	bs[0].reached(t, "tcp:"+b+":8080")
	bs[1].reached(t, "tcp:"+a+":8080")
	if s := w.seen(); len(s) > 0 {
		t.Errorf("outside host saw requests from %v", s)
	}
	w.checkRestored()
}

const labNet = `
[network.lab]
bridge = "kvlab0"
mode = "hostonly"
address = "10.77.0.1/24"
`

// Host-only (a named network through kvmnet-ifup@lab): the guest reaches the
// host's bridge address, not the outside, even on a host that forwards.
func TestHostOnly(t *testing.T) { matrix(t, testHostOnly) }

func testHostOnly(t *testing.T, fw string) {
	for _, fwd := range []string{"0", "1"} {
		t.Run("ip_forward="+fwd, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, fwConf(fw)+labNet, []string{"sysctl", "-qw", "net.ipv4.ip_forward=" + fwd})
			b := w.boot(guest{
				Name: "h1", Net: "10.77.0.10/24,10.77.0.1",
				Check: []string{"tcp:10.77.0.1:80"}, Try: []string{toOutside},
				Up: w.helper("ifup", "lab"), Down: w.helper("ifdown", "lab"),
			})[0]
			b.ran(t)
			if r := b.reached(t, "tcp:10.77.0.1:80"); r != "kvmnet-host saw 10.77.0.10" {
				t.Errorf("host server answered %q", r)
			}
			b.blocked(t, toOutside)
			if s := w.seen(); len(s) > 0 {
				t.Errorf("outside host saw requests from %v", s)
			}
			w.checkRestored()
		})
	}
}

// QEMU killed with SIGKILL never runs its downscript: its tap vanishes with
// it, and what it leaves of the network goes with the network's next guest,
// or with `kvmnet gc`.
func TestQEMUKilled(t *testing.T) { matrix(t, testQEMUKilled) }

func testQEMUKilled(t *testing.T, fw string) {
	t.Run("next guest", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fwConf(fw))
		killQEMU(t, w)
		b := w.boot(guest{
			Name: "k2", Net: "192.168.100.31" + natNet, Tap: "kvtap-k",
			Check: []string{toOutside}, Up: w.helper("natup", ""), Down: w.helper("natdown", ""),
		})[0]
		b.ran(t)
		masqueraded(t, w, b)
		w.checkRestored()
	})
	t.Run("kvmnet gc", func(t *testing.T) {
		t.Parallel()
		setup(t)
		tool := filepath.Join(binDir, "kvmnet")
		if _, err := os.Stat(tool); err != nil {
			t.Skipf("no operator tool %s", tool)
		}
		w := newWorld(t, fwConf(fw))
		killQEMU(t, w)
		if out, err := w.run(tool, "gc"); err != nil {
			t.Fatalf("kvmnet gc: %v\n%s", err, out)
		} else {
			t.Logf("kvmnet gc:\n%s", indent(strings.TrimSpace(out)))
		}
		w.checkRestored()
	})
}

// killQEMU boots a guest on the default NAT network, SIGKILLs its QEMU once
// the guest is up, and waits for the tap to vanish.
func killQEMU(t *testing.T, w *world) {
	t.Helper()
	var bridgeUp string
	killed := w.boot(guest{
		Name: "k1", Net: "192.168.100.30" + natNet, Hold: 120, Tap: "kvtap-k",
		Up: w.helper("natup", ""), Down: w.helper("natdown", ""),
		OnLine: func(l string, q *os.Process) {
			if strings.HasPrefix(l, "done") {
				bridgeUp, _ = w.run("ip", "-br", "link", "show", "br0")
				_ = q.Signal(syscall.SIGKILL)
			}
		},
	})[0]
	if _, ok := killed.find("done"); !ok {
		killed.dump(t)
		t.Fatal("guest k1 did not come up")
	}
	if !strings.Contains(fmt.Sprint(killed.err), "killed") {
		t.Fatalf("QEMU was not killed: %v", killed.err)
	}
	if !strings.Contains(bridgeUp, "br0") {
		t.Errorf("no br0 while k1 ran: %q", bridgeUp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := w.run("ip", "link", "show", "kvtap-k")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap kvtap-k still there 5s after QEMU was killed:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after the kill (the downscript never ran):\n%s", indent(strings.TrimSpace(w.host.MustRun("ip", "-br", "link"))))
}

// Zero-config NAT with DHCP and DNS from kvmnet: two guests started at the
// same moment get distinct leases, find each other by name and reach outside.
func TestNATDHCP(t *testing.T) { matrix(t, testNATDHCP) }

func testNATDHCP(t *testing.T, fw string) {
	t.Parallel()
	w := newWorld(t, fwConf(fw))
	up, down := w.helper("natup", ""), w.helper("natdown", "")
	bs := w.boot(
		guest{Name: "d1", Net: "dhcp", Hold: 5, Check: []string{toOutside, "dns:d2"}, Up: up, Down: down},
		guest{Name: "d2", Net: "dhcp", Hold: 5, Check: []string{toOutside, "dns:d1"}, Up: up, Down: down},
	)
	leases := map[string]string{}
	for _, b := range bs {
		b.ran(t)
		masqueraded(t, w, b)
		lease, ok := b.find("lease")
		if !ok {
			b.dump(t)
			t.Fatalf("guest %s got no DHCP lease", b.g.Name)
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(lease) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		if !strings.HasPrefix(f["ip"], "192.168.100.") || !strings.HasSuffix(f["ip"], "/24") ||
			f["router"] != natGW || f["dns"] != natGW {
			t.Errorf("guest %s: lease %q, want an address in 192.168.100.0/24 with router and dns %s", b.g.Name, lease, natGW)
		}
		leases[b.g.Name] = strings.TrimSuffix(f["ip"], "/24")
	}
	if leases["d1"] == leases["d2"] {
		t.Errorf("both guests got %s", leases["d1"])
	}
	if got := bs[0].reached(t, "dns:d2"); got != leases["d2"] {
		t.Errorf("d1 resolved d2 to %q, d2 has %s", got, leases["d2"])
	}
	if got := bs[1].reached(t, "dns:d1"); got != leases["d1"] {
		t.Errorf("d2 resolved d1 to %q, d1 has %s", got, leases["d1"])
	}
	w.checkRestored()
}

// Zero config on a host with no iptables program at all (the helpers' PATH
// holds nothing): a booted guest gets a DHCP lease and reaches the outside
// host, masqueraded, and its exit leaves the host as it was.
func TestNoIptablesPrograms(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "")
	w.env = append(w.env, "PATH="+t.TempDir()) // the last PATH wins
	b := w.boot(guest{Name: "n1", Net: "dhcp", Check: []string{toOutside},
		Up: w.helper("natup", ""), Down: w.helper("natdown", "")})[0]
	b.ran(t)
	if _, ok := b.find("lease"); !ok {
		b.dump(t)
		t.Fatal("the guest got no DHCP lease")
	}
	masqueraded(t, w, b)
	w.checkRestored()
}
