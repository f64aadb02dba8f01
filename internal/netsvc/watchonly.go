package netsvc

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// WatchOnly is the daemon's binary in its other role, for a network that has
// rules but no DHCP/DNS to serve (isolated, or dhcp and dns off): args are
// {ctl.ProcName, ctl.WatchFlag, NETWORK, PIDFILE, GEN[, EVPNLINK]}, as
// ctl.StartWatcher starts it. It heals the network's rules (watchRules) and,
// given the network's EVPN VXLAN link, keeps its VTEP set current
// (followVTEPs), until SIGTERM or SIGINT, then removes its pid file. It logs
// to stderr.
func WatchOnly(args []string, heal Heal) int {
	lean()
	closeInheritedFDs()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) < 5 || len(args) > 6 || args[1] != ctl.WatchFlag {
		log.Error("usage: " + ctl.ProcName + " " + ctl.WatchFlag + " NETWORK PIDFILE GEN [EVPNLINK]")
		return 2
	}
	gen, err := strconv.ParseUint(args[4], 10, 32)
	if err != nil {
		log.Error("usage: " + ctl.ProcName + " " + ctl.WatchFlag + " NETWORK PIDFILE GEN [EVPNLINK]")
		return 2
	}
	network, pidFile := args[2], args[3]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer ctl.RemovePIDFile(pidFile, os.Getpid())
	g := uint32(gen)
	s := &Server{cfg: Config{Network: network}, log: log.With("network", network), heal: heal, rulesGen: &g}
	if len(args) == 6 {
		s.cfg.EVPNLink = args[5]
		go func() { _ = s.followVTEPs(ctx) }()
	}
	s.log.Info("watching the rules")
	_ = s.watchRules(ctx)
	return 0
}
