package operator

import (
	"strings"
	"testing"
)

// TestBridgedOperator: the operator tool on a bridged network: status shows
// it, doctor finds nothing to fix on the admin's bridge (STP on, no rules),
// gc reclaims it after its VM was killed, and the admin's bridge and port stay.
func TestBridgedOperator(t *testing.T) {
	h := newHost(t, "[network.lan]\nbridge = \"br-lan\"\nmode = \"bridged\"\n")
	h.MustRun("ip", "link", "add", "br-lan", "type", "bridge", "stp_state", "1")
	h.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	h.MustRun("ip", "link", "set", "eth1", "master", "br-lan")
	rules, fwd, links := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward"), h.Links()
	h.taps("vnet0")
	h.helper("kvmnet-ifup@lan", "vnet0")
	for _, s := range h.status().Networks {
		if s.Name == "lan" && (!s.Up || s.Mode != "bridged" || s.Services.Running || s.Bridge.Owned || len(s.Rules.Missing) > 0) {
			t.Errorf("status of a bridged network: %+v", s)
		}
	}
	if out := h.must("status"); strings.Contains(out, "MISSING") {
		t.Errorf("status of a bridged network:\n%s", out)
	}
	if out, code := h.doctor(nil); code != 0 || !strings.Contains(out, "healthy") {
		t.Errorf("doctor on a bridged network: exit %d:\n%s", code, out)
	}
	h.MustRun("ip", "link", "del", "vnet0") // the VM was killed
	h.must("gc")
	if h.Master("eth1") != "br-lan" {
		t.Error("gc took the admin's port off br-lan")
	}
	// Pinned by `kvmnet up`, as at boot: still nothing but a record.
	h.must("up", "lan")
	if got := h.IptablesSave(); got != rules || h.Master("eth1") != "br-lan" {
		t.Errorf("kvmnet up of a bridged network changed the host:\n%s", got)
	}
	h.must("down", "lan")
	h.SetLinks(links)
	h.AssertClean(rules, fwd)
}
