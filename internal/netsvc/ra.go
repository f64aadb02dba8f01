package netsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Router advertisements (RFC 4861 6.2): what guests configure IPv6 from, by
// kernel SLAAC (RFC 4862), with no other software.
const (
	// raInterval is between unsolicited RAs (RFC 4861's MaxRtrAdvInterval
	// defaults to 600 s; shorter, so that a guest that missed one, or a
	// changed configuration, is caught up within a couple of minutes).
	raInterval = 100 * time.Second
	// raInitialInterval and raInitialCount: the first RAs after the link is
	// ready come quicker (at most MAX_INITIAL_RTR_ADVERT_INTERVAL, 16 s).
	raInitialInterval = 4 * time.Second
	raInitialCount    = 3
	// raMinDelay is MIN_DELAY_BETWEEN_RAS: solicitations are answered by a
	// multicast RA at most this often, however many guests ask.
	raMinDelay = 3 * time.Second
	// raRouterLifetime is 3 × raInterval rounded up, as RFC 4861 suggests
	// (3 × MaxRtrAdvInterval).
	raRouterLifetime = 30 * time.Minute
	// The prefix's lifetimes: a guest keeps its address a day after the
	// network stopped advertising it, and prefers it for 4 hours.
	raValidLifetime     = 24 * time.Hour
	raPreferredLifetime = 4 * time.Hour
	// raDNSLifetime is RDNSS/DNSSL's, at least 3 × raInterval (RFC 8106 5.1).
	raDNSLifetime = 10 * time.Minute
	// raLinkPoll is how often the job looks for the bridge's link-local
	// address while it has none: the kernel gives a bridge one only once a
	// port is up, and RAs must come from it (RFC 4861 4.2).
	raLinkPoll = 500 * time.Millisecond
	raHopLimit = 64
)

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// raSender advertises the network's IPv6 prefix on the bridge and answers
// router solicitations.
type raSender struct {
	ifi  *net.Interface
	pc   *ipv6.PacketConn
	msg  []byte // the RA, made once: the configuration does not change while the daemon runs
	log  *slog.Logger
	sent int
}

// newRASender opens an ICMPv6 socket bound to the bridge that receives only
// router solicitations.
func newRASender(c Config, log *slog.Logger) (*raSender, error) {
	ifi, err := net.InterfaceByName(c.Bridge)
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	msg, err := raMessage(c, ifi.HardwareAddr)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: bindToDevice(c.Bridge)}
	conn, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("ra listen on %s: %w", c.Bridge, err)
	}
	r := &raSender{ifi: ifi, pc: ipv6.NewPacketConn(conn), msg: msg, log: log}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	err = errors.Join(
		r.pc.SetICMPFilter(&f),
		r.pc.SetHopLimit(ndpHopLimit),
		r.pc.SetMulticastHopLimit(ndpHopLimit),
		r.pc.SetMulticastInterface(ifi),
		r.pc.JoinGroup(ifi, &net.IPAddr{IP: allRouters.AsSlice()}),
	)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ra socket on %s: %w", c.Bridge, err)
	}
	return r, nil
}

// serve sends RAs until ctx is done: soon after the bridge has a usable
// link-local address, a few more quickly, then every raInterval, and one
// (at most every raMinDelay) after each solicitation.
func (r *raSender) serve(ctx context.Context) error {
	solicited := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() { readErr <- r.readSolicitations(solicited) }()
	var last time.Time
	next := time.Now()
	for {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case err := <-readErr:
			timer.Stop()
			return err
		case <-solicited:
			timer.Stop()
			soon := last.Add(raMinDelay)
			if now := time.Now(); soon.Before(now) {
				soon = now
			}
			if soon.Before(next) {
				next = soon
			}
			continue
		case <-timer.C:
		}
		now := time.Now()
		src, ok := r.linkLocal()
		if !ok {
			next = now.Add(raLinkPoll)
			continue
		}
		if err := r.send(src); err != nil {
			r.log.Warn("ra not sent", "err", err.Error())
		}
		last = now
		r.sent++
		next = now.Add(raInterval)
		if r.sent < raInitialCount {
			next = now.Add(raInitialInterval)
		}
	}
}

// readSolicitations signals solicited for every router solicitation that
// arrives; it returns nil once the socket is closed.
func (r *raSender) readSolicitations(solicited chan<- struct{}) error {
	buf := make([]byte, 1500)
	for {
		n, _, _, err := r.pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ra read: %w", err)
		}
		if isRouterSolicitation(buf[:n]) {
			select {
			case solicited <- struct{}{}:
			default:
			}
		}
	}
}

// send multicasts the RA to all nodes from src.
func (r *raSender) send(src netip.Addr) error {
	cm := &ipv6.ControlMessage{HopLimit: ndpHopLimit, Src: src.AsSlice(), IfIndex: r.ifi.Index}
	_, err := r.pc.WriteTo(r.msg, cm, &net.IPAddr{IP: allNodes.AsSlice(), Zone: r.ifi.Name})
	return err
}

// linkLocal returns the bridge's link-local address once duplicate address
// detection has passed.
//
//	ip -6 addr show dev BRIDGE scope link -tentative
func (r *raSender) linkLocal() (netip.Addr, bool) {
	addrs, err := netlink.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: r.ifi.Index}}, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && ip.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func (r *raSender) close() { r.pc.Close() }

// bindToDevice sets SO_BINDTODEVICE, so that a socket bound to the wildcard
// address hears its bridge only (not the uplink, not other networks' bridges).
func bindToDevice(ifname string) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		})
		return errors.Join(err, serr)
	}
}
