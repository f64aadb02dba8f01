package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Daemon runs the DHCP/DNS daemon's main, run (netsvc.MainWatching, which
// only the kvmnet binary links), under its own name in ps -e and top: the
// kernel names a process after the file it executed (kvmnet), whatever its
// argv[0]. It gives run reap, to call when the network's last tap is gone.
func Daemon(args []string, run func(args []string, vacated func(network string)) int) int {
	setComm(filepath.Base(args[0]))
	return run(args, reap)
}

// reap starts `kvmnet gc NETWORK` in a session of its own and does not wait
// for it: the daemon only notices that the last tap left, and gc decides,
// under the network's lock and by the same rule as a last down (lifecycle's
// Reclaim), whether the network is unused (not pinned, no libvirt domain,
// no tap a VM still holds) and then tears it down with lifecycle's Teardown,
// which stops this daemon as any last down does. A separate process, not a
// call: stopping the daemon is one of the teardown's parts, and a daemon
// cannot wait for its own exit. The daemon is the kvmnet binary, so gc is
// /proc/self/exe; its lines go to the daemon's log and the system log.
func reap(network string) {
	exe, err := os.Executable()
	if err == nil {
		cmd := &exec.Cmd{
			Path: exe, Args: []string{"kvmnet", "gc", network}, Dir: "/",
			Stdout: os.Stderr, Stderr: os.Stderr,
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
		if err = cmd.Start(); err == nil {
			go func() { _ = cmd.Wait() }()
			return
		}
	}
	fmt.Fprintf(os.Stderr, "start kvmnet gc %s: %s\n", network, err.Error())
}

// setComm renames the process, i.e. its main thread, whichever thread the
// caller runs on: prctl(PR_SET_NAME) would rename only the calling thread.
// A failure only leaves the name kvmnet.
//
//	echo -n NAME > /proc/self/comm
func setComm(name string) {
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
}
