package operator

import (
	"strings"
	"testing"
)

// TestDoctorIPv6: on the default network with address6, doctor names a
// missing IPv6 gateway address and IPv6 forwarding turned off, and --fix
// puts both back; status shows the IPv6 side.
func TestDoctorIPv6(t *testing.T) {
	h := newHost(t, "[network.default]\naddress6 = \"fd00:6b76:6d6e::1/64\"\n")
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	if out, code := h.doctor(nil); code != 0 {
		t.Fatalf("doctor on a fresh network: exit %d:\n%s", code, out)
	}
	if out := h.must("status"); !strings.Contains(out, "default  fd00:6b76:6d6e::1/64 (made)  on  on") {
		t.Errorf("status does not show the IPv6 side:\n%s", out)
	}
	h.MustRun("ip", "addr", "del", "fd00:6b76:6d6e::1/64", "dev", "br0")
	h.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
	out := h.expectFinding("problem", "the IPv6 gateway address is missing", 1)
	if !hasLine(out, "problem: ", "IPv6 forwarding is off") {
		t.Errorf("doctor does not name IPv6 forwarding off:\n%s", out)
	}
	h.fix()
	if !strings.Contains(h.MustRun("ip", "-6", "addr", "show", "dev", "br0"), "fd00:6b76:6d6e::1/64") || h.Sysctl("net.ipv6.conf.all.forwarding") != "1" {
		t.Error("--fix left the IPv6 address or forwarding out")
	}
	h.helper("kvmnet-natdown", "vnet0")
	if h.Sysctl("net.ipv6.conf.all.forwarding") != "0" {
		t.Error("IPv6 forwarding left on after the last down")
	}
}
