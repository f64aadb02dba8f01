package operator

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmnet/kvmnet/internal/testhost"
)

// TestFirstVM runs the README's "A first VM" as written, in a namespace:
// QEMU with the NAT helpers as its tap scripts sets the default network up
// with no configuration, `kvmnet status` shows it and the VM's tap, and
// quitting QEMU takes it all away. Only what the test machine needs is
// changed: the helpers' directory, no KVM (TCG), and QEMU held stopped (-S)
// with its monitor on stdin, so that no guest boots.
func TestFirstVM(t *testing.T) {
	qemu := "sudo qemu-system-x86_64 -enable-kvm -m 1G -drive file=disk.qcow2 -netdev tap,id=n0,script=/usr/libexec/kvmnet-natup,downscript=/usr/libexec/kvmnet-natdown -device virtio-net-pci,netdev=n0,mac=$(kvmnet mac web1)"
	for _, cmd := range []string{qemu, "kvmnet status"} {
		if _, ok := readmeTasks[cmd]; !ok {
			t.Fatalf("%q is not in readmeTasks", cmd)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps)")
	}
	h := newHost(t, "")
	rules, fwd := h.IptablesSave(), h.Sysctl("net.ipv4.ip_forward")
	dir := t.TempDir()
	// An empty disk (raw: QEMU probes the format), as no guest boots.
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	kvmnet := "env KVMNET_CONFIG=" + h.Config + " " + filepath.Join(bin, "kvmnet")
	sh := strings.TrimPrefix(qemu, "sudo ")
	sh = strings.ReplaceAll(sh, "/usr/libexec/", h.Bin+"/")
	sh = strings.ReplaceAll(sh, "$(kvmnet ", "$("+kvmnet+" ")
	if kvm, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		sh = strings.Replace(sh, "-enable-kvm", "-accel tcg", 1)
	} else {
		kvm.Close()
	}
	sh = fmt.Sprintf("cd %s && KVMNET_CONFIG=%s exec %s -display none -S -monitor stdio", dir, h.Config, sh)
	c := h.Cmd("sh", "-c", sh)
	out := &testhost.Buffer{}
	c.Stdout, c.Stderr = out, out
	monitor, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	testhost.WaitFor(t, func() bool { return strings.Contains(out.String(), "(qemu)") }, out)

	status, _, code := h.kvmnet(nil, strings.Fields("kvmnet status")[1:]...)
	if code != 0 || !regexpLine(status, `^default\s+nat\s+up\s+br0 \(made\)\s+1500\s+192\.168\.100\.1/24 \(made\)`) || !regexpLine(status, `^tap0\s+default\s+tuntap\s+kvmnet\s+attached`) {
		t.Errorf("kvmnet status with the first VM: exit %d\n%s", code, status)
	}

	fmt.Fprintln(monitor, "quit")
	if err := c.Wait(); err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	h.AssertClean(rules, fwd)
}
