package integration

import (
	"os"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// TestAllowFrom: guests of two kvmnet networks do not reach each other,
// whatever order the networks came up in, until the one traffic goes into
// names the other in allow_from; then that direction opens (replies
// included) and the other stays shut. Editing allow_from out again and the
// next VM's up closes it, and the last downs leave the namespace as it was.
func TestAllowFrom(t *testing.T) { matrix(t, testAllowFrom) }

func testAllowFrom(t *testing.T, fw string) {
	const lab = "[network.lab]\nbridge = \"kvlab0\"\nmode = \"hostonly\"\naddress = \"10.77.0.1/24\"\ndhcp = false\ndns = false\nports = \"any\"\n"
	const def = "[network.default]\ndhcp = false\ndns = false\nports = \"any\"\n"
	h := newHost(t, fw, def+lab)
	h.SetLinks(h.Links())
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	gLab := h.guest("vlab", "10.77.0.10/24", "10.77.0.1")
	gDef := h.guest("vdef", "192.168.100.10/24", "192.168.100.1")
	h.mustHelper("kvmnet-ifup@lab", "vlab")
	h.mustHelper("kvmnet-natup", "vdef")
	if pings(gLab, "192.168.100.10") || pings(gDef, "10.77.0.10") {
		t.Fatal("guests of two networks reach each other with no allow_from")
	}
	setConfig(t, h, fw, def+"allow_from = [\"lab\"]\n"+lab)
	h.mustHelper("kvmnet-natup", "vdef") // a warm up applies the edited file
	if !pings(gLab, "192.168.100.10") {
		t.Error("a lab guest does not reach a default guest though default allows lab")
	}
	if pings(gDef, "10.77.0.10") {
		t.Error("a default guest reaches a lab guest, though lab allows nothing")
	}
	setConfig(t, h, fw, def+lab)
	h.mustHelper("kvmnet-natup", "vdef")
	if pings(gLab, "192.168.100.10") {
		t.Error("a lab guest still reaches a default guest after allow_from went")
	}
	h.mustHelper("kvmnet-natdown", "vdef")
	h.mustHelper("kvmnet-ifdown@lab", "vlab")
	h.MustRun("ip", "link", "del", "vdef")
	h.MustRun("ip", "link", "del", "vlab")
	h.assertClean(rules, fwd)
}

// setConfig rewrites h's file with the backend line newHost put first.
func setConfig(t *testing.T, h *host, fw, config string) {
	t.Helper()
	if fw != "" {
		config = "firewall = \"" + fw + "\"\n" + config
	}
	if err := os.WriteFile(h.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pings reports whether g gets an answer from addr to any of two pings.
func pings(g *testns.NS, addr string) bool {
	_, _, err := g.Run("ping", "-c", "2", "-i", "0.2", "-W", "1", addr)
	return err == nil
}
