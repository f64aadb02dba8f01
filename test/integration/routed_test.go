package integration

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestRouted: a routed network's guest is reached from a router beyond the
// uplink (which routes the subnet via the host) by its own address, and
// reaches it with its own source address: nothing masquerades. A nat
// network's guest and the routed guest still do not reach each other, in
// either direction, and the last downs leave the namespace as it was.
func TestRouted(t *testing.T) { matrix(t, testRouted) }

func testRouted(t *testing.T, fw string) {
	const lab = "[network.lab]\nbridge = \"kvrt0\"\nmode = \"routed\"\naddress = \"10.55.0.1/24\"\ndhcp = false\ndns = false\nports = \"any\"\n"
	const def = "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n"
	h := newHost(t, fw, def+lab)
	o := h.outside()
	o.MustRun("ip", "route", "add", "10.55.0.0/24", "via", "203.0.113.1") // the upstream router's route to the subnet
	h.SetLinks(h.Links())
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	gLab := h.guest("vlab", "10.55.0.10/24", "10.55.0.1")
	gDef := h.guest("vdef", "192.168.100.10/24", "192.168.100.1")
	h.mustHelper("kvmnet-natup@lab", "vlab")
	h.mustHelper("kvmnet-natup", "vdef")

	o.EchoSource(t, "tcp4", ":7777")
	gLab.EchoSource(t, "tcp4", ":7777")
	gDef.EchoSource(t, "tcp4", ":7777")
	if got := sourceSeen(t, gLab, "203.0.113.2:7777"); got != "10.55.0.10" {
		t.Errorf("the router saw the routed guest's connection from %q, want its own address 10.55.0.10\n%s", got, h.MustRun("nft", "-s", "list", "ruleset"))
	}
	if got := sourceSeen(t, o, "10.55.0.10:7777"); got != "203.0.113.2" {
		t.Errorf("the routed guest saw the router's connection from %q, want 203.0.113.2", got)
	}
	if got := sourceSeen(t, gDef, "10.55.0.10:7777"); got != "" {
		t.Errorf("a nat guest opened a connection to the routed guest (seen from %s)", got)
	}
	if got := sourceSeen(t, gLab, "192.168.100.10:7777"); got != "" {
		t.Errorf("the routed guest opened a connection to a nat guest (seen from %s)", got)
	}
	if pings(gDef, "10.55.0.10") || pings(gLab, "192.168.100.10") {
		t.Error("guests of a nat and a routed network ping each other with no allow_from")
	}
	// A second VM on the network (on nftables, a warm up: the front, from the hot file) is routed the same.
	gLab2 := h.guest("vlab2", "10.55.0.11/24", "10.55.0.1")
	h.mustHelper("kvmnet-natup@lab", "vlab2")
	gLab2.EchoSource(t, "tcp4", ":7777")
	if got := sourceSeen(t, o, "10.55.0.11:7777"); got != "203.0.113.2" {
		t.Errorf("the second routed guest saw the router's connection from %q, want 203.0.113.2", got)
	}
	h.mustHelper("kvmnet-natdown@lab", "vlab2")
	h.MustRun("ip", "link", "del", "vlab2")
	h.mustHelper("kvmnet-natdown", "vdef")
	h.mustHelper("kvmnet-natdown@lab", "vlab")
	h.MustRun("ip", "link", "del", "vdef")
	h.MustRun("ip", "link", "del", "vlab")
	h.assertClean(rules, fwd)
}

// sourceSeen connects from g to addr, where an EchoSource listens, and
// returns the source address it saw, "" when no connection was made.
func sourceSeen(t *testing.T, g *testns.NS, addr string) string {
	t.Helper()
	var seen string
	_ = g.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		seen, _ = bufio.NewReader(c).ReadString('\n')
		return nil
	})
	return strings.TrimSpace(seen)
}
