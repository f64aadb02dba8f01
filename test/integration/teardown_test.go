package integration

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/state"
)

// A VM's last down returns once the network stops serving (no port left on
// the bridge, daemon signalled, ip_forward undone) and leaves the rules and
// the bridge's deletion, which wait on the kernel, to a child that holds the
// network's lock until it is done.

// TestColdUpDuringTeardown: a VM started right after the last one left, while
// the bridge is still being deleted, waits for the deletion and gets a whole
// new network: bridge, rules and (NAT) daemon, its record finished. The same
// for an isolated network, which has no daemon.
func TestColdUpDuringTeardown(t *testing.T) {
	for _, mode := range []struct{ up, down string }{{"kvmnet-natup", "kvmnet-natdown"}, {"kvmnet-ifup", "kvmnet-ifdown"}} {
		t.Run(mode.up, func(t *testing.T) {
			h := newHost(t, "", "")
			rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
			tap := h.taps("vk", 1)[0]
			h.mustHelper(mode.up, tap)
			up := h.rules()
			h.mustHelper(mode.down, tap)
			if !h.lockHeld() {
				t.Fatal("the last down returned with the network's lock free: nothing left to overlap")
			}
			h.mustHelper(mode.up, tap)
			nat := mode.up == "kvmnet-natup"
			if h.Master(tap) != "br0" || h.doing() != "done" || h.daemonRuns() != nat {
				t.Errorf("after an up during the teardown: %s on %q, record %s, daemon running %v", tap, h.Master(tap), h.doing(), h.daemonRuns())
			}
			if got := h.rules(); got != up {
				t.Errorf("rules after an up during the teardown differ from a first up's:\n--- first\n%s\n--- now\n%s", up, got)
			}
			h.mustHelper(mode.down, tap)
			h.MustRun("ip", "link", "del", tap)
			h.assertClean(rules, fwd)
		})
	}
}

// TestKilledTeardown: the child that deletes the bridge, SIGKILLed at any
// point, leaves the record saying so, for gc, `kvmnet down` or the next up
// (which finishes the teardown first) to finish.
func TestKilledTeardown(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
	recoveries := h.recoveries()
	const kills = 12
	left := 0
	for i := range kills {
		h.mustHelper("kvmnet-natup", "vk0")
		h.mustHelper("kvmnet-natdown", "vk0")
		if pid := h.teardownChild(); pid != 0 {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			h.waitForExecs()
		}
		h.MustRun("ip", "link", "del", "vk0") // QEMU exits, its tap with it
		if h.doing() != "none" {
			if left++; left == 1 {
				out, _, _ := h.Run("env", "KVMNET_CONFIG="+h.Config, h.Program("kvmnet"), "doctor")
				if !strings.Contains(out, "a last down's teardown was cut short") {
					t.Errorf("kvmnet doctor on a killed teardown:\n%s", out)
				}
			}
		}
		r := recoveries[i%len(recoveries)]
		r.run()
		h.assertClean(rules, fwd)
		if t.Failed() {
			t.Fatalf("teardown child killed %d ms after the down; %s did not clean up", i*5, r.name)
		}
		h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
	}
	if left == 0 {
		t.Errorf("no kill of %d left a teardown to finish", kills)
	}
	t.Logf("%d of %d kills left a teardown to finish", left, kills)
}

// lockHeld reports whether a run holds the default network's lock.
func (h *host) lockHeld() bool {
	var held bool
	if err := h.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		f, err := safefile.Open(d.File("default", ".lock"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		held = errors.Is(err, unix.EWOULDBLOCK)
		if held {
			return nil
		}
		return err
	}); err != nil {
		h.T.Fatal(err)
	}
	return held
}

// daemonRuns reports whether the default network's DHCP/DNS daemon runs.
func (h *host) daemonRuns() bool {
	var ok bool
	if err := h.Do(func() error {
		d, err := state.Open()
		if err == nil {
			_, ok = lifecycle.ServicesPID(d, "default")
		}
		return err
	}); err != nil {
		h.T.Fatal(err)
	}
	return ok
}

// teardownChild returns the pid of the namespace's teardown child, waiting
// for it a little; 0 once there is none.
func (h *host) teardownChild() int {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, p := range h.Live() {
			b, _ := os.ReadFile("/proc/" + p + "/cmdline")
			if argv0, _, _ := bytes.Cut(b, []byte{0}); string(argv0) == lifecycle.TeardownProc {
				pid, _ := strconv.Atoi(p)
				return pid
			}
		}
		if !h.lockHeld() {
			return 0
		}
	}
	return 0
}
