package operator

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpDown: `kvmnet up` makes a network with no VM and keeps it past its
// last VM; `kvmnet down` refuses while a tap is attached, --force detaches
// it, and the namespace ends as it began.
func TestUpDown(t *testing.T) {
	h := newHost(t, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	h.must("up", "default")
	if !h.Exists("br0") || h.Sysctl("net.ipv4.ip_forward") != "1" {
		t.Fatal("kvmnet up made no network")
	}
	d := h.status().Networks[0]
	if !d.Up || !d.Pinned || !d.Services.Running {
		t.Fatalf("after up: %+v", d)
	}
	h.must("up", "default") // twice: nothing more
	h.taps("vnet0")
	h.helper("kvmnet-natup", "vnet0")
	h.helper("kvmnet-natdown", "vnet0")
	if !h.Exists("br0") || !h.status().Networks[0].Up {
		t.Fatal("the last VM's down took a pinned network down")
	}

	h.helper("kvmnet-natup", "vnet0")
	_, stderr, code := h.kvmnet(nil, "down", "default")
	if code != 1 || !strings.Contains(stderr, "in use by vnet0") {
		t.Fatalf("down with a tap attached: exit %d, %s", code, stderr)
	}
	if h.Master("vnet0") != "br0" {
		t.Fatal("a refused down detached the tap")
	}
	h.must("down", "default", "--force")
	if h.Exists("br0") || h.Master("vnet0") != "" {
		t.Fatal("down --force left the bridge or the tap on it")
	}
	h.helper("kvmnet-natdown", "vnet0") // QEMU's downscript after all: quietly nothing
	h.must("down", "default")           // a network that is not up: nothing
	h.MustRun("ip", "link", "del", "vnet0")
	h.AssertClean(rules, fwd)
}

// TestEmptyEnvironment: hooks and timers may run kvmnet with no PATH; it
// still finds iptables where Debian puts it.
func TestEmptyEnvironment(t *testing.T) {
	h := newHost(t, "[network.default]\ndhcp = false\ndns = false\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	for _, cmd := range []string{"up", "down"} {
		if _, stderr, err := h.Run("env", "-i", "KVMNET_CONFIG="+h.Config, filepath.Join(bin, "kvmnet"), cmd, "default"); err != nil {
			t.Fatalf("kvmnet %s with no PATH: %v\n%s", cmd, err, stderr)
		}
		if cmd == "up" && !strings.Contains(h.IptablesSave(), "kvmnet:default") {
			t.Fatal("kvmnet up with no PATH installed no rule")
		}
	}
	h.AssertClean(rules, fwd)
}

// TestUpErrors: bad names and networks not in the file are the caller's to fix.
func TestUpErrors(t *testing.T) {
	h := newHost(t, "")
	for _, args := range [][]string{{"up", "nosuch"}, {"up", "Bad/Name"}, {"up"}, {"down"}, {"up", "default", "--bogus"}} {
		if _, stderr, code := h.kvmnet(nil, args...); code != 2 {
			t.Errorf("kvmnet %s: exit %d, want 2: %s", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestMAC: stable, locally administered, unicast, distinct per name.
func TestMAC(t *testing.T) {
	mac := func(name string) string {
		out, err := exec.Command(bin+"/kvmnet", "mac", name).Output()
		if err != nil {
			t.Fatalf("kvmnet mac %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	a, b := mac("web1"), mac("web1")
	if a != b {
		t.Fatalf("kvmnet mac web1 gave %s, then %s", a, b)
	}
	if mac("web2") == a {
		t.Error("web1 and web2 share a MAC")
	}
	hw, err := net.ParseMAC(a)
	if err != nil || len(hw) != 6 {
		t.Fatalf("kvmnet mac web1 = %q: %v", a, err)
	}
	if !strings.HasPrefix(a, "52:54:00:") || hw[0]&2 == 0 || hw[0]&1 != 0 || a == "52:54:00:12:34:56" {
		t.Errorf("%s is not a locally administered unicast 52:54:00 MAC other than QEMU's default", a)
	}
	if err := exec.Command(bin+"/kvmnet", "mac").Run(); err == nil {
		t.Error("kvmnet mac with no name succeeded")
	}
}
