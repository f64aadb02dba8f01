package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestGuestRAIgnored: a guest on a network without address6 sends a router
// advertisement (a real one, raw ICMPv6 from its link-local address) with a
// prefix for SLAAC. The host takes neither a default route nor an address
// from it, in every mode with an address. Then, with the kernel's own
// accept_ra and autoconf put back on the bridge, the same advertisement
// gives both: the check can see one accepted.
func TestGuestRAIgnored(t *testing.T) {
	for _, mode := range []string{"nat", "hostonly"} {
		t.Run(mode, func(t *testing.T) {
			h := newHost(t, "", fmt.Sprintf("[network.lab]\nmode = %q\naddress = \"10.77.0.1/24\"\nports = \"any\"\n", mode))
			rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
			links := h.Links()
			guest := newGuest(t, h, "gv")
			h.mustHelper("kvmnet-ifup@lab", "gv")

			prefix := netip.MustParsePrefix("2001:db8:77::/64")
			// Sent again and again: the bridge's IPv6 comes up a moment
			// after its first port, and takes no RA before.
			taken := func(wait time.Duration) (route, addr string) {
				for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					sendRA(t, guest, prefix)
					if route, addr = raTaken(h, "lab", prefix); route != "" && addr != "" {
						break
					}
				}
				return route, addr
			}
			if route, addr := taken(2 * time.Second); route != "" || addr != "" {
				t.Errorf("the host took a guest's RA on lab: route %q, address %q", route, addr)
			}
			h.MustRun("sysctl", "-qw", "net.ipv6.conf.lab.accept_ra=1", "net.ipv6.conf.lab.autoconf=1")
			if route, addr := taken(5 * time.Second); route == "" || addr == "" {
				t.Fatalf("even with accept_ra=1 the host took no route or no address from the RA (route %q, address %q): the check sees nothing", route, addr)
			}
			h.mustHelper("kvmnet-ifdown@lab", "gv")
			h.MustRun("ip", "link", "del", "gv")
			h.SetLinks(links)
			h.assertClean(rules, fwd)
		})
	}
}

// newGuest makes a guest namespace on a veth whose host end is port, DOWN
// as a VM's tap is handed over; the guest's eth0 is up with its link-local
// address usable at once (no DAD).
func newGuest(t *testing.T, h *host, port string) *testns.NS {
	t.Helper()
	g := testns.New(t)
	h.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	g.MustRun("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	g.MustRun("ip", "link", "set", "eth0", "up")
	return g
}

// sendRA sends, from g's eth0, a router advertisement to all nodes: a
// default router for 30 minutes and prefix for SLAAC.
func sendRA(t *testing.T, g *testns.NS, prefix netip.Prefix) {
	t.Helper()
	err := g.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		ra := &ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: 30 * time.Minute, Options: []ndp.Option{
			&ndp.PrefixInformation{PrefixLength: uint8(prefix.Bits()), OnLink: true, AutonomousAddressConfiguration: true,
				ValidLifetime: time.Hour, PreferredLifetime: time.Hour, Prefix: prefix.Addr()},
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		}}
		return c.WriteTo(ra, nil, netip.IPv6LinkLocalAllNodes())
	})
	if err != nil {
		t.Fatalf("send RA: %v", err)
	}
}

// raTaken returns the host's default route over br and its address in
// prefix, each "" when there is none.
func raTaken(h *host, br string, prefix netip.Prefix) (route, addr string) {
	route = strings.TrimSpace(h.MustRun("ip", "-6", "route", "show", "default", "dev", br))
	for _, l := range strings.Split(h.MustRun("ip", "-6", "-o", "addr", "show", "dev", br), "\n") {
		if strings.Contains(l, strings.TrimSuffix(prefix.Addr().String(), "::")+":") {
			addr = strings.TrimSpace(l)
		}
	}
	return route, addr
}

// TestAdminBridgeNotTaken: the default network's br0 is an admin's bridge,
// with a NIC on it or the host's address: natup (root, as QEMU runs its
// script), `kvmnet up` and hostonly's ifup refuse it in one line naming the
// bridge and mode = "bridged", and make nothing. Named in the network's
// section, the same bridge is used (TestAdminBridgeKept).
func TestAdminBridgeNotTaken(t *testing.T) {
	for _, tc := range []struct {
		name, prog, config string
		setup              [][]string
		want               string
	}{
		{name: "nat, a NIC", prog: "kvmnet-natup",
			setup: [][]string{{"ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"}, {"ip", "link", "set", "eth1", "master", "br0"}},
			want:  `kvmnet-natup: make bridge br0: bridge br0 has a port kvmnet did not attach, eth1: network default would add 192.168.100.1/24 to it unasked; for guests on that bridge's LAN use mode = "bridged", or name it (bridge = "br0") in [network.default]`},
		{name: "nat, an address", prog: "kvmnet-natup",
			setup: [][]string{{"ip", "addr", "add", "10.1.0.2/24", "dev", "br0"}},
			want:  `kvmnet-natup: make bridge br0: bridge br0 carries the host's address 10.1.0.2/24: network default would add 192.168.100.1/24`},
		{name: "hostonly, a NIC", prog: "kvmnet-ifup@lab", config: "[network.lab]\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\n",
			setup: [][]string{{"ip", "link", "add", "lab", "type", "bridge"}, {"ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"}, {"ip", "link", "set", "eth1", "master", "lab"}},
			want:  `kvmnet-ifup: make bridge lab: bridge lab has a port kvmnet did not attach, eth1: network lab would add 10.77.0.1/24 to it unasked`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, "", tc.config)
			h.taps("vnet", 1)
			h.MustRun("ip", "link", "add", "br0", "type", "bridge")
			for _, argv := range tc.setup {
				h.MustRun(argv...)
			}
			rules, links, fwd := h.rules(), h.Links(), h.Sysctl("net.ipv4.ip_forward")
			addrs := h.MustRun("ip", "-o", "addr", "show")
			stderr, err := h.helper(tc.prog, "vnet0")
			if err == nil || !strings.HasPrefix(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%s: %v, stderr %q, want one line beginning %q", tc.prog, err, stderr, tc.want)
			}
			if !strings.HasPrefix(tc.prog, "kvmnet-natup") {
				return
			}
			_, stderr, err = h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet"), "up", "default")
			if err == nil || !strings.Contains(stderr, "bridge br0 ") {
				t.Errorf("kvmnet up: %v, stderr %q", err, stderr)
			}
			if got := h.MustRun("ip", "-o", "addr", "show"); got != addrs {
				t.Errorf("addresses changed:\n--- before\n%s\n--- after\n%s", addrs, got)
			}
			h.SetLinks(links)
			h.assertClean(rules, fwd)
		})
	}
}

// TestBridgeHelperAdminBridge: a user in group kvm runs the bridge helper
// with --br=br0 where br0 is an admin's LAN bridge (a NIC on it): refused,
// no tap, no address, no DHCP on the admin's LAN.
func TestBridgeHelperAdminBridge(t *testing.T) {
	b := newBHHost(t, "")
	b.MustRun("ip", "link", "add", "br0", "type", "bridge")
	b.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	b.MustRun("ip", "link", "set", "eth1", "master", "br0")
	b.MustRun("ip", "link", "set", "br0", "up")
	before := b.portsAndTaps()
	tap, stderr, err := b.run(bhRun{uid: bhUser, groups: []int{b.kvm}})
	want := "bridge br0 has a port kvmnet did not attach, eth1: network default would add 192.168.100.1/24 to it unasked"
	if tap != nil || err == nil || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("bridge helper on an admin's br0: %v, tap %v, stderr %q, want one line with %q", err, tap, stderr, want)
	}
	if out := b.MustRun("ip", "-o", "addr", "show", "dev", "br0"); strings.Contains(out, "inet ") {
		t.Errorf("br0 got an address: %s", out)
	}
	if after := b.portsAndTaps(); after != before {
		t.Errorf("a refused run made something: before %q, after %q", before, after)
	}
	for _, pid := range b.Live() {
		if pid != strconv.Itoa(b.holder.Process.Pid) {
			t.Errorf("process %s left in the namespace", pid)
		}
	}
}

// TestPortMACNeverTheBridge: a tap whose MAC sorts below the NIC's would
// become an admin's bridge's MAC (Linux gives a bridge without a MAC of its
// own its lowest port's), changing the host's LAN address while the VM runs.
// On a bridged network, cold up and warm up (the engine replaced by one that
// fails) give taps a fe:… MAC and the bridge keeps the NIC's; a nat
// network's bridge keeps the MAC kvmnet made it with.
func TestPortMACNeverTheBridge(t *testing.T) {
	h := newHost(t, "", "[network.lan]\nbridge = \"br-lan\"\nmode = \"bridged\"\n")
	h.MustRun("ip", "link", "add", "br-lan", "type", "bridge")
	h.MustRun("ip", "link", "add", "uplink", "address", "52:54:00:99:00:01", "type", "veth", "peer", "name", "wan0")
	h.MustRun("ip", "link", "set", "uplink", "master", "br-lan", "up")
	h.MustRun("ip", "link", "set", "br-lan", "up")
	nic := "52:54:00:99:00:01"
	if got := mac(h, "br-lan"); got != nic {
		t.Fatalf("br-lan has MAC %s, want its NIC's %s", got, nic)
	}
	taps := h.taps("vnet", 3)
	for i, tap := range taps {
		h.MustRun("ip", "link", "set", tap, "address", fmt.Sprintf("02:00:00:00:00:%02x", i+1))
	}
	run := frontsOnly(t, h, "kvmnet-ifup@lan", "kvmnet-natup")
	if stderr, err := run("kvmnet-ifup@lan", taps[0]); err != nil {
		t.Fatalf("cold up: %v\n%s", err, stderr)
	}
	run("", "") // the engine replaced
	if stderr, err := run("kvmnet-ifup@lan", taps[1]); err != nil || strings.Contains(stderr, "engine ran") {
		t.Fatalf("warm up: %v\n%s", err, stderr)
	}
	for i, tap := range taps[:2] {
		if got, want := mac(h, tap), fmt.Sprintf("fe:00:00:00:00:%02x", i+1); got != want {
			t.Errorf("%s has MAC %s, want %s", tap, got, want)
		}
	}
	if got := mac(h, "br-lan"); got != nic {
		t.Errorf("br-lan's MAC moved to %s with the VMs' taps, want its NIC's %s", got, nic)
	}
	h.mustHelper("kvmnet-natup", taps[2])
	if got, want := mac(h, "br0"), bridge.MAC("br0").String(); got != want || mac(h, taps[2]) != "fe:00:00:00:00:03" {
		t.Errorf("br0 has MAC %s, want %s; %s has %s", got, want, taps[2], mac(h, taps[2]))
	}
	h.mustHelper("kvmnet-natdown", taps[2])
}

func mac(h *host, link string) string {
	return strings.TrimSpace(h.MustRun("cat", "/sys/class/net/"+link+"/address"))
}

// frontsOnly copies kvmnet and the fronts progs (which may carry @network)
// into a directory of their own, and returns how to run one on a tap there.
// run("", "") replaces that kvmnet with one that says "engine ran" and
// fails: a run that succeeds after is the front's alone.
func frontsOnly(t *testing.T, h *host, progs ...string) func(prog, tap string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"kvmnet", "kvmnet-netsvc"} {
		copyFile(t, filepath.Join(bin, name), filepath.Join(dir, name))
	}
	for _, prog := range progs {
		base, _, _ := strings.Cut(prog, "@")
		if _, err := os.Stat(filepath.Join(dir, base)); err != nil {
			copyFile(t, filepath.Join(bin, base), filepath.Join(dir, base))
		}
		if base != prog {
			must(t, os.Symlink(base, filepath.Join(dir, prog)))
		}
	}
	return func(prog, tap string) (string, error) {
		if prog == "" {
			stub := filepath.Join(dir, ".stub")
			must(t, os.WriteFile(stub, []byte("#!/bin/sh\necho engine ran >&2\nexit 3\n"), 0o755))
			return "", os.Rename(stub, filepath.Join(dir, "kvmnet"))
		}
		_, stderr, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(dir, prog), tap)
		return stderr, err
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o755))
}

// TestFailedUpLeavesTheTap: a cold up that fails after it attached the VM's
// tap (the daemon cannot open its lease file, a directory) leaves the tap as
// QEMU handed it over: down, on no bridge, its own MAC and MTU.
func TestFailedUpLeavesTheTap(t *testing.T) {
	h := newHost(t, "", "")
	h.taps("vnet", 1)
	h.MustRun("ip", "link", "set", "vnet0", "address", "02:00:00:00:00:07", "mtu", "1400")
	must(t, os.Mkdir(filepath.Join(filepath.Dir(h.Config), "default@"+h.Name+".leases"), 0o755))
	rules, links, fwd := h.rules(), h.Links(), h.Sysctl("net.ipv4.ip_forward")
	// The kernel gives a link its default qdisc the first time it is up, for good.
	qdisc := regexp.MustCompile(`qdisc \S+ `)
	show := func() string { return qdisc.ReplaceAllString(h.MustRun("ip", "-o", "link", "show", "vnet0"), "") }
	before := show()
	stderr, err := h.helper("kvmnet-natup", "vnet0")
	if err == nil || !strings.Contains(stderr, "is a directory") {
		t.Fatalf("natup with a directory for a lease file: %v, stderr %q", err, stderr)
	}
	if got := show(); got != before {
		t.Errorf("the failed up changed the tap:\n--- before\n%s--- after\n%s", before, got)
	}
	h.SetLinks(links)
	h.assertClean(rules, fwd)
}
