package operator

import (
	"strings"
	"testing"
)

// TestGCAfterSIGKILL: QEMU killed with SIGKILL runs no downscript; `kvmnet
// gc` then leaves the namespace as it was before QEMU started, and leaves
// alone a network pinned by `kvmnet up`. The default network here runs no
// DHCP/DNS daemon, which would otherwise reclaim it itself when the tap goes.
func TestGCAfterSIGKILL(t *testing.T) {
	h := newHost(t, "[network.default]\ndhcp = false\ndns = false\n[network.lab]\nmode = \"isolated\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	q := h.StartQEMU()
	if h.Master("vnet0") != "br0" {
		t.Fatalf("vnet0 not on br0 while QEMU runs:\n%s", q.Out)
	}
	h.must("gc") // a live VM: nothing to reclaim
	if !h.Exists("br0") {
		t.Fatal("gc took down a network with a live VM")
	}
	q.Kill()

	h.must("up", "lab")
	_, stderr, code := h.kvmnet(nil, "gc")
	if code != 0 || !strings.Contains(stderr, "network=default") || !strings.Contains(stderr, "delete bridge br0") {
		t.Fatalf("gc: exit %d, log: %s", code, stderr)
	}
	got := h.IptablesSave()
	if !h.Exists("lab") || !strings.Contains(got, "kvmnet:lab") {
		t.Fatal("gc took down the pinned network lab")
	}
	if strings.Contains(got, "kvmnet:default") || h.Exists("br0") {
		t.Errorf("gc left default behind:\n%s", got)
	}
	h.must("down", "lab")
	h.AssertClean(rules, fwd)
}
