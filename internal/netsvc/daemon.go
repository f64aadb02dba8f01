package netsvc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// Main is the daemon that ctl.Start starts: args are {ctl.ProcName,
// configPath}. It takes over the sockets Start bound (ctl.Inherit), closes
// every other inherited descriptor, tells Start's caller it serves
// (ctl.Ready), serves until SIGTERM or SIGINT, and removes the pid file
// Start wrote. It logs to stderr, which Start points at the log file. It
// returns the exit status.
func Main(args []string) int { return MainWatching(args, Watchers{}) }

// Watchers are the daemon's jobs beside serving, each called when what it
// watches happens; a nil one watches nothing.
type Watchers struct {
	Vacated Vacated // the network's last tap left its bridge (linkwatch.go)
	Heal    Heal    // another program changed the firewall (rulewatch.go)
}

// MainWatching is Main, with the watchers w.
func MainWatching(args []string, w Watchers) int {
	lean()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) != 2 {
		closeInheritedFDs()
		log.Error("usage: " + ctl.ProcName + " CONFIG.json")
		return 2
	}
	if err := daemon(args[1], log, w); err != nil {
		log.Error("netsvc failed", "err", err.Error())
		fmt.Fprintln(os.Stderr, "error:", err.Error())
		return 1
	}
	return 0
}

// daemon is Main after the argument check.
func daemon(configPath string, log *slog.Logger, w Watchers) error {
	c, err := ctl.ReadDaemonConfig(configPath)
	if err != nil {
		closeInheritedFDs()
		return err
	}
	c.Defaults()
	socks := ctl.Inherit(c)
	closeInheritedFDs()
	log = log.With("network", c.Network)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := listenOn(c, log, socks)
	if err != nil {
		return err
	}
	s.watch, s.vacated, s.heal = true, w.Vacated, w.Heal
	defer ctl.RemovePIDFile(c.PIDFile, os.Getpid())
	ctl.Ready()
	shed()
	return s.Serve(ctx)
}

// closeInheritedFDs closes every descriptor above 2 that lacks close-on-exec
// (ctl.Inherit has set it on the ones the daemon keeps).
// QEMU runs its network script with the tap fd inherited (not CLOEXEC), and
// exec.Cmd passes such fds on: a daemon holding it would keep the VM's tap
// alive after QEMU exits. The Go runtime opens its own fds CLOEXEC, so those
// are left alone (unix.CloseRange would close the runtime's epoll fd too).
func closeInheritedFDs() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}
