package integration

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
)

// TestKilledColdUp: a kvmnet-natup killed with SIGKILL at any point of a cold
// up (QEMU's timeout, the OOM killer) leaves a record of what it did, so that
// the next run — an up and a down, gc, `kvmnet down`, or the down of the
// killed VM's tap — leaves the namespace exactly as it was: links,
// addresses, rules, ip_forward, records and daemons.
func TestKilledColdUp(t *testing.T) {
	h := newHost(t, "", "")
	h.foreignRules()
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	addrs := h.MustRun("ip", "-o", "addr")

	// A whole cold up, measured from the exec as the kills are, sets the spread.
	h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
	start := time.Now()
	h.mustHelper("kvmnet-natup", "vk0")
	whole := time.Since(start)
	h.mustHelper("kvmnet-natdown", "vk0")
	h.MustRun("ip", "link", "del", "vk0")
	h.assertClean(rules, fwd)

	recoveries := []struct {
		name string
		run  func()
	}{
		{"up and down", func() {
			h.MustRun("ip", "tuntap", "add", "vk1", "mode", "tap")
			h.mustHelper("kvmnet-natup", "vk1")
			if h.Master("vk1") != "br0" || !strings.Contains(h.MustRun("ip", "-4", "addr", "show", "br0"), "192.168.100.1/24") {
				t.Error("the up after a killed one did not finish the network")
			}
			h.mustHelper("kvmnet-natdown", "vk1")
			h.MustRun("ip", "link", "del", "vk1")
		}},
		{"gc", func() { h.operator("gc") }},
		{"kvmnet down", func() { h.operator("down", "default") }},
		{"natdown of the killed tap", func() { h.mustHelper("kvmnet-natdown", "vk0") }},
	}
	const kills = 48
	seen := map[string]int{}
	for i := range kills {
		// Denser early: the first steps are short, the rules and the
		// daemon's start take most of a cold up.
		delay := whole * time.Duration(i*i) / (kills * kills) * 5 / 4
		h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
		h.killAfter(delay, "kvmnet-natup", "vk0")
		doing := h.doing()
		seen[doing]++
		h.MustRun("ip", "link", "del", "vk0") // QEMU, refusing to start, deletes its tap
		r := recoveries[i%len(recoveries)]
		r.run()
		h.assertClean(rules, fwd)
		if got := h.MustRun("ip", "-o", "addr"); got != addrs {
			t.Errorf("addresses differ:\n--- before\n%s\n--- after\n%s", addrs, got)
		}
		if t.Failed() {
			t.Fatalf("killed after %s of a %s cold up, record %s; %s did not clean up", delay, whole, doing, r.name)
		}
	}
	var where []string
	for k, n := range seen {
		where = append(where, k+"="+strconv.Itoa(n))
	}
	sort.Strings(where)
	t.Logf("cold up %s; killed %d times, records left: %s", whole, kills, strings.Join(where, " "))
}

// TestKilledLastDown: the last VM's down killed at any point (it tears down
// side by side: daemon, rules, ip_forward, bridge) leaves the record until
// its end, so that gc, `kvmnet down` or the next up and down finish it.
func TestKilledLastDown(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
	h.mustHelper("kvmnet-natup", "vk0")
	start := time.Now()
	h.mustHelper("kvmnet-natdown", "vk0")
	whole := time.Since(start)
	recoveries := h.recoveries()
	const kills = 24
	for i := range kills {
		delay := whole * time.Duration(i) / kills * 5 / 4
		h.mustHelper("kvmnet-natup", "vk0")
		h.killAfter(delay, "kvmnet-natdown", "vk0")
		h.MustRun("ip", "link", "del", "vk0") // QEMU exits, its tap with it
		r := recoveries[i%len(recoveries)]
		r.run()
		h.assertClean(rules, fwd)
		if t.Failed() {
			t.Fatalf("natdown killed after %s of %s; %s did not clean up", delay, whole, r.name)
		}
		h.MustRun("ip", "tuntap", "add", "vk0", "mode", "tap")
	}
}

// recovery is a way to finish what a killed run left of the default network.
type recovery struct {
	name string
	run  func()
}

// recoveries are the runs that finish a killed down's work: gc, `kvmnet
// down`, and the next VM's up and down (on a tap vk1 they make and delete).
func (h *host) recoveries() []recovery {
	return []recovery{
		{"gc", func() { h.operator("gc") }},
		{"kvmnet down", func() { h.operator("down", "default") }},
		{"up and down", func() {
			h.MustRun("ip", "tuntap", "add", "vk1", "mode", "tap")
			h.mustHelper("kvmnet-natup", "vk1")
			h.mustHelper("kvmnet-natdown", "vk1")
			h.MustRun("ip", "link", "del", "vk1")
		}},
	}
}

// killAfter runs a helper as QEMU does and sends it SIGKILL after delay.
// What the killed helper had started goes on (a daemon, an
// iptables-restore); as in life, the next run comes after the latter ends.
func (h *host) killAfter(delay time.Duration, prog, tap string) {
	h.T.Helper()
	cmd := h.Cmd("env", "KVMNET_CONFIG="+h.Config, h.Program(prog), tap)
	if err := cmd.Start(); err != nil {
		h.T.Fatal(err)
	}
	time.Sleep(delay)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	h.waitForExecs()
}

// operator runs the operator tool and fails the test unless it exits 0.
func (h *host) operator(args ...string) {
	h.T.Helper()
	argv := append([]string{"env", "KVMNET_CONFIG=" + h.Config, h.Program("kvmnet")}, args...)
	if _, stderr, err := h.Run(argv...); err != nil {
		h.T.Fatalf("kvmnet %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
}

// waitForExecs waits until every process in the namespace is a DHCP/DNS daemon or a zombie.
func (h *host) waitForExecs() {
	h.T.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		others := 0
		for _, p := range h.Live() {
			b, _ := os.ReadFile("/proc/" + p + "/cmdline")
			if argv0, _, _ := bytes.Cut(b, []byte{0}); len(b) > 0 && string(argv0) != ctl.ProcName {
				others++
			}
		}
		if others == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.T.Fatalf("%d processes of a killed helper still run", others)
		}
	}
}

// defaultRecord returns the default network's record, and whether it has one.
func (h *host) defaultRecord() (rec state.Network, ok bool) {
	h.T.Helper()
	if err := h.Do(func() error {
		d, err := state.Open()
		if err == nil {
			rec, ok, err = d.Load("default")
		}
		return err
	}); err != nil {
		h.T.Fatal(err)
	}
	return rec, ok
}

// doing returns what the record of the default network says an up was
// doing: "none" without a record, "done" for a record of a finished up.
func (h *host) doing() string {
	rec, ok := h.defaultRecord()
	switch {
	case !ok:
		return "none"
	case rec.Doing == "":
		return "done"
	}
	return strings.ReplaceAll(rec.Doing, " ", "_")
}

// recordInode returns the inode of the default network's record: every write
// of it is a rename of a new file.
func (h *host) recordInode() uint64 {
	var ino uint64
	if err := h.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(d.File("default", ".json"), &st); err != nil {
			return err
		}
		ino = st.Ino
		return nil
	}); err != nil {
		h.T.Fatal(err)
	}
	return ino
}

// TestHalfWrittenRecord: a helper killed while it wrote a network's first
// record leaves only the half-written file (nothing is changed before the
// record is written); gc, `kvmnet down` and a down remove it.
func TestHalfWrittenRecord(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	for _, clean := range []func(){
		func() { h.operator("gc") },
		func() { h.operator("down", "default") },
		func() { h.mustHelper("kvmnet-natdown", "vk0") },
	} {
		if err := h.Do(func() error {
			d, err := state.Open()
			if err != nil {
				return err
			}
			return os.WriteFile(d.File("default", ".json.tmp4242"), []byte(`{"name":"def`), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
		clean()
		h.assertClean(rules, fwd)
	}
}

// TestUnrecordedKvmnetBridge: a bridge kvmnet made (its MAC says so) whose
// record was lost is kvmnet's, not an admin's: the last down deletes it.
func TestUnrecordedKvmnetBridge(t *testing.T) {
	h := newHost(t, "", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	h.MustRun("ip", "link", "add", "br0", "address", bridge.MAC("br0").String(), "type", "bridge")
	tap := h.taps("vnet", 1)[0]
	h.mustHelper("kvmnet-natup", tap)
	h.mustHelper("kvmnet-natdown", tap)
	h.MustRun("ip", "link", "del", tap)
	h.assertClean(rules, fwd)
}
