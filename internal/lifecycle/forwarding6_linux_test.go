package lifecycle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/testhost"
	"github.com/kvmnet/kvmnet/internal/testns"
)

// raLifetime is the default-route lifetime the outside router advertises:
// short, so that a host ignoring its RAs loses the route within the test.
const raLifetime = 8

// TestForwarding6KeepsHostRARoute: a hypervisor whose uplink learns its
// default route from a router's RAs (radvd in an "outside" namespace, route
// lifetime 8 s, an RA every 3-4 s) still has that route after more than two
// lifetimes with IPv6 forwarding that kvmnet turned on; kvmnet's down turns
// forwarding off and puts accept_ra back to 1.
func TestForwarding6KeepsHostRARoute(t *testing.T) {
	radvd, err := exec.LookPath("radvd")
	if err != nil {
		t.Skip("needs radvd (scripts/deps.sh)")
	}
	h := testhost.New(t, "", "")
	out := testns.New(t)
	h.MustRun("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "wan0", "netns", out.Name)
	h.MustRun("sysctl", "-qw", "net.ipv6.conf.ul0.accept_dad=0")
	h.MustRun("ip", "link", "set", "ul0", "up")
	out.MustRun("sysctl", "-qw", "net.ipv6.conf.wan0.accept_dad=0", "net.ipv6.conf.all.forwarding=1")
	out.MustRun("ip", "link", "set", "wan0", "up")
	out.MustRun("ip", "addr", "add", "2001:db8:1::1/64", "dev", "wan0", "nodad")
	startRadvd(t, out, radvd)
	testhost.WaitFor(t, func() bool { return hasRADefault(h) }, &testhost.Buffer{})
	h.SetLinks(h.Links())
	if got := h.Sysctl("net.ipv6.conf.ul0.accept_ra"); got != "1" {
		t.Fatalf("uplink accept_ra = %s before, want the kernel's 1", got)
	}

	n := natNet6(t)
	inNS(t, h, func(d state.Dir) error { _, err := Pin(d, n); return err })
	if got := h.Sysctl("net.ipv6.conf.all.forwarding"); got != "1" {
		t.Fatalf("IPv6 forwarding = %s after up, want 1", got)
	}
	if got := h.Sysctl("net.ipv6.conf.ul0.accept_ra"); got != "2" {
		t.Errorf("uplink accept_ra = %s after up, want 2", got)
	}
	if got := h.Sysctl("net.ipv6.conf." + n.Bridge + ".accept_ra"); got != "0" {
		t.Errorf("kvmnet's bridge accept_ra = %s, want 0 as made (its RAs come from guests)", got)
	}
	time.Sleep((2*raLifetime + 2) * time.Second)
	if !hasRADefault(h) {
		t.Fatalf("the uplink lost its RA default route with forwarding on:\n%s", h.MustRun("ip", "-6", "route"))
	}
	inNS(t, h, func(d state.Dir) error { _, err := Release(d, n.Name, false); return err })
	if got := h.Sysctl("net.ipv6.conf.all.forwarding"); got != "0" {
		t.Errorf("IPv6 forwarding = %s after down, want 0 as before", got)
	}
	if got := h.Sysctl("net.ipv6.conf.ul0.accept_ra"); got != "1" {
		t.Errorf("uplink accept_ra = %s after down, want 1 as before", got)
	}
	if h.Exists(n.Bridge) {
		t.Errorf("bridge %s left after down", n.Bridge)
	}
}

// TestForwarding6AlreadyOnLeftAlone: IPv6 forwarding an admin turned on is
// used, not owned: kvmnet changes no accept_ra and leaves forwarding on.
func TestForwarding6AlreadyOnLeftAlone(t *testing.T) {
	h := testhost.New(t, "", "")
	h.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	h.MustRun("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
	n := natNet6(t)
	inNS(t, h, func(d state.Dir) error { _, err := Pin(d, n); return err })
	if got := h.Sysctl("net.ipv6.conf.ul0.accept_ra"); got != "1" {
		t.Errorf("accept_ra = %s, want 1: kvmnet did not turn forwarding on", got)
	}
	inNS(t, h, func(d state.Dir) error { _, err := Release(d, n.Name, false); return err })
	if got := h.Sysctl("net.ipv6.conf.all.forwarding"); got != "1" {
		t.Errorf("IPv6 forwarding = %s after down, want the admin's 1", got)
	}
}

// natNet6 is a NAT network with address6 and no daemon (the tests here need none).
func natNet6(t *testing.T) config.Net {
	f, err := config.Parse("k.toml", []byte("[network.v6]\nmode = \"nat\"\naddress = \"10.66.0.1/24\"\naddress6 = \"fd00:66::1/64\"\ndhcp = false\ndns = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.Network("v6", config.NAT)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hasRADefault(h *testhost.Host) bool {
	return strings.Contains(h.MustRun("ip", "-6", "route", "show", "default", "proto", "ra"), "dev ul0")
}

// startRadvd runs radvd in ns with its own configuration and pid file in a
// temporary directory, advertising a default route of raLifetime seconds on wan0.
func startRadvd(t *testing.T, ns *testns.NS, radvd string) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "radvd.conf")
	cfg := fmt.Sprintf(`interface wan0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime %d;
	prefix 2001:db8:1::/64 { AdvOnLink on; AdvAutonomous on; AdvValidLifetime 60; AdvPreferredLifetime 30; };
};
`, raLifetime)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Cmd(radvd, "--nodaemon", "-C", conf, "-p", filepath.Join(dir, "radvd.pid"), "-m", "stderr")
	var errBuf testhost.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// TestAddress6OverlapRefused: an address6 prefix that a route of the host
// already covers is refused at up, naming the interface, and nothing is left made.
func TestAddress6OverlapRefused(t *testing.T) {
	h := testhost.New(t, "", "")
	h.MustRun("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
	h.MustRun("ip", "link", "set", "lan0", "up")
	h.MustRun("ip", "-6", "route", "add", "fd00:66::/48", "dev", "lan0")
	h.SetLinks(h.Links())
	rules := h.IptablesSave()
	n := natNet6(t)
	var err error
	_ = h.Do(func() error {
		d, derr := state.Open()
		if derr != nil {
			return derr
		}
		_, err = Pin(d, n)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "add fd00:66::1/64 to v6: subnet fd00:66::/64 overlaps route fd00:66::/48 via lan0") {
		t.Fatalf("Pin: %v, want the overlap with lan0's route", err)
	}
	h.AssertClean(rules, "0")
	if got := h.Sysctl("net.ipv6.conf.all.forwarding"); got != "0" {
		t.Errorf("IPv6 forwarding = %s after a refused up", got)
	}
}

// TestForwarding6AdminBridgeTakesRAs: a bridge an admin made and named in a
// network (an uplink bridge) is the host's own: kvmnet raises its accept_ra
// like any interface's, and leaves those of the bridges it made at 0.
func TestForwarding6AdminBridgeTakesRAs(t *testing.T) {
	h := testhost.New(t, "", "")
	h.MustRun("ip", "link", "add", "lanbr", "type", "bridge")
	h.MustRun("ip", "link", "set", "lanbr", "up")
	f, err := config.Parse("k.toml", []byte("[network.lan]\nbridge = \"lanbr\"\nmode = \"isolated\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	lan, err := f.Network("lan", config.Isolated)
	if err != nil {
		t.Fatal(err)
	}
	n := natNet6(t)
	inNS(t, h, func(d state.Dir) error {
		if _, err := Pin(d, lan); err != nil {
			return err
		}
		_, err := Pin(d, n)
		return err
	})
	if got := h.Sysctl("net.ipv6.conf.lanbr.accept_ra"); got != "2" {
		t.Errorf("the admin's bridge: accept_ra = %s, want 2", got)
	}
	if got := h.Sysctl("net.ipv6.conf." + n.Bridge + ".accept_ra"); got != "0" {
		t.Errorf("kvmnet's bridge: accept_ra = %s, want 0", got)
	}
	inNS(t, h, func(d state.Dir) error {
		if _, err := Release(d, n.Name, false); err != nil {
			return err
		}
		_, err := Release(d, lan.Name, false)
		return err
	})
	if got := h.Sysctl("net.ipv6.conf.lanbr.accept_ra"); got != "1" {
		t.Errorf("the admin's bridge after down: accept_ra = %s, want 1", got)
	}
}

// TestForwards6Up: a forward to a static host with ip and ip6 goes in, on
// each backend, as a DNAT of each family (the IPv6 one in ip6tables or as
// `dnat ip6` in inet kvmnet), with route_localnet on the bridge and the
// 127.0.0.0/8 guard for its IPv4 side; a warm up from the recorded forwards
// keeps them; with the forward made IPv6 only (a reload), route_localnet
// and the guard go; down takes everything away.
func TestForwards6Up(t *testing.T) {
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			h := testhost.New(t, "", "")
			file := "firewall = \"" + backend + "\"\n[network.v6]\nmode = \"nat\"\naddress = \"10.66.0.1/24\"\naddress6 = \"fd00:66::1/64\"\ndhcp = false\ndns = false\n" +
				"[[network.v6.host]]\nmac = \"52:54:00:00:00:21\"\nip = \"10.66.0.21\"\nip6 = \"fd00:66::21\"\nname = \"web\"\n" +
				"[[network.v6.forward]]\nproto = \"tcp\"\nport = 8080\n"
			network := func(to string) config.Net {
				f, err := config.Parse("k.toml", []byte(file+"to = \""+to+"\"\n"))
				if err != nil {
					t.Fatal(err)
				}
				n, err := f.Network("v6", config.NAT)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			rules := func() string {
				if backend == "nftables" {
					out, _, _ := h.Run("nft", "list", "ruleset")
					return out
				}
				return h.IptablesSave() + h.MustRun("ip6tables-save")
			}
			dnat4, dnat6 := "--to-destination 10.66.0.21:80", "--to-destination [fd00:66::21]:80"
			if backend == "nftables" {
				dnat4, dnat6 = "dnat ip to 10.66.0.21:80", "dnat ip6 to [fd00:66::21]:80"
			}
			n := network("web:80")
			localnet := "net.ipv4.conf." + n.Bridge + ".route_localnet"
			for _, step := range []string{"cold up", "warm up"} {
				inNS(t, h, func(d state.Dir) error { _, err := Pin(d, n); return err })
				got := rules()
				for _, w := range []string{dnat4, dnat6, "127.0.0.0/8"} {
					if !strings.Contains(got, w) {
						t.Errorf("%s: no %q in the rules:\n%s", step, w, got)
					}
				}
				if v := h.Sysctl(localnet); v != "1" {
					t.Errorf("%s: route_localnet = %s with an IPv4 forward, want 1", step, v)
				}
			}
			n = network("[fd00:66::21]:80")
			inNS(t, h, func(d state.Dir) error { _, err := Pin(d, n); return err })
			got := rules()
			if !strings.Contains(got, dnat6) || strings.Contains(got, dnat4) || strings.Contains(got, "127.0.0.0/8") {
				t.Errorf("IPv6 forward only: want %q, and neither %q nor the 127.0.0.0/8 guard:\n%s", dnat6, dnat4, got)
			}
			if v := h.Sysctl(localnet); v != "0" {
				t.Errorf("route_localnet = %s with IPv6 forwards only, want 0", v)
			}
			inNS(t, h, func(d state.Dir) error { _, err := Release(d, n.Name, false); return err })
			if got := rules(); strings.Contains(got, "DNAT") || strings.Contains(got, "dnat") {
				t.Errorf("DNAT left after down:\n%s", got)
			}
		})
	}
}
