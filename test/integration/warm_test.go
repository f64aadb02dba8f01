package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// The tap scripts are fronts (package warm): a warm up and a down that is
// not the last they take themselves; every other run they hand to the
// kvmnet binary, the engine. These tests tell the two apart by the hot file,
// which only the engine writes (a new file each time), and by an engine
// that fails.

// hotInode returns the inode of the default network's hot file, 0 when
// there is none. tmpfs reuses a freed inode's number at once: hold is the
// file, open, which keeps its number from the next one; the caller closes it.
func (h *host) hotInode() (ino uint64, hold *os.File) {
	h.T.Helper()
	f, err := os.Open(h.stateFile(warm.Ext))
	if err != nil {
		return 0, nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		h.T.Fatal(err)
	}
	return st.Ino, f
}

// hotIno is hotInode without the hold.
func (h *host) hotIno() uint64 {
	ino, f := h.hotInode()
	if f != nil {
		f.Close()
	}
	return ino
}

// stateFile returns the path of one of the default network's state files.
func (h *host) stateFile(ext string) string {
	h.T.Helper()
	var path string
	if err := h.Do(func() error {
		d, err := state.Open()
		path = d.File("default", ext)
		return err
	}); err != nil {
		h.T.Fatal(err)
	}
	return path
}

// warmUp runs an up that the front must take itself, and checks that it did.
func (h *host) warmUp(tap string) {
	h.T.Helper()
	hot, hold := h.hotInode()
	if hot == 0 {
		h.T.Fatal("no hot file: the network is not warm")
	}
	defer hold.Close()
	stderr, err := h.helper("kvmnet-natup", tap)
	if err != nil {
		h.T.Fatalf("kvmnet-natup %s: %v\n%s", tap, err, stderr)
	}
	want := "kvmnet-natup: up tap=" + tap + " network=default bridge=br0 mode=nat changes=\"attach " + tap + " to br0\" took="
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		h.T.Errorf("stderr = %q, want one line starting %q", stderr, want)
	}
	if h.hotIno() != hot {
		h.T.Errorf("the up of %s went to the engine (it rewrote the hot file)", tap)
	}
	if h.Master(tap) != "br0" {
		h.T.Errorf("%s is not on br0", tap)
	}
}

// engineUp runs an up that the front must hand to the engine, and checks that it did.
func (h *host) engineUp(tap string) {
	h.T.Helper()
	h.engineRun("kvmnet-natup", tap)
}

// engineRun runs up script prog (of the default network, on br0), which the
// front must hand to the engine, and checks that it did.
func (h *host) engineRun(prog, tap string) {
	h.T.Helper()
	hot, hold := h.hotInode()
	if hold != nil {
		defer hold.Close()
	}
	h.mustHelper(prog, tap)
	if got := h.hotIno(); got == hot || got == 0 {
		h.T.Errorf("the up of %s did not go to the engine (hot file %d, was %d)", tap, got, hot)
	}
	if h.Master(tap) != "br0" {
		h.T.Errorf("%s is not on br0", tap)
	}
}

// TestWarmFallbacks: each thing a warm up cannot prove sends the up to the
// engine, which heals it as it always did; the warm runs between change nothing else.
func TestWarmFallbacks(t *testing.T) {
	h := newHost(t, "nftables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 10)
	h.mustHelper("kvmnet-natup", taps[0])
	whole := h.rules()
	record := h.recordInode()
	h.warmUp(taps[1])

	// The configuration file touched: its resolution may differ.
	now := time.Now()
	if err := os.Chtimes(h.Config, now, now); err != nil {
		t.Fatal(err)
	}
	h.engineUp(taps[2])
	h.warmUp(taps[3])
	if h.recordInode() != record {
		t.Error("warm ups rewrote the record")
	}

	// Rules flushed: the engine puts them back.
	h.breakRules()
	h.engineUp(taps[4])
	if got := h.rules(); got != whole {
		t.Errorf("rules not healed:\n--- want\n%s\n--- got\n%s", whole, got)
	}

	// The daemon killed: the engine starts another.
	pidFile := h.stateFile(".netsvc.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !exited(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon survived SIGKILL")
		}
	}
	h.engineUp(taps[5])
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		t.Errorf("no new daemon: pid file %q, %v", b, err)
	}

	// ip_forward turned off, the gateway address removed: the engine turns
	// it back on, adds it back.
	h.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")
	h.engineUp(taps[6])
	if h.Sysctl("net.ipv4.ip_forward") != "1" {
		t.Error("ip_forward not healed")
	}
	h.MustRun("ip", "addr", "del", "192.168.100.1/24", "dev", "br0")
	h.engineUp(taps[7])
	if !strings.Contains(h.MustRun("ip", "-4", "addr", "show", "br0"), "192.168.100.1/24") {
		t.Error("the gateway address was not added back")
	}

	// The bridge deleted: the engine makes it again.
	h.MustRun("ip", "link", "del", "br0")
	h.engineUp(taps[8])

	// A record mid-change, as an up killed halfway leaves it: the engine
	// finishes it. (An up removes the hot file before it changes anything.)
	h.setDoing("install rules for default")
	if err := os.Remove(h.stateFile(warm.Ext)); err != nil {
		t.Fatal(err)
	}
	h.engineUp(taps[9])
	if d := h.doing(); d != "done" {
		t.Errorf("record still doing %s", d)
	}
	h.warmUp(taps[0]) // already attached: recorded again, nothing else

	for _, tap := range taps {
		h.mustHelper("kvmnet-natdown", tap)
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// exited reports whether process pid is gone or a zombie (nothing reaps an
// orphan here) whose threads have all exited: only then are its files, and
// the lock on its lease file, closed.
func exited(pid int) bool {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err != nil || len(tasks) == 1 && strings.Contains(string(stat), ") Z ")
}

// setDoing writes the default network's record with Doing set.
func (h *host) setDoing(what string) {
	h.T.Helper()
	if err := h.Do(func() error {
		d, err := state.Open()
		if err != nil {
			return err
		}
		rec, _, err := d.Load("default")
		if err != nil {
			return err
		}
		rec.Doing = what
		return d.Save(rec)
	}); err != nil {
		h.T.Fatal(err)
	}
}

// TestWarmRefusals: a tap the engine would refuse, the front hands to it,
// and the refusal is the engine's, word for word; the failed up leaves the
// network to the engine until an up succeeds again.
func TestWarmRefusals(t *testing.T) {
	h := newHost(t, "nftables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	taps := h.taps("vnet", 3)
	h.mustHelper("kvmnet-natup", taps[0])

	h.MustRun("ip", "link", "add", "br9", "type", "bridge")
	h.MustRun("ip", "link", "set", taps[1], "master", "br9")
	stderr, err := h.helper("kvmnet-natup", taps[1])
	want := "kvmnet-natup: tap " + taps[1] + " is a port of br9 already: refusing to move it to br0\n"
	if err == nil || stderr != want {
		t.Errorf("up of a tap on another bridge: %v, stderr %q, want %q", err, stderr, want)
	}
	if h.hotIno() != 0 {
		t.Error("a failed up left the hot file")
	}
	h.MustRun("ip", "link", "del", "br9")

	h.MustRun("ip", "link", "add", "ve0", "type", "veth", "peer", "name", "ve1")
	stderr, err = h.helper("kvmnet-natup", "ve0")
	want = "kvmnet-natup: tap ve0 is a veth link, not a tap: network default attaches only taps (ports = \"any\" in its configuration allows any link)\n"
	if err == nil || stderr != want {
		t.Errorf("up of a veth: %v, stderr %q, want %q", err, stderr, want)
	}
	h.MustRun("ip", "link", "del", "ve0")

	h.engineUp(taps[2])
	for _, tap := range taps {
		h.mustHelper("kvmnet-natdown", tap)
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// TestWarmWithoutEngine: with the kvmnet binary beside the scripts replaced
// by one that fails, warm ups and downs still work (the fronts never ran
// it), and everything else fails with that binary's exit: a changed
// configuration, and the last down. For the NAT scripts and the isolated ones.
func TestWarmWithoutEngine(t *testing.T) {
	for _, s := range []struct{ up, down string }{{"kvmnet-natup", "kvmnet-natdown"}, {"kvmnet-ifup", "kvmnet-ifdown"}} {
		t.Run(s.up, func(t *testing.T) { testWarmWithoutEngine(t, s.up, s.down) })
	}
}

func testWarmWithoutEngine(t *testing.T, up, down string) {
	h := newHost(t, "nftables", "")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	dir := t.TempDir()
	for _, name := range []string{"kvmnet", "kvmnet-netsvc", up, down} {
		b, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(prog, tap string) (string, error) {
		_, stderr, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(dir, prog), tap)
		return stderr, err
	}
	taps := h.taps("vnet", 2)
	if stderr, err := run(up, taps[0]); err != nil {
		t.Fatalf("cold up: %v\n%s", err, stderr)
	}
	// Renamed over, not written into: the daemon runs the real one.
	stub := filepath.Join(dir, ".stub")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho engine ran >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(stub, filepath.Join(dir, "kvmnet")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if stderr, err := run(up, taps[1]); err != nil || strings.Contains(stderr, "engine ran") {
			t.Errorf("warm up without the engine: %v\n%s", err, stderr)
		}
		if stderr, err := run(down, taps[1]); err != nil || strings.Contains(stderr, "engine ran") {
			t.Errorf("warm down without the engine: %v\n%s", err, stderr)
		}
	}
	if stderr, err := run(down, taps[0]); err == nil || stderr != "engine ran\n" {
		t.Errorf("last down did not go to the engine: %v, stderr %q", err, stderr)
	}
	now := time.Now()
	if err := os.Chtimes(h.Config, now, now); err != nil {
		t.Fatal(err)
	}
	if stderr, err := run(up, taps[1]); err == nil || stderr != "engine ran\n" {
		t.Errorf("up after the configuration changed did not go to the engine: %v, stderr %q", err, stderr)
	}
	// The engine back: the last down tears the network down.
	h.mustHelper(down, taps[0])
	for _, tap := range taps {
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}

// TestRunByAnotherName: QEMU runs /etc/qemu-ifup and /etc/qemu-ifdown, links
// to the NAT scripts (make install LINK_QEMU=1): the runs the fronts hand to
// kvmnet are still those helpers', and kvmnet-natup@lab's still network lab's.
func TestRunByAnotherName(t *testing.T) {
	h := newHost(t, "nftables", "[network.lab]\nmode = \"nat\"\nbridge = \"br7\"\naddress = \"10.7.0.1/24\"\n")
	rules, fwd := h.rules(), h.Sysctl("net.ipv4.ip_forward")
	dir := t.TempDir()
	for link, target := range map[string]string{"qemu-ifup": "kvmnet-natup", "qemu-ifdown": "kvmnet-natdown",
		"qemu-ifup@lab": "kvmnet-natup", "qemu-ifdown@lab": "kvmnet-natdown"} {
		if err := os.Symlink(filepath.Join(bin, target), filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(prog, tap string) {
		t.Helper()
		if _, stderr, err := h.Run("env", "KVMNET_CONFIG="+h.Config, filepath.Join(dir, prog), tap); err != nil {
			t.Fatalf("%s %s: %v\n%s", prog, tap, err, stderr)
		}
	}
	taps := h.taps("vnet", 4)
	for i, tap := range taps {
		run("qemu-ifup"+[]string{"", "@lab"}[i%2], tap)
	}
	if h.Master(taps[0]) != "br0" || h.Master(taps[1]) != "br7" || h.Master(taps[2]) != "br0" || h.Master(taps[3]) != "br7" {
		t.Errorf("taps on %s %s %s %s, want br0 br7 br0 br7", h.Master(taps[0]), h.Master(taps[1]), h.Master(taps[2]), h.Master(taps[3]))
	}
	for i, tap := range taps {
		run("qemu-ifdown"+[]string{"", "@lab"}[i%2], tap)
		h.MustRun("ip", "link", "del", tap)
	}
	h.assertClean(rules, fwd)
}
