package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
)

// overlayPair is two hypervisors joined by an underlay veth (198.51.100.1
// and .2, MTU 1500), each with network lab (bridge kvlab0) whose overlay
// (VNI 4242) names the other as its peer. The network is isolated, or with
// addressed a host-only one with host i's address 10.99.0.i+1/24, so that the
// hosts can ping across (an isolated host drops all that reaches it).
func overlayPair(t *testing.T, addressed bool) (hosts [2]*testhost.Host, nets [2]config.Net) {
	return overlayPairOn(t, addressed, "")
}

// overlayPairOn is overlayPair with the hosts' rules in firewall backend fw
// ("": auto).
func overlayPairOn(t *testing.T, addressed bool, fw string) (hosts [2]*testhost.Host, nets [2]config.Net) {
	for i := range hosts {
		hosts[i] = testhost.New(t, "", "")
	}
	a, b := hosts[0], hosts[1]
	a.MustRun("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b.Name)
	for i, h := range hosts {
		h.MustRun("ip", "addr", "add", fmt.Sprintf("198.51.100.%d/24", i+1), "dev", "ul0")
		h.MustRun("ip", "link", "set", "ul0", "up")
		mode := "mode = \"isolated\"\n"
		if addressed {
			mode = fmt.Sprintf("mode = \"hostonly\"\naddress = \"10.99.0.%d/24\"\ndhcp = false\ndns = false\n", i+1)
		}
		top := ""
		if fw != "" {
			top = fmt.Sprintf("firewall = %q\n", fw)
		}
		f, err := config.Parse("k.toml", []byte(fmt.Sprintf(
			"%s[network.lab]\nbridge = \"kvlab0\"\n%s[network.lab.vxlan]\nid = 4242\npeers = [\"198.51.100.%d\"]\n", top, mode, 2-i)))
		if err != nil {
			t.Fatal(err)
		}
		if nets[i], err = f.Network("lab", config.Isolated); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hosts {
		// Both ends are up: wait for the carrier, so "before" is the steady state.
		testhost.WaitFor(t, func() bool { return strings.Contains(h.MustRun("ip", "-br", "link", "show", "ul0"), " UP ") }, &testhost.Buffer{})
		h.SetLinks(h.Links())
	}
	return hosts, nets
}

// inNS runs f with the host's state directory on a thread in its namespace.
func inNS(t *testing.T, h *testhost.Host, f func(d state.Dir) error) {
	t.Helper()
	if err := h.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		return f(d)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestOverlayUpCarriesFramesDown: `kvmnet up` on two hosts makes each a
// VXLAN port on the bridge, sized for the underlay, with a flood entry for
// the peer; a full-size frame with DF crosses; the peer shows as heard from;
// `kvmnet down` leaves both hosts as they were.
func TestOverlayUpCarriesFramesDown(t *testing.T) {
	hosts, nets := overlayPair(t, true)
	var before [2][2]string
	for i, h := range hosts {
		before[i] = [2]string{h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")}
		inNS(t, h, func(d state.Dir) error {
			res, err := Pin(d, nets[i])
			if err == nil && !slices.Contains(res.Changes, "make vxlan vx-lab on kvlab0") {
				t.Errorf("host %d: changes %q", i+1, res.Changes)
			}
			return err
		})
		detail := h.MustRun("ip", "-d", "-o", "link", "show", "vx-lab")
		for _, want := range []string{"mtu 1450", "master kvlab0", "vxlan id 4242", "dstport 4789", "alias kvmnet"} {
			if !strings.Contains(detail, want) {
				t.Errorf("host %d: vx-lab lacks %q: %s", i+1, want, detail)
			}
		}
		if strings.Contains(detail, "nolearning") {
			t.Errorf("host %d: vx-lab does not learn: %s", i+1, detail)
		}
		if br := h.MustRun("ip", "-o", "link", "show", "kvlab0"); !strings.Contains(br, "mtu 1450") {
			t.Errorf("host %d: bridge %s", i+1, br)
		}
		peer := fmt.Sprintf("198.51.100.%d", 2-i)
		if fdb := h.MustRun("bridge", "fdb", "show", "dev", "vx-lab"); !strings.Contains(fdb, "00:00:00:00:00:00 dst "+peer) {
			t.Errorf("host %d: no flood entry for %s:\n%s", i+1, peer, fdb)
		}
		// A second up changes nothing.
		inNS(t, h, func(d state.Dir) error {
			res, err := Pin(d, nets[i])
			if err == nil && len(res.Changes) > 0 {
				t.Errorf("host %d: second up changed %q", i+1, res.Changes)
			}
			return err
		})
	}
	// 1422 bytes of ICMP payload make a 1450-byte packet: the bridge's MTU,
	// and 1500 on the underlay once encapsulated.
	hosts[0].MustRun("ping", "-c", "1", "-W", "5", "-M", "do", "-s", "1422", "10.99.0.2")
	inNS(t, hosts[0], func(d state.Dir) error {
		vx, err := bridge.Link("vx-lab")
		if err != nil {
			return err
		}
		flood, heard, err := bridge.Remotes(vx)
		want := []netip.Addr{netip.MustParseAddr("198.51.100.2")}
		if err == nil && (!slices.Equal(flood, want) || !slices.Equal(heard, want)) {
			t.Errorf("flood %v, heard %v; want %v for both", flood, heard, want)
		}
		return err
	})
	for i, h := range hosts {
		inNS(t, h, func(d state.Dir) error {
			res, err := Release(d, "lab", false)
			if err == nil && !slices.Contains(res.Changes, "delete vxlan vx-lab") {
				t.Errorf("host %d: down changes %q", i+1, res.Changes)
			}
			return err
		})
		h.AssertClean(before[i][0], before[i][1])
	}
}

// TestOverlayLastVMTearsDown: the VXLAN port does not count as a VM, so the
// last VM's down tears the network down.
func TestOverlayLastVMTearsDown(t *testing.T) {
	hosts, nets := overlayPair(t, false)
	h := hosts[0]
	h.MustRun("ip", "tuntap", "add", "vnet0", "mode", "tap")
	h.SetLinks(h.Links())
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	inNS(t, h, func(d state.Dir) error {
		if _, err := Up(d, nets[0], "vnet0"); err != nil {
			return err
		}
		if got := h.MustRun("ip", "-o", "link", "show", "vnet0"); !strings.Contains(got, "mtu 1450") {
			t.Errorf("tap: %s", got)
		}
		_, err := Down(d, nets[0], "vnet0")
		return err
	})
	h.AssertClean(rules, fwd)
}

// TestOverlayUpChecks: what the first up refuses, or only warns of, with
// nothing left made when it refuses.
func TestOverlayUpChecks(t *testing.T) {
	hosts, nets := overlayPair(t, false)
	h := hosts[0]
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	with := func(f func(n *config.Net, o *config.Overlay)) config.Net {
		n := nets[0]
		o := *n.VXLAN
		f(&n, &o)
		n.VXLAN = &o
		return n
	}
	refused := []struct {
		n    config.Net
		want string
	}{
		{with(func(_ *config.Net, o *config.Overlay) {
			o.Peers = []netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.1")}
		}), "make vxlan vx-lab on kvlab0: peer 198.51.100.1 is this host's own address (on ul0)"},
		{with(func(n *config.Net, _ *config.Overlay) { n.MTU = 1500 }),
			"make vxlan vx-lab on kvlab0: mtu 1500: the underlay's 1500 leaves 1450 for guests after VXLAN's 50 bytes"},
	}
	for _, tc := range refused {
		inNS(t, h, func(d state.Dir) error {
			if _, err := Pin(d, tc.n); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want …%s…", err, tc.want)
			}
			return nil
		})
		h.AssertClean(rules, fwd)
	}

	// Links of the device's name that kvmnet did not make are never taken over.
	for _, argv := range [][]string{
		{"ip", "link", "add", "vx-lab", "type", "vxlan", "id", "4242", "dstport", "4789"},
		{"ip", "link", "add", "vx-lab", "type", "vxlan", "id", "7", "dstport", "4789"},
		{"ip", "link", "add", "vx-lab", "type", "bridge"},
	} {
		h.MustRun(argv...)
		inNS(t, h, func(d state.Dir) error {
			if _, err := Pin(d, nets[0]); err == nil || !strings.Contains(err.Error(), "make vxlan vx-lab on kvlab0: ") {
				t.Errorf("%s: up got %v", strings.Join(argv, " "), err)
			}
			return nil
		})
		h.MustRun("ip", "link", "del", "vx-lab")
		h.AssertClean(rules, fwd)
	}

	// A smaller mtu is taken; a peer with no route is a warning.
	n := with(func(n *config.Net, o *config.Overlay) {
		n.MTU = 1400
		o.Peers = append(o.Peers, netip.MustParseAddr("192.0.2.9"))
	})
	inNS(t, h, func(d state.Dir) error {
		res, err := Pin(d, n)
		if err != nil {
			return err
		}
		// The test binary has no daemon's binary beside it: "rules not
		// watched" is the other warning.
		if want := "no route to peer 192.0.2.9"; !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q, want one with %q", res.Warnings, want)
		}
		for _, l := range []string{"vx-lab", "kvlab0"} {
			if got := h.MustRun("ip", "-o", "link", "show", l); !strings.Contains(got, "mtu 1400") {
				t.Errorf("mtu = 1400 in the file: %s", got)
			}
		}
		_, err = Release(d, "lab", false)
		return err
	})
	h.AssertClean(rules, fwd)
}

// TestOverlayPeersChange: `kvmnet up` again makes a deleted bridge again
// with the VXLAN port on it, and brings the flood entries in line with a
// changed peers list while the network stays up; another VNI is a conflict
// with the running network.
func TestOverlayPeersChange(t *testing.T) {
	hosts, nets := overlayPair(t, false)
	h := hosts[0]
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	n := nets[0]
	inNS(t, h, func(d state.Dir) error {
		if _, err := Pin(d, n); err != nil {
			return err
		}
		// Someone deletes the bridge: the next up makes it again, with the
		// same MAC of this host's own, and puts the VXLAN port back on it.
		mac := h.MustRun("cat", "/sys/class/net/kvlab0/address")
		h.MustRun("ip", "link", "del", "kvlab0")
		if _, err := Pin(d, n); err != nil {
			return err
		}
		if again := h.MustRun("cat", "/sys/class/net/kvlab0/address"); again != mac || h.Master("vx-lab") != "kvlab0" {
			t.Errorf("bridge made again: mac %s (was %s), vx-lab on %q", again, mac, h.Master("vx-lab"))
		}
		o := *n.VXLAN
		o.Peers = []netip.Addr{netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.4")}
		n.VXLAN = &o
		if _, err := Pin(d, n); err != nil {
			return err
		}
		fdb := h.MustRun("bridge", "fdb", "show", "dev", "vx-lab")
		if !strings.Contains(fdb, "dst 198.51.100.3") || !strings.Contains(fdb, "dst 198.51.100.4") || strings.Contains(fdb, "dst 198.51.100.2") {
			t.Errorf("after the peers changed:\n%s", fdb)
		}
		other := o
		other.VNI = 7
		n.VXLAN = &other
		if _, err := Pin(d, n); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "network lab is up with VNI 4242 on port 4789, asked for VNI 7") {
			t.Errorf("up with another VNI: %v", err)
		}
		_, err := Release(d, "lab", false)
		return err
	})
	h.AssertClean(rules, fwd)
}
