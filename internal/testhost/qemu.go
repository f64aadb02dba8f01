package testhost

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
)

// QEMU is `qemu-system-x86_64 -machine none -S` in the host's namespace with
// one tap netdev, vnet0, whose script and downscript are kvmnet's NAT
// helpers: the smallest caller that runs them exactly as QEMU does.
type QEMU struct {
	h       *Host
	cmd     *exec.Cmd
	monitor io.WriteCloser
	Out     *Buffer // what QEMU printed
}

// StartQEMU starts QEMU and returns once its script has run: QEMU prints
// its monitor prompt only after the netdev is up. It skips the test when
// QEMU is not installed.
func (h *Host) StartQEMU() *QEMU {
	h.T.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		h.T.Skip("qemu-system-x86_64 not installed (make deps)")
	}
	q := &QEMU{h: h, Out: &Buffer{}}
	q.cmd = h.Cmd("env", "KVMNET_CONFIG="+h.Config, qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S",
		"-monitor", "stdio", "-netdev", fmt.Sprintf("tap,id=n0,ifname=vnet0,script=%s/kvmnet-natup,downscript=%s/kvmnet-natdown", h.Bin, h.Bin))
	q.cmd.Stdout, q.cmd.Stderr = q.Out, q.Out
	if q.monitor, err = q.cmd.StdinPipe(); err != nil {
		h.T.Fatal(err)
	}
	if err := q.cmd.Start(); err != nil {
		h.T.Fatal(err)
	}
	WaitFor(h.T, func() bool { return strings.Contains(q.Out.String(), "(qemu)") }, q.Out)
	return q
}

// Quit quits QEMU from its monitor, which runs the downscript, and waits for it.
func (q *QEMU) Quit() {
	q.h.T.Helper()
	fmt.Fprintln(q.monitor, "quit")
	if err := q.cmd.Wait(); err != nil {
		q.h.T.Fatalf("qemu: %v\n%s", err, q.Out)
	}
}

// Kill kills QEMU with SIGKILL, so that no downscript runs, and waits until
// the kernel has deleted its tap. `ip netns exec` and env exec, so the
// process is QEMU itself.
func (q *QEMU) Kill() {
	q.h.T.Helper()
	if err := q.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		q.h.T.Fatal(err)
	}
	_ = q.cmd.Wait()
	WaitFor(q.h.T, func() bool { return !q.h.Exists("vnet0") }, q.Out)
}
