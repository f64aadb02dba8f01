package netsvc

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// WatchOnly is the daemon's binary in its other role, for a network that has
// rules but no DHCP/DNS to serve (isolated, or dhcp and dns off): args are
// {ctl.ProcName, ctl.WatchFlag, NETWORK, PIDFILE, GEN, GENFILE, BRIDGE,
// ISOLATE[, EVPNLINK]}, as ctl.StartWatcher starts it. Until SIGTERM or
// SIGINT it heals the network's rules (watchRules), as the daemon does makes
// the guard forget the ports that are gone and guards a tap that arrives on
// BRIDGE outside the guard's group (watchGone), following the generation
// file GENFILE, and,
// given the network's EVPN VXLAN link, keeps its VTEP set current
// (followVTEPs); then it removes its pid file. It logs to stderr.
func WatchOnly(args []string, heal Heal) int {
	lean()
	closeInheritedFDs()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	const usage = "usage: " + ctl.ProcName + " " + ctl.WatchFlag + " NETWORK PIDFILE GEN GENFILE BRIDGE ISOLATE [EVPNLINK]"
	if len(args) < 8 || len(args) > 9 || args[1] != ctl.WatchFlag {
		log.Error(usage)
		return 2
	}
	gen, err := strconv.ParseUint(args[4], 10, 32)
	if err != nil {
		log.Error(usage + ": GEN: " + err.Error())
		return 2
	}
	network, pidFile := args[2], args[3]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer ctl.RemovePIDFile(pidFile, os.Getpid())
	g := uint32(gen)
	cfg := Config{Network: network, GenFile: args[5], Bridge: args[6], IsolateGuests: args[7] == ctl.IsolateArg}
	s := &Server{cfg: cfg, log: log.With("network", network), heal: heal, rulesGen: &g,
		guardFail: throttle{period: time.Minute}}
	if len(args) == 9 {
		s.cfg.EVPNLink = args[8]
		go func() { _ = s.followVTEPs(ctx) }()
	}
	s.log.Info("watching the rules")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.watchGone(ctx)
	}()
	_ = s.watchRules(ctx)
	wg.Wait()
	return 0
}
