package ctl

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/selfbin"
)

// WatchFlag is the daemon's argv[1] in its watch-only role: it serves
// nothing, heals the rules of a network that has no DHCP/DNS and, for an
// EVPN network, keeps its VTEP set (netsvc.WatchOnly). Alive and Stop find and end it by its pid file as they
// do the daemon.
const WatchFlag = "--watch"

// HealProc is argv[0] of the kvmnet binary that the daemon and the watcher
// run to heal a network (`kvmnet-heal NETWORK`): kvmnet's main dispatches on
// it (cli.Heal).
const HealProc = "kvmnet-heal"

// StartWatcher starts exe, the daemon's binary, in its watch-only role for
// network, logging to logPath, and writes its pid into pidFile before it
// returns, so that the next look under the network's lock finds it. It does
// not wait for the watcher to subscribe: gen is the nf_tables generation at
// which the network's rules were whole (0: unknown), and a watcher that finds
// another once it has subscribed heals at once. evpnLink, when not empty, is
// the network's EVPN VXLAN link, whose VTEPs the watcher keeps in the
// network's VTEP set.
func StartWatcher(exe, network, pidFile, logPath string, gen uint32, evpnLink string) error {
	logf, err := safefile.Open(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open rule watcher log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	args := []string{ProcName, WatchFlag, network, pidFile, strconv.FormatUint(uint64(gen), 10)}
	if evpnLink != "" {
		args = append(args, evpnLink)
	}
	pid, err := selfbin.Start(exe, args, []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()})
	if err != nil {
		return fmt.Errorf("start rule watcher: %w", err)
	}
	if err := WritePIDFile(pidFile, pid); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return err
	}
	return nil
}
