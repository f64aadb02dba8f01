package ctl

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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

// Watcher is what the rule watcher of one network is started with.
type Watcher struct {
	Network string
	PIDFile string // its pid goes here before StartWatcher returns
	LogPath string
	GenFile string // the network's generation file (gen.go), which its forgetting moves
	// EVPNLink is the network's EVPN VXLAN link, whose VTEPs the watcher
	// keeps in the network's VTEP set; empty: none.
	EVPNLink string
	// Bridge is the network's bridge, on which the watcher guards a tap that
	// arrives outside the guard's group (a hot-plugged NIC), isolating it
	// too when Isolate (isolate_guests).
	Bridge  string
	Isolate bool
	// Gen is the nf_tables generation at which the network's rules were
	// whole (0: unknown): a watcher that finds another once it has
	// subscribed heals at once.
	Gen uint32
}

// StartWatcher starts exe, the daemon's binary, in its watch-only role for
// w.Network, logging to w.LogPath, and writes its pid into w.PIDFile before it
// returns, so that the next look under the network's lock finds it. It does
// not wait for the watcher to subscribe. Its argv is {ProcName, WatchFlag,
// NETWORK, PIDFILE, GEN, GENFILE, BRIDGE, ISOLATE[, EVPNLINK]}, ISOLATE
// being IsolateArg or "-".
func StartWatcher(exe string, w Watcher) error {
	logf, err := safefile.Open(w.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open rule watcher log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	argv := w.argv()
	pid, err := selfbin.StartEnv(exe, argv, DaemonEnv(), []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()})
	if err != nil {
		return fmt.Errorf("start rule watcher: %w", err)
	}
	if err := WritePIDFile(w.PIDFile, pid); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return err
	}
	return nil
}

// IsolateArg is the watcher's ISOLATE argument for a network with
// isolate_guests.
const IsolateArg = "isolate"

// argv is the watcher's argv: {ProcName, WatchFlag, NETWORK, PIDFILE, GEN,
// GENFILE, BRIDGE, ISOLATE[, EVPNLINK]}.
func (w Watcher) argv() []string {
	isolate := "-"
	if w.Isolate {
		isolate = IsolateArg
	}
	argv := []string{ProcName, WatchFlag, w.Network, w.PIDFile, strconv.FormatUint(uint64(w.Gen), 10), w.GenFile, w.Bridge, isolate}
	if w.EVPNLink != "" {
		argv = append(argv, w.EVPNLink)
	}
	return argv
}

// genArg is GEN's place in the watcher's argv: the generation the rules
// were whole at when it started, which the watcher follows on its own.
const genArg = 4

// WatcherCurrent reports whether the watcher pid runs with the arguments
// StartWatcher would give it for w, GEN aside: one an older version started
// (no GENFILE, so it does not forget the guard's ports; no BRIDGE, so it does
// not guard a hot-plugged tap), or one started for another bridge, isolation
// or EVPN link, must be started again.
func WatcherCurrent(pid int, w Watcher) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && sameWatcher(b, w.argv())
}

// sameWatcher reports whether cmdline, NUL-terminated arguments, is argv
// but for GEN.
func sameWatcher(cmdline []byte, argv []string) bool {
	have := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if len(have) != len(argv) {
		return false
	}
	for i := range argv {
		if i != genArg && have[i] != argv[i] {
			return false
		}
	}
	return true
}
