package operator

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// TestGCAfterSIGKILL: QEMU killed with SIGKILL runs no downscript; `kvmnet
// gc` then leaves the namespace as it was before QEMU started, and leaves
// alone a network pinned by `kvmnet up`.
func TestGCAfterSIGKILL(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps)")
	}
	h := newHost(t, "[network.lab]\nmode = \"isolated\"\n")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	cmd := h.Cmd("env", "KVMNET_CONFIG="+h.Config, qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S",
		"-monitor", "stdio", "-netdev", fmt.Sprintf("tap,id=n0,ifname=vnet0,script=%s/kvmnet-natup,downscript=%s/kvmnet-natdown", bin, bin))
	out := &testhost.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testhost.WaitFor(t, func() bool { return strings.Contains(out.String(), "(qemu)") }, out)
	if h.Master("vnet0") != "br0" {
		t.Fatalf("vnet0 not on br0 while QEMU runs:\n%s", out)
	}
	h.must("gc") // a live VM: nothing to reclaim
	if !h.Exists("br0") {
		t.Fatal("gc took down a network with a live VM")
	}
	// `ip netns exec` and env exec, so the process is QEMU itself.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testhost.WaitFor(t, func() bool { return !h.Exists("vnet0") }, out)

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
