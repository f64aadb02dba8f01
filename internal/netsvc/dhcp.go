package netsvc

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
)

// dhcpd answers DHCP messages of one network. It holds no socket: handle maps
// a parsed request to a reply and its destination, so that the protocol logic
// is tested and fuzzed without a network.
type dhcpd struct {
	pool      *pool
	log       *slog.Logger
	gw        netip.Addr
	mask      net.IPMask
	bcast     netip.Addr
	domain    string
	dns       bool
	router    bool
	mtu       int
	leaseTime time.Duration

	// leased, when set, hears of each new lease (not renewals): the guard's.
	leased func(mac net.HardwareAddr, ip netip.Addr, ttl time.Duration)

	// exhausted is set while the pool is full, so that a full pool logs one
	// line rather than one per DISCOVER. Only the serving goroutine uses it.
	exhausted bool

	// prober checks addresses before their first offer; nil: no probing.
	prober    prober
	probeFail throttle // of "arp probe failed"
	// probeAhead wakes probeAheadLoop after an offer used up the reserve.
	probeAhead chan struct{}
	// probeMu lets one probe run at a time, so that the DHCP loop waits for
	// a probe ahead that covers its address rather than sending another.
	probeMu sync.Mutex
}

// maxProbeRounds bounds the probes one DISCOVER may wait for.
const maxProbeRounds = 4

// setProber turns on probing before first offers.
func (d *dhcpd) setProber(pr prober) {
	d.prober = pr
	d.pool.mu.Lock()
	d.pool.probing = pr != nil
	d.pool.mu.Unlock()
}

// newDHCPd makes the handler of a validated config around pool p.
func newDHCPd(c Config, p *pool, log *slog.Logger) *dhcpd {
	return &dhcpd{
		pool: p, log: log, gw: c.Gateway.Addr(),
		mask:  net.CIDRMask(c.Gateway.Bits(), 32),
		bcast: ctl.Broadcast(c.Gateway), domain: c.Domain, dns: c.DNS, router: c.Router,
		mtu: c.MTU, leaseTime: c.LeaseTime, probeFail: throttle{period: time.Minute},
		probeAhead: make(chan struct{}, 1),
	}
}

// sendKind is how a reply reaches the client, chosen as RFC 2131 4.1 says.
type sendKind int

const (
	sendBroadcast  sendKind = iota + 1 // to 255.255.255.255
	sendUnicastIP                      // to ciaddr, which the client already uses
	sendUnicastMAC                     // to chaddr/yiaddr, before the client has the address
)

// reply is a message to send and where to.
type reply struct {
	msg  *dhcpv4.DHCPv4
	kind sendKind
	ip   netip.Addr       // destination address (unicast kinds)
	mac  net.HardwareAddr // destination MAC (sendUnicastMAC)
}

// handlePacket parses a datagram and answers it; this is the entry point the
// fuzz target drives.
func (d *dhcpd) handlePacket(b []byte, now time.Time) (*reply, error) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse dhcp packet: %w", err)
	}
	return d.handle(req, now), nil
}

// handle answers one request. It returns nil when no answer is due: not a
// request, relayed (we serve only our bridge), meant for another server, or a
// message that needs none (RELEASE, DECLINE).
func (d *dhcpd) handle(req *dhcpv4.DHCPv4, now time.Time) *reply {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 ||
		ip4(req.GatewayIPAddr).IsValid() && !ip4(req.GatewayIPAddr).IsUnspecified() {
		return nil
	}
	c := clientOf(req)
	if sid := ip4(req.ServerIdentifier()); sid.IsValid() && sid != d.gw {
		if req.MessageType() == dhcpv4.MessageTypeRequest {
			d.pool.forgetOffer(c) // the client chose another server's offer
		}
		return nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return d.discover(req, c, now)
	case dhcpv4.MessageTypeRequest:
		return d.request(req, c, now)
	case dhcpv4.MessageTypeRelease:
		d.release(req, c, now)
	case dhcpv4.MessageTypeDecline:
		d.decline(req, c, now)
	case dhcpv4.MessageTypeInform:
		return d.inform(req)
	}
	return nil
}

// discover offers an address, or stays silent when the pool is full.
func (d *dhcpd) discover(req *dhcpv4.DHCPv4, c client, now time.Time) *reply {
	ip, ok := d.offer(c, ip4(req.RequestedIPAddress()), now)
	if !ok {
		if !d.exhausted {
			d.log.Warn("dhcp pool exhausted: no address to offer", "mac", c.mac.String(),
				"range", d.pool.start.String()+"-"+d.pool.end.String())
		}
		d.exhausted = true
		return nil
	}
	d.exhausted = false
	select {
	case d.probeAhead <- struct{}{}:
	default:
	}
	msg := d.newReply(req, dhcpv4.MessageTypeOffer, ip)
	d.leaseOptions(msg, ip)
	return d.toClient(req, msg, ip)
}

// offer asks the pool for an address, probing never-used ones first.
func (d *dhcpd) offer(c client, want netip.Addr, now time.Time) (netip.Addr, bool) {
	for range maxProbeRounds {
		ip, probe, ok := d.pool.offer(c, want, now)
		if len(probe) == 0 {
			return ip, ok
		}
		d.probe(probe, now, false)
	}
	return netip.Addr{}, false
}

// probe probes those of ips that still need it and records the outcome. A
// probe that cannot be sent (the bridge down, say) counts as "free" only when
// a client waits (ahead false): the client still checks the address itself
// and DECLINEs a taken one. A probe ahead just fails: it returns false.
func (d *dhcpd) probe(ips []netip.Addr, now time.Time, ahead bool) bool {
	d.probeMu.Lock()
	defer d.probeMu.Unlock()
	if ips = d.pool.needProbe(ips, now); len(ips) == 0 {
		return true // a probe ahead did it meanwhile
	}
	inUse, err := d.prober.probe(ips)
	if err != nil && ahead {
		d.log.Debug("dhcp: arp probe ahead failed", "err", err.Error())
		return false
	}
	if err != nil {
		if ok, held := d.probeFail.allow(now); ok {
			d.log.Warn("dhcp: arp probe failed; offering unprobed", "err", err.Error(), "since_last_warning", held)
		}
		inUse = nil
	}
	for ip, mac := range inUse {
		d.log.Warn("dhcp: address answered an arp probe: in use by a host without a lease, held back",
			"ip", ip.String(), "mac", mac.String(), "for", declineHold.String())
	}
	d.pool.recordProbe(ips, inUse, now)
	return true
}

// probeAheadLoop probes never-used addresses before clients ask for them
// (see pool.aheadBatch), at start and whenever an offer wakes it.
func (d *dhcpd) probeAheadLoop(ctx context.Context) error {
	for {
		if batch := d.pool.aheadBatch(time.Now()); len(batch) > 0 && d.probe(batch, time.Now(), true) {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.probeAhead:
		}
	}
}

// request handles the four REQUEST states of RFC 2131 4.3.2, told apart by
// which of server identifier, requested address and ciaddr are set.
func (d *dhcpd) request(req *dhcpv4.DHCPv4, c client, now time.Time) *reply {
	want := ip4(req.RequestedIPAddress())
	ciaddr := ip4(req.ClientIPAddr)
	hasCiaddr := ciaddr.IsValid() && !ciaddr.IsUnspecified()
	switch {
	case ip4(req.ServerIdentifier()).IsValid(): // SELECTING: our offer was taken
		if !want.IsValid() || want.IsUnspecified() {
			return nil
		}
	case want.IsValid() && !want.IsUnspecified(): // INIT-REBOOT
		if !d.pool.prefix.Contains(want) {
			return d.nak(req, c, want, "requested address not on this network")
		}
	case hasCiaddr: // RENEWING (unicast) or REBINDING (broadcast)
		if !d.pool.prefix.Contains(ciaddr) {
			return nil // not our network: another server's client
		}
		want = ciaddr
	default:
		return nil
	}
	return d.ack(req, c, want, now)
}

// ack commits the lease of want to c and ACKs it, or NAKs when want is not
// c's to have.
func (d *dhcpd) ack(req *dhcpv4.DHCPv4, c client, want netip.Addr, now time.Time) *reply {
	res := d.pool.commit(c, want, now)
	r := res.r
	if r == nil {
		return d.nak(req, c, want, "address not available")
	}
	// Renewals come every half lease from every guest: logging them would
	// grow the log without bound and tell nothing new.
	if !res.renewal {
		if d.leased != nil { // before the ACK: the guest may use the address at once
			d.leased(c.mac, r.ip, d.leaseTime)
		}
		d.log.Info("dhcp lease", "ip", r.ip.String(), "mac", c.mac.String(), "hostname", r.hostname)
		if res.taken != "" {
			d.log.Warn("dhcp: hostname owned by another guest; lease given without the name",
				"hostname", res.taken, "ip", r.ip.String(), "mac", c.mac.String())
		}
	}
	msg := d.newReply(req, dhcpv4.MessageTypeAck, r.ip)
	d.leaseOptions(msg, r.ip)
	if r.hostname != "" && r.static {
		msg.UpdateOption(dhcpv4.OptHostName(r.hostname))
	}
	return d.toClient(req, msg, r.ip)
}

// nak refuses a REQUEST. NAKs are always broadcast (RFC 2131 4.1): the client
// may not hold the address it asked for.
func (d *dhcpd) nak(req *dhcpv4.DHCPv4, c client, want netip.Addr, why string) *reply {
	d.log.Info("dhcp nak", "ip", want.String(), "mac", c.mac.String(), "reason", why)
	msg := d.newReply(req, dhcpv4.MessageTypeNak, netip.IPv4Unspecified())
	msg.UpdateOption(dhcpv4.OptMessage(why))
	return &reply{msg: msg, kind: sendBroadcast}
}

// release ends the client's lease early.
func (d *dhcpd) release(req *dhcpv4.DHCPv4, c client, now time.Time) {
	ip := ip4(req.ClientIPAddr)
	if ip.IsValid() && d.pool.release(c, ip, now) {
		d.log.Info("dhcp release", "ip", ip.String(), "mac", c.mac.String())
	}
}

// decline takes an address that another host answered ARP for out of the pool.
func (d *dhcpd) decline(req *dhcpv4.DHCPv4, c client, now time.Time) {
	ip := ip4(req.RequestedIPAddress())
	if ip.IsValid() && d.pool.decline(c, ip, now) {
		d.log.Warn("dhcp decline: address in use by another host, held back", "ip", ip.String(),
			"mac", c.mac.String(), "for", declineHold.String())
	}
}

// inform gives a client that configured its address itself our options,
// without a lease (RFC 2131 3.4), unicast to the address it uses.
func (d *dhcpd) inform(req *dhcpv4.DHCPv4) *reply {
	ciaddr := ip4(req.ClientIPAddr)
	if !ciaddr.IsValid() || !d.pool.prefix.Contains(ciaddr) {
		return nil
	}
	msg := d.newReply(req, dhcpv4.MessageTypeAck, netip.IPv4Unspecified())
	msg.ClientIPAddr = net.IP(ciaddr.AsSlice())
	d.networkOptions(msg)
	return &reply{msg: msg, kind: sendUnicastIP, ip: ciaddr}
}

// newReply makes the reply skeleton: it copies what RFC 2131 table 3 says to
// copy and sets the server identifier. It is built by hand rather than with
// dhcpv4.NewReplyFromRequest, which draws a random xid only to overwrite it.
func (d *dhcpd) newReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, yiaddr netip.Addr) *dhcpv4.DHCPv4 {
	msg := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootReply, HWType: req.HWType, TransactionID: req.TransactionID,
		Flags: req.Flags, ClientHWAddr: req.ClientHWAddr,
		ClientIPAddr: net.IPv4zero, YourIPAddr: net.IP(yiaddr.AsSlice()),
		ServerIPAddr: net.IPv4zero, GatewayIPAddr: net.IPv4zero,
		Options: dhcpv4.Options{},
	}
	msg.UpdateOption(dhcpv4.OptMessageType(t))
	msg.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(d.gw.AsSlice())))
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); id != nil {
		msg.UpdateOption(dhcpv4.OptClientIdentifier(id)) // RFC 6842
	}
	return msg
}

// leaseOptions adds the lease times and the network's options.
func (d *dhcpd) leaseOptions(msg *dhcpv4.DHCPv4, ip netip.Addr) {
	msg.UpdateOption(dhcpv4.OptIPAddressLeaseTime(d.leaseTime))
	msg.UpdateOption(dhcpv4.OptRenewTimeValue(d.leaseTime / 2))
	msg.UpdateOption(dhcpv4.OptRebindingTimeValue(d.leaseTime * 7 / 8))
	d.networkOptions(msg)
}

// networkOptions adds mask, broadcast, DNS, domain and MTU, and the router
// when the network routes: a host-only gateway forwards nothing, and a
// default route to it would only hide the guest's real one (libvirt sends
// none there either).
func (d *dhcpd) networkOptions(msg *dhcpv4.DHCPv4) {
	gw := net.IP(d.gw.AsSlice())
	msg.UpdateOption(dhcpv4.OptSubnetMask(d.mask))
	if d.router {
		msg.UpdateOption(dhcpv4.OptRouter(gw))
	}
	msg.UpdateOption(dhcpv4.OptBroadcastAddress(net.IP(d.bcast.AsSlice())))
	if d.dns {
		msg.UpdateOption(dhcpv4.OptDNS(gw))
	}
	msg.UpdateOption(dhcpv4.OptDomainName(d.domain))
	if d.mtu != 0 && d.mtu != 1500 {
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], uint16(d.mtu))
		msg.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, b[:]))
	}
}

// toClient picks the destination of an OFFER or ACK as RFC 2131 4.1 says:
// ciaddr if set, else broadcast if the client asked for it or has no Ethernet
// address, else unicast to chaddr and the address being handed out.
func (d *dhcpd) toClient(req *dhcpv4.DHCPv4, msg *dhcpv4.DHCPv4, yiaddr netip.Addr) *reply {
	// A ciaddr outside the subnet is not one the client can be reached at on
	// this bridge (a confused or hostile client): answer as if it had none.
	if ci := ip4(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() && d.pool.prefix.Contains(ci) {
		return &reply{msg: msg, kind: sendUnicastIP, ip: ci}
	}
	if req.IsBroadcast() || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return &reply{msg: msg, kind: sendBroadcast}
	}
	return &reply{msg: msg, kind: sendUnicastMAC, ip: yiaddr, mac: req.ClientHWAddr}
}

// clientOf identifies the sender: by client identifier (option 61) when it
// sends one, as RFC 2132 9.14 asks, else by MAC.
func clientOf(req *dhcpv4.DHCPv4) client {
	c := client{key: macKey(req.ClientHWAddr), mac: req.ClientHWAddr, hostname: ctl.SanitizeHostname(req.HostName())}
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		c.key = clientIDKey(hex.EncodeToString(id))
	}
	return c
}

func macKey(mac net.HardwareAddr) string { return "hw:" + mac.String() }
func clientIDKey(hexID string) string    { return "id:" + hexID }

// clientIDOfKey returns the hex client identifier a key was made from.
func clientIDOfKey(key string) (string, bool) {
	return strings.CutPrefix(key, "id:")
}

// ip4 converts a possibly nil or malformed net.IP; invalid input gives the
// zero Addr, which every caller treats as absent.
func ip4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}
	}
	return a
}
