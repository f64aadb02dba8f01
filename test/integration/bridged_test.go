package integration

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestBridgedLeavesTheHostAlone: an admin's bridge carrying the host's
// uplink (a veth to an "outside" namespace) and its address, with a
// container's traffic routed through it all along. A bridged network
// attaches and detaches VMs' taps and does nothing else: the routed traffic
// never misses a packet, no rule is added, and the bridge, its port, its
// address and its settings are exactly as before.
func TestBridgedLeavesTheHostAlone(t *testing.T) {
	bb := busybox(t)
	h := newHost(t, "", "[network.lan]\nbridge = \"br-lan\"\nmode = \"bridged\"\n")
	outside, ct := testns.New(t), testns.New(t)
	h.MustRun("ip", "link", "add", "br-lan", "type", "bridge")
	h.MustRun("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "wan0", "netns", outside.Name)
	h.MustRun("ip", "link", "set", "uplink", "master", "br-lan", "up")
	h.MustRun("ip", "addr", "add", "10.50.0.2/24", "dev", "br-lan")
	h.MustRun("ip", "link", "set", "br-lan", "up")
	outside.MustRun("ip", "addr", "add", "10.50.0.1/24", "dev", "wan0")
	outside.MustRun("ip", "link", "set", "wan0", "up")
	outside.MustRun("ip", "route", "add", "10.60.0.0/24", "via", "10.50.0.2")
	h.MustRun("ip", "link", "add", "ct0", "type", "veth", "peer", "name", "eth0", "netns", ct.Name)
	h.MustRun("ip", "addr", "add", "10.60.0.1/24", "dev", "ct0")
	h.MustRun("ip", "link", "set", "ct0", "up")
	ct.MustRun("ip", "addr", "add", "10.60.0.2/24", "dev", "eth0")
	ct.MustRun("ip", "link", "set", "eth0", "up")
	ct.MustRun("ip", "route", "add", "default", "via", "10.60.0.1")
	h.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	ct.MustRun(bb, "ping", "-c", "1", "-W", "2", "10.50.0.1") // the route works before kvmnet

	rules, links := h.rules(), h.Links()
	bridgeBefore := h.bridgeState()
	taps := h.taps("vnet", 2)
	ping := ct.Cmd(bb, "ping", "-q", "-c", "150", "-i", "0.02", "-W", "2", "10.50.0.1")
	var out strings.Builder
	ping.Stdout, ping.Stderr = &out, &out
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, tap := range taps {
			h.mustHelper("kvmnet-ifup@lan", tap)
			if h.Master(tap) != "br-lan" {
				t.Fatalf("%s not on br-lan", tap)
			}
		}
		if got := h.rules(); got != rules {
			t.Errorf("a bridged network added rules:\n%s", got)
		}
		// The uplink is not a VM's port: the helpers refuse it, and a down
		// of it leaves it where it is.
		if stderr, err := h.helper("kvmnet-ifup@lan", "uplink"); err == nil || !strings.Contains(stderr, "not a tap") {
			t.Errorf("ifup@lan uplink: %v %s", err, stderr)
		}
		h.mustHelper("kvmnet-ifdown@lan", "uplink")
		for _, tap := range taps {
			h.mustHelper("kvmnet-ifdown@lan", tap)
			if h.Master(tap) != "" {
				t.Errorf("%s still on %q after its down", tap, h.Master(tap))
			}
		}
	}
	err := ping.Wait()
	if m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`).FindStringSubmatch(out.String()); err != nil || m == nil || m[1] != m[2] {
		t.Errorf("routed traffic through br-lan was interrupted: %v\n%s", err, out.String())
	}
	if got := h.bridgeState(); got != bridgeBefore {
		t.Errorf("br-lan changed:\n--- before\n%s\n--- after\n%s", bridgeBefore, got)
	}
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.SetLinks(links)
	h.assertClean(rules, "1")
}

// bridgeState is what an admin would check of br-lan: its settings, its
// ports, its addresses, and the host's ARP and IPv6 settings on it.
func (h *host) bridgeState() string {
	// Timers run and an IPv6 address stops being tentative on their own.
	timers := regexp.MustCompile(`_timer\s+[\d.]+`)
	return strings.Join([]string{
		timers.ReplaceAllString(h.MustRun("ip", "-d", "link", "show", "br-lan"), ""),
		h.MustRun("ip", "-o", "link", "show", "master", "br-lan"),
		strings.ReplaceAll(h.MustRun("ip", "-o", "addr", "show", "dev", "br-lan"), " tentative", ""),
		h.Sysctl("net.ipv4.conf.br-lan.arp_ignore"),
		h.Sysctl("net.ipv6.conf.br-lan.disable_ipv6"),
	}, "\n")
}

// busybox returns busybox-static's path, which has ping and arping (scripts/deps.sh installs it).
func busybox(t *testing.T) string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Skip("busybox not installed (busybox-static)")
	return ""
}
