package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
)

// TestLastDownLeavesRulesToChild: a VM's last down returns before its rules
// go (removing them waits a grace period on the kernel), but only once no
// guest can use them: its tap is off the bridge, which has no port left,
// and ip_forward is released. The record, tearing down, still claims the
// rules for the child that holds the network's lock; a heal run meanwhile (as
// a daemon or rule watcher runs one on another program's change) waits for
// the child and puts nothing back; and a child killed leaves them to gc.
func TestLastDownLeavesRulesToChild(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")

	// The daemon stopped: the child waits for its exit (2 s), so the record
	// stays what the down left until then.
	h.slowTeardown("vk0")
	if m := h.Master("vk0"); m != "" {
		t.Errorf("vk0 still on %s after its last down", m)
	}
	if out, _, err := h.Run("ip", "-br", "link", "show", "master", "br0"); err == nil && strings.TrimSpace(out) != "" {
		t.Errorf("ports left on br0 after the last down:\n%s", out)
	}
	if got := h.Sysctl("net.ipv4.ip_forward"); got != fwd {
		t.Errorf("ip_forward = %s when the last down returned, want %s back", got, fwd)
	}
	rec := h.record()
	if !rec.TearingDown || !rec.Rules || rec.Forwarding || !strings.Contains(rec.Doing, "remove rules for default") {
		t.Errorf("record after the last down: tearing_down %v, rules %v, forwarding %v, doing %q; want the rules left to the child, forwarding released",
			rec.TearingDown, rec.Rules, rec.Forwarding, rec.Doing)
	}

	// kvmnet-heal, as a daemon runs it, waits for the child's lock.
	start := time.Now()
	if _, e, err := h.Run("env", "KVMNET_CONFIG="+h.Config, "bash", "-c", `exec -a kvmnet-heal "$0" default`, h.Program("kvmnet")); err != nil {
		t.Errorf("kvmnet-heal during the teardown: %v\n%s", err, e)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("kvmnet-heal returned in %s, while the teardown child waited for the stopped daemon (2 s)", took)
	}
	h.Settle()
	if got := h.rules(); got != rules {
		t.Errorf("rules after a heal during the teardown differ from before:\n--- before\n%s%s\n--- after\n%s%s", rules.ipt, rules.nft, got.ipt, got.nft)
	}

	// Killed before it finishes, the child leaves the rules to gc.
	child := h.slowTeardown("vk0")
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); h.lockHeld() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if rec := h.record(); !rec.TearingDown || !rec.Rules {
		t.Errorf("record of a killed teardown: tearing_down %v, rules %v; want both, for gc", rec.TearingDown, rec.Rules)
	}
	if _, e, code, _ := h.kvmnetRun("gc"); code != 0 {
		t.Errorf("kvmnet gc after a killed teardown: exit %d\n%s", code, e)
	}
	h.MustRun("ip", "link", "del", "vk0")
	h.assertClean(rules, fwd)
}

// record returns the default network's record; it must be there.
func (h *host) record() state.Network {
	h.T.Helper()
	rec, ok := h.defaultRecord()
	if !ok {
		h.T.Fatal("no record of the default network")
	}
	return rec
}
