package netsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// flushDelay coalesces lease-file writes: a burst of ACKs costs one write.
// A crash inside the window loses nothing a guest cannot get back, since the
// server ACKs a free address a client asks for (see pool.commit).
const flushDelay = 100 * time.Millisecond

// Server is a bound, not yet serving, daemon: Listen opens every socket so
// that a caller can report readiness before Serve.
type Server struct {
	cfg  Config
	log  *slog.Logger
	pool *pool

	dhcp    *dhcpd
	dhcpUDP *net.UDPConn
	raw     *rawSender
	arp     *arpProber

	sendFailures throttle // of "dhcp reply not sent"

	dns   *dnsd
	dnsL  *dnsListeners
	dnsL6 *dnsListeners // on the IPv6 gateway, when the network has one

	ra *raSender // router advertisements, when the network has IPv6

	flush chan struct{}
	// leaseLock is the flock on the lease file's lock file, held until exit.
	leaseLock *os.File

	// bridgeIndex is the bridge's ifindex at Listen, for watchBridge.
	bridgeIndex int
	// watch makes Serve exit when the bridge goes away. Only the daemon sets
	// it: the check looks the bridge up from whatever thread runs it, which is
	// right only when the whole process lives in the bridge's namespace.
	watch bool
	// vacated, when set, is called when the last tap leaves the bridge (linkwatch.go).
	vacated   Vacated
	guardFail throttle // of the guard's warnings (guard.go)
	// genMu orders the guard's transactions (a lease, a forget), each of
	// which may move the generation file past itself (followGen).
	genMu sync.Mutex
	// heal, when set, puts the network's rules back when another program
	// changes the firewall (rulewatch.go).
	heal Heal
	// rulesGen is the nf_tables generation at which the rules were whole
	// when the watch-only role was started (0: unknown); nil for the daemon.
	rulesGen *uint32
}

// Run serves c until ctx is done: Listen, then Serve.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	s, err := Listen(c, log)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen validates c, binds the sockets (ctl.Bind) and loads the lease file,
// in the network namespace of the calling thread. On error nothing stays open.
func Listen(c Config, log *slog.Logger) (*Server, error) {
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	socks, err := ctl.Bind(c)
	if err != nil {
		return nil, err
	}
	return listenOn(c, log, socks)
}

// listenOn is Listen on sockets bound already: by Listen, or by the daemon's
// starter (ctl.Start), which handed them over. It takes socks over: the
// server keeps the lease lock and its own copies of the sockets, and closes
// socks' files.
func listenOn(c Config, log *slog.Logger, socks *ctl.Sockets) (*Server, error) {
	s := &Server{cfg: c, log: log, pool: newPool(c), flush: make(chan struct{}, 1),
		sendFailures: throttle{period: time.Minute}, guardFail: throttle{period: time.Minute}, leaseLock: socks.LeaseLock}
	socks.LeaseLock = nil
	defer socks.Close()
	s.pool.dirty = s.markDirty
	err := c.Validate()
	if err == nil {
		err = s.loadLeases()
	}
	if err == nil {
		err = s.open(socks)
	}
	if err != nil {
		s.close()
		s.unlock()
		return nil, err
	}
	return s, nil
}

// bridgeWatchInterval is how often the daemon checks that its bridge is
// still the one it bound to.
const bridgeWatchInterval = 2 * time.Second

// open serves on socks the DHCP and DNS that c turns on, and opens the
// sockets no other program could hold: the DHCP replies' raw sender, the ARP
// prober and the router advertisements'.
func (s *Server) open(socks *ctl.Sockets) error {
	ifc, err := net.InterfaceByName(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", s.cfg.Bridge, err)
	}
	s.bridgeIndex = ifc.Index
	if s.cfg.DHCP {
		s.dhcp = newDHCPd(s.cfg, s.pool, s.log)
		if s.cfg.Guard {
			s.dhcp.leased = s.guardLease
		}
		if s.dhcpUDP, err = dhcpConn(socks.DHCP); err != nil {
			return err
		}
		if s.raw, err = newRawSender(s.cfg.Bridge, s.cfg.Gateway.Addr()); err != nil {
			return err
		}
		if s.arp, err = newARPProber(s.cfg.Bridge); err != nil {
			return err
		}
		s.dhcp.setProber(s.arp)
	}
	if s.cfg.Gateway6.IsValid() {
		if s.ra, err = newRASender(s.cfg, s.log); err != nil {
			return err
		}
	}
	if s.cfg.DNS {
		s.dns = newDNSd(s.cfg, s.pool, s.upstreams(), s.log)
		if s.dnsL, err = dnsConns(socks.DNS, socks.DNSTCP); err != nil {
			return err
		}
		if s.cfg.Gateway6.IsValid() {
			s.dns.neighbours = func(p netip.Prefix, mac net.HardwareAddr) []netip.Addr { return neighbours6(ifc.Index, p, mac) }
			if s.dnsL6, err = dnsConns(socks.DNS6, socks.DNS6TCP); err != nil {
				return err
			}
		}
	}
	return nil
}

// upstreams returns the configured upstreams (Validate refuses our own
// address among them), or else the host's resolvers minus our own address,
// followed as resolv.conf changes: forwarding to ourselves would loop.
func (s *Server) upstreams() *upstreamSet {
	if len(s.cfg.Upstreams) > 0 {
		ups := s.notSelf(s.cfg.Upstreams)
		s.log.Info("dns upstreams", "upstreams", ups)
		return newUpstreamSet(ups, nil)
	}
	f, ups := newResolvFollower(resolvConfPath(), s.notSelf, s.log)
	s.log.Info("dns upstreams", "upstreams", ups, "from", f.path)
	return newUpstreamSet(ups, f)
}

// notSelf returns the upstreams that parse and are not this network's own
// DNS address.
func (s *Server) notSelf(ups []string) []string {
	self := netip.AddrPortFrom(s.cfg.Gateway.Addr(), 53)
	self6 := netip.AddrPortFrom(s.cfg.Gateway6.Addr(), 53)
	var out []string
	for _, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err == nil && (ap == self || s.cfg.Gateway6.IsValid() && ap == self6) {
			s.log.Warn("dns: resolv.conf names this network's own gateway; not used as upstream", "upstream", u)
			continue
		}
		if err == nil {
			out = append(out, u)
		}
	}
	return out
}

// watchBridge returns an error once the bridge is gone or re-created: the
// sockets stay bound to the old interface and would serve nobody. Exiting
// lets the next `up` find the daemon dead and start a fresh one.
func (s *Server) watchBridge(ctx context.Context) error {
	ix, err := newIfIndexer(s.cfg.Bridge)
	if err != nil {
		return err
	}
	defer ix.close()
	tick := time.NewTicker(bridgeWatchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		i, err := ix.index()
		if err != nil || i != s.bridgeIndex {
			return fmt.Errorf("bridge %s gone or re-created; exiting so that the next up restarts netsvc", s.cfg.Bridge)
		}
	}
}

// loadLeases restores the lease file, if any, which ctl.Bind has locked for
// as long as the server runs. A file that is not a lease file (empty,
// corrupt, a link) must not keep the network down: it is set aside and the
// pool starts empty.
func (s *Server) loadLeases() error {
	if s.cfg.LeaseFile == "" {
		return nil
	}
	sv, err := readLeaseFile(s.cfg.LeaseFile)
	if errors.Is(err, ctl.ErrBadLeaseFile) {
		aside, aerr := ctl.SetAside(s.cfg.LeaseFile)
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		s.log.Warn("lease file unusable; set aside, starting with no leases", "err", err.Error(), "aside", aside)
		return nil
	}
	if err != nil {
		return err
	}
	kept := s.pool.restore(sv, time.Now())
	s.log.Info("leases loaded", "file", s.cfg.LeaseFile, "kept", kept, "dropped", len(sv.recs)-kept, "held", len(sv.held))
	return nil
}

// markDirty asks the flusher for a lease-file write.
func (s *Server) markDirty() {
	select {
	case s.flush <- struct{}{}:
	default:
	}
}

// Serve answers DHCP and DNS until ctx is done, then writes the lease file a
// last time and closes every socket. It returns nil on a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	run(s.flushLoop)
	run(s.restLoop)
	if s.dhcp != nil {
		run(s.serveDHCP)
		if s.dhcp.prober != nil {
			run(s.dhcp.probeAheadLoop)
		}
	}
	if s.dns != nil {
		run(s.serveDNS)
	}
	if s.ra != nil {
		run(s.ra.serve)
	}
	if s.watch {
		run(s.watchBridge)
	}
	if s.vacated != nil {
		run(s.watchTaps)
	}
	if s.heal != nil {
		run(s.watchRules)
	}
	if s.cfg.EVPNLink != "" {
		run(s.followVTEPs)
	}
	// The logger names the network already (see daemon).
	s.log.Info("netsvc serving", "bridge", s.cfg.Bridge,
		"gateway", s.cfg.Gateway.String(), "dhcp", s.cfg.DHCP, "dns", s.cfg.DNS, "ra", s.ra != nil)
	<-ctx.Done()
	s.close()
	wg.Wait()
	close(errc)
	err := s.writeLeases()
	if s.cfg.LeaseFile != "" {
		// Where a release before per-namespace lease files would look for
		// them, should it run this network next (a downgrade).
		if lerr := ctl.LeaveForOlder(s.cfg.LeaseFile); lerr != nil {
			s.log.Warn("leases not left for an older kvmnet", "err", lerr.Error())
		}
	}
	s.unlock()
	for e := range errc {
		err = errors.Join(err, e)
	}
	return err
}

// close closes every socket, which unblocks the serving loops.
func (s *Server) close() {
	if s.dhcpUDP != nil {
		s.dhcpUDP.Close()
	}
	if s.raw != nil {
		s.raw.close()
	}
	if s.arp != nil {
		s.arp.close()
	}
	if s.ra != nil {
		s.ra.close()
	}
	for _, l := range []*dnsListeners{s.dnsL, s.dnsL6} {
		if l != nil {
			l.udp.close()
			l.tcp.Close()
		}
	}
	if s.dns != nil {
		s.dns.ups.close()
	}
}

// unlock lets another daemon have the lease file: only after the last write.
func (s *Server) unlock() {
	if s.leaseLock != nil {
		s.leaseLock.Close()
		s.leaseLock = nil
	}
}

// flushLoop writes the lease file after changes, at most every flushDelay.
func (s *Server) flushLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.flush:
		}
		select {
		case <-ctx.Done():
			return nil // Serve writes once more on the way out
		case <-time.After(flushDelay):
		}
		if err := s.writeLeases(); err != nil {
			s.log.Error("lease file not written", "err", err.Error())
		}
	}
}

// writeLeases persists the bound leases.
func (s *Server) writeLeases() error {
	if s.cfg.LeaseFile == "" {
		return nil
	}
	return writeLeaseFile(s.cfg.LeaseFile, s.pool.snapshot(time.Now()))
}

// serveDHCP reads requests one at a time: handling one takes microseconds,
// and one goroutine keeps the pool decisions in arrival order.
func (s *Server) serveDHCP(ctx context.Context) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := s.dhcpUDP.ReadFromUDP(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dhcp read: %w", err)
		}
		s.handleDHCP(buf[:n], peer, time.Now())
	}
}

// handleDHCP parses, answers and sends one datagram. Malformed packets are
// dropped with a debug line: anyone on the bridge can send them.
func (s *Server) handleDHCP(b []byte, peer *net.UDPAddr, now time.Time) {
	rep, err := s.dhcp.handlePacket(b, now)
	if err != nil {
		s.log.Debug("dhcp: malformed packet dropped", "from", peer.String(), "err", err.Error())
		return
	}
	if rep == nil {
		return
	}
	if err := s.send(rep); err != nil {
		if ok, held := s.sendFailures.allow(time.Now()); ok {
			s.log.Warn("dhcp reply not sent", "err", err.Error(), "since_last_warning", held)
		}
	}
}

// send delivers a reply by the means its kind says.
func (s *Server) send(rep *reply) error {
	b := rep.msg.ToBytes()
	switch rep.kind {
	case sendUnicastMAC:
		return s.raw.send(b, rep.ip, rep.mac)
	case sendUnicastIP:
		_, err := s.dhcpUDP.WriteToUDP(b, &net.UDPAddr{IP: rep.ip.AsSlice(), Port: clientPort})
		return err
	default:
		_, err := s.dhcpUDP.WriteToUDP(b, &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort})
		return err
	}
}

// serveDNS serves UDP with the forwarder's own loop (serveUDP) and TCP with
// its connection server, on the bound sockets, until ctx ends.
func (s *Server) serveDNS(ctx context.Context) error {
	ls := []*dnsListeners{s.dnsL}
	if s.dnsL6 != nil {
		ls = append(ls, s.dnsL6)
	}
	var servers []*tcpServer
	errc := make(chan error, 2*len(ls))
	for _, l := range ls {
		srv := newTCPServer(s.dns, l.tcp)
		servers = append(servers, srv)
		go func() { errc <- srv.serve() }()
		go func() { errc <- s.dns.serveUDP(l.udp) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns serve: %w", err)
	}
	for _, srv := range servers {
		srv.close()
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}
