package netsvc

import (
	"net"
	"net/netip"
	"time"

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
// proves a network warm; once a lease's element expires the port keeps the
// address it learned by using it.
func (s *Server) guardLease(mac net.HardwareAddr, ip netip.Addr, ttl time.Duration) {
	if err := portguard.Lease(s.cfg.Network, mac, ip, ttl); err != nil {
		s.guardWarn("guard: could not record the lease", err)
	}
}

// guardForget forgets the ports that are gone, after a link was deleted.
func (s *Server) guardForget() {
	n, err := portguard.Forget(s.cfg.Network, nil)
	switch {
	case err != nil:
		s.guardWarn("guard: could not forget the ports that left", err)
	case n > 0:
		s.log.Debug("guard: forgot ports that left", "ports", n)
	}
}

// guardWarn logs a guard failure, at most once a minute.
func (s *Server) guardWarn(msg string, err error) {
	if ok, held := s.guardFail.allow(time.Now()); ok {
		s.log.Warn(msg, "err", err.Error(), "held_back", held)
	}
}
