package netsvc

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// Daemon is the kvmnet-netsvc binary's main: Main, watching for the
// network's last tap to leave its bridge, whereupon it starts `kvmnet gc
// NETWORK` (startGC), and for other programs' changes to the firewall,
// whereupon it heals the network's rules (startHeal). With ctl.WatchFlag it
// is WatchOnly instead.
func Daemon(args []string) int {
	if len(args) > 1 && args[1] == ctl.WatchFlag {
		return WatchOnly(args, startHeal)
	}
	return MainWatching(args, Watchers{Vacated: startGC, Heal: startHeal})
}

// startGC starts `kvmnet gc NETWORK` in a session of its own and does not
// wait for it: the daemon only notices that the last tap left, and gc
// decides, under the network's lock and by the same rule as a last down
// (lifecycle's Reclaim), whether the network is unused (not pinned, no
// libvirt domain, no tap a VM still holds) and then tears it down, which
// stops this daemon as any last down does. A separate process, not a call:
// stopping the daemon is one of the teardown's parts, and a daemon cannot
// wait for its own exit. kvmnet is the one of this installation
// (selfbin.Kvmnet); gc's lines go to the daemon's log and the system log.
func startGC(network string) {
	exe, err := selfbin.Kvmnet()
	if err == nil {
		cmd := &exec.Cmd{
			Path: exe, Args: []string{selfbin.Name, "gc", network}, Dir: "/",
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
