package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Where a warm up meets the guard's device group (docs/guard.md): a port the
// front leaves is in the network's group, or the engine decides.

// stubEngine copies prog and the engine into a directory of their own, runs
// prog's cold up on tap there, and then replaces that engine by a stub that
// fails, saying "engine ran": from then on only the front can succeed. It
// returns how to run prog there.
func (h *host) stubEngine(prog, tap string) (run func(tap string) (stderr string, err error)) {
	h.T.Helper()
	dir := h.T.TempDir()
	for _, name := range []string{"kvmnet", "kvmnet-netsvc", prog} {
		b, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			h.T.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			h.T.Fatal(err)
		}
	}
	run = func(tap string) (string, error) {
		_, stderr, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(dir, prog), tap)
		return stderr, err
	}
	if stderr, err := run(tap); err != nil {
		h.T.Fatalf("cold up: %v\n%s", err, stderr)
	}
	// Renamed over, not written into: the daemon runs the real one.
	stub := filepath.Join(dir, ".stub")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho engine ran >&2\nexit 3\n"), 0o755); err != nil {
		h.T.Fatal(err)
	}
	if err := os.Rename(stub, filepath.Join(dir, "kvmnet")); err != nil {
		h.T.Fatal(err)
	}
	return run
}

// linkGroup is link name's device group as ip shows it ("default" for 0).
func (h *host) linkGroup(name string) string {
	h.T.Helper()
	f := strings.Fields(h.MustRun("ip", "-o", "link", "show", "dev", name))
	for i := range len(f) - 1 {
		if f[i] == "group" {
			return f[i+1]
		}
	}
	h.T.Fatalf("ip shows no group for %s: %q", name, f)
	return ""
}

// TestWarmForeignPortGoesCold: a tap someone else made a port of the
// network's bridge (an admin, an older kvmnet) is outside the guard's device
// group; the front does not report it up, it hands it to the engine, which
// puts it in.
func TestWarmForeignPortGoesCold(t *testing.T) {
	h := newHost(t, "nftables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 2)
	run := h.stubEngine("kvmnet-natup", taps[0])
	if g := h.linkGroup(taps[0]); g == "default" {
		t.Fatalf("the engine left %s in group %s: is the guard off?", taps[0], g)
	}
	h.MustRun("ip", "link", "set", taps[1], "master", "br0")
	if stderr, err := run(taps[1]); err == nil || !strings.Contains(stderr, "engine ran") {
		t.Errorf("the up of a port outside the guard's group did not go to the engine: %v, stderr %q, group %s", err, stderr, h.linkGroup(taps[1]))
	}
	h.mustHelper("kvmnet-natup", taps[1]) // the engine's own
	if g, want := h.linkGroup(taps[1]), h.linkGroup(taps[0]); g != want {
		t.Errorf("the engine left %s in group %s, want %s", taps[1], g, want)
	}
	h.mustHelper("kvmnet-natdown", taps[1])
	h.mustHelper("kvmnet-natdown", taps[0])
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// TestWarmRefusedPortLeavesGroup: a tun device (no Ethernet: a bridge
// refuses it) of another MTU than the bridge's gets its MTU back, and is left
// outside the guard's group, which the kernel set before it refused the
// master.
func TestWarmRefusedPortLeavesGroup(t *testing.T) {
	h := newHost(t, "nftables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 1)
	run := h.stubEngine("kvmnet-natup", taps[0])
	h.MustRun("ip", "tuntap", "add", "vtun0", "mode", "tun")
	h.MustRun("ip", "link", "set", "vtun0", "mtu", "1400")
	stderr, err := run("vtun0")
	if err == nil {
		t.Errorf("the up of a tun device succeeded: %q", stderr)
	}
	if g := h.linkGroup("vtun0"); g != "default" {
		t.Errorf("the bridge refused vtun0 but it is in group %s, want default (stderr %q)", g, stderr)
	}
	if m := h.Master("vtun0"); m != "" {
		t.Errorf("vtun0 is on %s", m)
	}
	out := h.MustRun("ip", "-o", "link", "show", "dev", "vtun0")
	if !strings.Contains(out, "mtu 1400 ") {
		t.Errorf("vtun0 did not get its MTU back: %s", out)
	}
	// The front's one request brings a port up before the kernel tries the
	// master: a refused port goes down again.
	if flags, _, _ := strings.Cut(out, ">"); strings.Contains(flags+",", ",UP,") {
		t.Errorf("the bridge refused vtun0 but it is up: %s", out)
	}
	h.MustRun("ip", "link", "del", "vtun0")
	h.mustHelper("kvmnet-natdown", taps[0])
	h.MustRun("ip", "link", "del", taps[0])
	h.assertClean(rules, fwd)
}
