package netsvc

import (
	"net"
	"net/netip"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/nfgen"
	"github.com/kvmnet/kvmnet/internal/portguard"
)

// The daemon's part of the network's guard table (docs/guard.md): it tells
// the guard which address it leased to which MAC, so that a guest may send
// from its lease at once, and it forgets what the guard learned of ports
// that are gone, so that a VM started again may take its MAC and address.
// It reaches the table through package portguard, never the rule engine.
// Neither is fatal: a guest the guard was not told of learns its address
// from its first packet, and the next cold up forgets gone ports too.

// guardLease tells the guard of a new lease. Renewals are not told: each
// tell is an nf_tables transaction, which moves the ruleset generation that
// proves a network warm (followGen then moves the record with it, when it
// can); once a lease's element expires the port keeps the address it
// learned by using it.
func (s *Server) guardLease(mac net.HardwareAddr, ip netip.Addr, ttl time.Duration) {
	if err := s.followGen(func() (bool, error) { return portguard.Lease(s.cfg.Network, mac, ip, ttl) }); err != nil {
		s.guardWarn("guard: could not record the lease", err)
	}
}

// guardForget forgets the ports that are gone, after a link was deleted.
func (s *Server) guardForget() {
	var n int
	err := s.followGen(func() (bool, error) {
		var err error
		n, err = portguard.Forget(s.cfg.Network, nil)
		return n > 0, err
	})
	switch {
	case err != nil:
		s.guardWarn("guard: could not forget the ports that left", err)
	case n > 0:
		s.log.Debug("guard: forgot ports that left", "ports", n)
	}
}

// followGen runs commit, one of the guard's transactions, and moves the
// network's generation file (Config.GenFile, ctl.WriteGen) to the
// generation it made when nfgen.Follow proves it was the only transaction
// since the one recorded: a front then still finds the rules whole, and the
// next VM's up stays warm. Unproved, the file stays, and the next up is the
// engine's, which records the generation again. The file's failures are
// not commit's: a stale file costs only that one cold up.
func (s *Server) followGen(commit func() (committed bool, err error)) error {
	if s.cfg.GenFile == "" {
		_, err := commit()
		return err
	}
	s.genMu.Lock()
	defer s.genMu.Unlock()
	from, err := ctl.ReadGen(s.cfg.GenFile)
	if err != nil {
		_, err := commit()
		return err
	}
	to, ok, err := nfgen.Follow(from, commit)
	if ok {
		if werr := ctl.AdvanceGen(s.cfg.GenFile, from, to); werr != nil {
			s.guardWarn("guard: could not record the generation", werr)
		}
	}
	return err
}

// guardWarn logs a guard failure, at most once a minute.
func (s *Server) guardWarn(msg string, err error) {
	if ok, held := s.guardFail.allow(time.Now()); ok {
		s.log.Warn(msg, "err", err.Error(), "held_back", held)
	}
}
