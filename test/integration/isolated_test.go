package integration

import (
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestIsolatedHostAnswersNoARP: the host has no address on an isolated
// network's bridge, and must not answer ARP there for the addresses it has
// elsewhere (its uplink's), nor speak IPv6 on it. A guest (a namespace on a
// veth, hence ports = "any") asks for the uplink address and gets no answer.
func TestIsolatedHostAnswersNoARP(t *testing.T) {
	bb := busybox(t)
	h := newHost(t, "", "[network.iso]\nmode = \"isolated\"\nports = \"any\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	outside, guest := testns.New(t), testns.New(t)
	h.MustRun("ip", "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", outside.Name)
	h.MustRun("ip", "addr", "add", "10.70.0.1/24", "dev", "up0")
	h.MustRun("ip", "link", "set", "up0", "up")
	h.MustRun("ip", "link", "add", "gv", "type", "veth", "peer", "name", "eth0", "netns", guest.Name)
	guest.MustRun("ip", "addr", "add", "10.70.0.50/24", "dev", "eth0")
	guest.MustRun("ip", "link", "set", "eth0", "up")

	h.mustHelper("kvmnet-ifup@iso", "gv")
	arping := func() error {
		_, _, err := guest.Run(bb, "arping", "-f", "-c", "1", "-w", "1", "-I", "eth0", "10.70.0.1")
		return err
	}
	if arping() == nil {
		t.Error("the host answers ARP for its uplink address on the isolated bridge")
	}
	if out := h.MustRun("ip", "-6", "addr", "show", "dev", "iso"); out != "" {
		t.Errorf("the host has IPv6 on the isolated bridge: %s", out)
	}
	// The check can see an answer: with the kernel's default it gets one.
	h.MustRun("sysctl", "-qw", "net.ipv4.conf.iso.arp_ignore=0")
	if err := arping(); err != nil {
		t.Errorf("no ARP answer even with arp_ignore=0: %v", err)
	}
	h.mustHelper("kvmnet-ifdown@iso", "gv")
	h.MustRun("ip", "link", "del", "gv")
	h.MustRun("ip", "link", "del", "up0")
	h.assertClean(rules, fwd)
}

// TestIsolatedAdminBridgeSettingsRestored: on an empty bridge the admin made,
// an isolated network sets arp_ignore and disable_ipv6 and its last down puts
// back the values it found.
func TestIsolatedAdminBridgeSettingsRestored(t *testing.T) {
	h := newHost(t, "", "[network.iso]\nmode = \"isolated\"\n")
	h.MustRun("ip", "link", "add", "iso", "type", "bridge")
	h.MustRun("sysctl", "-qw", "net.ipv4.conf.iso.arp_ignore=1")
	rules, fwd, links := h.rules(), h.Sysctl("net.ipv4.ip_forward"), h.Links()
	tap := h.taps("vnet", 1)[0]
	h.mustHelper("kvmnet-ifup@iso", tap)
	if a, d := h.Sysctl("net.ipv4.conf.iso.arp_ignore"), h.Sysctl("net.ipv6.conf.iso.disable_ipv6"); a != "8" || d != "1" {
		t.Errorf("arp_ignore=%s disable_ipv6=%s on the isolated bridge, want 8 and 1", a, d)
	}
	h.mustHelper("kvmnet-ifdown@iso", tap)
	h.MustRun("ip", "link", "del", tap)
	if a, d := h.Sysctl("net.ipv4.conf.iso.arp_ignore"), h.Sysctl("net.ipv6.conf.iso.disable_ipv6"); a != "1" || d != "0" {
		t.Errorf("arp_ignore=%s disable_ipv6=%s after the last down, want 1 and 0 as before", a, d)
	}
	h.SetLinks(links)
	h.assertClean(rules, fwd)
}
