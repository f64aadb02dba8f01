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
// {ctl.ProcName, ctl.WatchFlag, NETWORK, PIDFILE, GEN}, as ctl.StartWatcher
// starts it. It only heals the network's rules (watchRules) until SIGTERM or
// SIGINT, then removes its pid file. It logs to stderr.
func WatchOnly(args []string, heal Heal) int {
	lean()
	closeInheritedFDs()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	gen, err := strconv.ParseUint(args[len(args)-1], 10, 32)
	if len(args) != 5 || args[1] != ctl.WatchFlag || err != nil {
		log.Error("usage: " + ctl.ProcName + " " + ctl.WatchFlag + " NETWORK PIDFILE GEN")
		return 2
	}
	network, pidFile := args[2], args[3]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer ctl.RemovePIDFile(pidFile, os.Getpid())
	g := uint32(gen)
	s := &Server{cfg: Config{Network: network}, log: log.With("network", network), heal: heal, rulesGen: &g}
	s.log.Info("watching the rules")
	_ = s.watchRules(ctx)
	return 0
}
