package integration

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// kvmnetRun runs the operator tool and returns its stdout, stderr, exit code
// and how long it took.
func (h *host) kvmnetRun(args ...string) (stdout, stderr string, code int, took time.Duration) {
	h.T.Helper()
	start := time.Now()
	stdout, stderr, err := h.Run(append([]string{"env", "KVMNET_CONFIG=" + h.Config, h.Program("kvmnet")}, args...)...)
	took = time.Since(start)
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout, stderr, ee.ExitCode(), took
	} else if err != nil {
		h.T.Fatalf("kvmnet %s: %v", strings.Join(args, " "), err)
	}
	return stdout, stderr, 0, took
}

// teardownOf returns what `kvmnet status --json` says of the default
// network's teardown, and its text table's STATE.
func (h *host) teardownOf() (jsonWord, cell string) {
	h.T.Helper()
	out, e, code, _ := h.kvmnetRun("status", "default", "--json")
	var s struct{ Networks []struct{ Teardown string } }
	if err := json.Unmarshal([]byte(out), &s); err != nil || code != 0 || len(s.Networks) != 1 {
		h.T.Fatalf("kvmnet status --json: exit %d, %v\n%s%s", code, err, out, e)
	}
	table, _, _, _ := h.kvmnetRun("status", "default")
	for _, ln := range strings.Split(table, "\n") {
		if f := strings.Fields(ln); len(f) > 2 && f[0] == "default" {
			cell = f[2]
		}
	}
	return s.Networks[0].Teardown, cell
}

// slowTeardown brings the default network up for tap and takes it down
// again with the daemon stopped (SIGSTOP), so that the last down's teardown
// child waits for the daemon's exit (up to its 2 s, then SIGKILL). It
// returns the child's pid.
func (h *host) slowTeardown(tap string) int {
	h.T.Helper()
	h.mustHelper("kvmnet-natup", tap)
	var pid int
	if err := h.Do(func() error {
		d, err := state.Open()
		if err == nil {
			pid, _ = lifecycle.ServicesPID(d, "default")
		}
		return err
	}); err != nil || pid == 0 {
		h.T.Fatalf("no daemon for default: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		h.T.Fatal(err)
	}
	h.mustHelper("kvmnet-natdown", tap)
	child := h.teardownChild()
	if child == 0 {
		h.T.Fatal("no teardown child after the last down")
	}
	return child
}

// TestTeardownInProgress: status, doctor and gc tell a last down's teardown
// at work (its child holds the lock) from one cut short (the child killed),
// and say which; doctor waits for one at work, a bounded while, and is then
// healthy; `natdown; kvmnet doctor` is healthy.
func TestTeardownInProgress(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")

	t.Run("natdown; doctor", func(t *testing.T) {
		for range 3 {
			h.mustHelper("kvmnet-natup", "vk0")
			h.mustHelper("kvmnet-natdown", "vk0")
			if out, e, code, _ := h.kvmnetRun("doctor"); code != 0 || !strings.HasPrefix(out, "healthy") {
				t.Errorf("kvmnet doctor right after the last down: exit %d\n%s%s", code, out, e)
			}
		}
	})

	t.Run("in progress", func(t *testing.T) {
		child := h.slowTeardown("vk0")
		if err := syscall.Kill(child, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if word, cell := h.teardownOf(); word != "in progress" || cell != "tearing-down" {
			t.Errorf("status of a teardown in progress: %q, STATE %q; want \"in progress\", tearing-down", word, cell)
		}
		// It outlasts doctor's wait: doctor says so, as a fact, not a fault.
		out, e, code, took := h.kvmnetRun("doctor")
		want := "info: network default: a last down's teardown is in progress: the network is going away; evidence: kvmnet-teardown pid " + strconv.Itoa(child) + " holds "
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("kvmnet doctor beside a teardown in progress: exit %d, want 0 and %q\n%s%s", code, want, out, e)
		}
		if took < 3*time.Second || took > 8*time.Second {
			t.Errorf("kvmnet doctor took %s beside a teardown in progress, want its 3 s wait", took)
		}
		// It ends while doctor waits: doctor sees the network gone.
		time.AfterFunc(500*time.Millisecond, func() { _ = syscall.Kill(child, syscall.SIGCONT) })
		if out, e, code, _ := h.kvmnetRun("doctor"); code != 0 || !strings.HasPrefix(out, "healthy") {
			t.Errorf("kvmnet doctor while the teardown finished: exit %d\n%s%s", code, out, e)
		}
		if word, cell := h.teardownOf(); word != "" || cell != "down" {
			t.Errorf("status after the teardown: %q, STATE %q", word, cell)
		}
	})

	t.Run("gc waits", func(t *testing.T) {
		h.slowTeardown("vk0")
		_, e, code, _ := h.kvmnetRun("gc")
		if code != 0 || !strings.Contains(e, "its last down's teardown was in progress: gc waited for it to finish") {
			t.Errorf("kvmnet gc beside a teardown in progress: exit %d\n%s", code, e)
		}
		if word, _ := h.teardownOf(); word != "" {
			t.Errorf("status after gc: teardown %q", word)
		}
	})

	t.Run("cut short", func(t *testing.T) {
		child := h.slowTeardown("vk0")
		if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Its descriptors, the lock's among them, close with its last thread.
		for deadline := time.Now().Add(5 * time.Second); h.lockHeld() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if word, cell := h.teardownOf(); word != "cut short" || cell != "teardown-cut-short" {
			t.Errorf("status of a teardown cut short: %q, STATE %q", word, cell)
		}
		out, e, code, took := h.kvmnetRun("doctor")
		if code != 1 || !strings.Contains(out, "a last down's teardown was cut short") || !strings.Contains(out, "no process holds") {
			t.Errorf("kvmnet doctor on a teardown cut short: exit %d\n%s%s", code, out, e)
		}
		if took > 2*time.Second {
			t.Errorf("kvmnet doctor waited %s on a teardown cut short", took)
		}
		_, e, code, _ = h.kvmnetRun("gc")
		if code != 0 || !strings.Contains(e, "its last down's teardown was cut short: gc finished it") {
			t.Errorf("kvmnet gc on a teardown cut short: exit %d\n%s", code, e)
		}
	})
	h.MustRun("ip", "link", "del", "vk0")
	h.assertClean(rules, fwd)
}
