package netsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Timeouts of the forwarder.
const (
	// upstreamTimeout bounds one try of one upstream; a guest resolver
	// retries after about 5 s, so two upstreams fit in one of its tries.
	upstreamTimeout = 2 * time.Second
	// forwardTimeout bounds one forwarded query over all upstreams.
	forwardTimeout = 2 * upstreamTimeout
	// localTTL is short: a guest name moves when its lease does. It is also
	// the negative TTL (SOA minimum) of local answers.
	localTTL = 30
	// ednsSize is the UDP payload size local answers advertise (the DNS
	// flag day 2020 value, which avoids fragmentation).
	ednsSize = 1232
)

// exchangeFunc sends m to upstream over proto ("udp" or "tcp").
type exchangeFunc func(ctx context.Context, m *dns.Msg, proto, upstream string) (*dns.Msg, error)

// dnsd answers guest names from the pool and forwards the rest. It answers
// only sources inside the network's subnet: it must never be an open resolver.
type dnsd struct {
	prefix  netip.Prefix
	prefix6 netip.Prefix // the IPv6 prefix, when the network has one
	// neighbours returns the addresses in a prefix that a MAC holds on the
	// bridge (see neighbours6); nil: none known.
	neighbours func(netip.Prefix, net.HardwareAddr) []netip.Addr
	domain     string // lowercase, no dots at the ends
	revZone    string // the reverse zone of the subnet, e.g. "100.168.192.in-addr.arpa."
	pool       *pool
	ups        *upstreamSet
	send       sendFunc
	log        *slog.Logger
	now        func() time.Time
	failures   throttle // of "no upstream answered"
	loops      throttle // of "forwarding loop"
	busy       throttle // of "too many forwards in flight"
	cache      *dnsCache
	// inflight bounds the forwards waiting for an upstream: a loop or a flood
	// must not grow goroutines and sockets without bound.
	inflight chan struct{}
}

// maxInflight is how many forwards may wait for upstreams at once (each a
// kilobyte or two; dnsmasq's dns-forward-max is 150).
const maxInflight = 1024

// newDNSd makes the handler of a validated config around pool p.
func newDNSd(c Config, p *pool, ups *upstreamSet, log *slog.Logger) *dnsd {
	var prefix6 netip.Prefix
	if c.Gateway6.IsValid() {
		prefix6 = c.Gateway6.Masked()
	}
	return &dnsd{
		prefix: c.Gateway.Masked(), prefix6: prefix6, domain: c.Domain, revZone: reverseZone(c.Gateway.Masked()), pool: p,
		ups: ups, send: sendUpstream, log: log, now: time.Now,
		failures: throttle{period: time.Minute}, loops: throttle{period: time.Minute},
		busy: throttle{period: time.Minute}, cache: newDNSCache(cacheSize),
		inflight: make(chan struct{}, maxInflight),
	}
}

// ServeDNS implements dns.Handler.
func (d *dnsd) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	src, proto := remoteOf(w.RemoteAddr())
	resp := d.answer(r, src, proto)
	if resp == nil {
		return
	}
	if proto == "udp" {
		resp.Truncate(udpSize(r))
	}
	if err := w.WriteMsg(resp); err != nil {
		d.log.Debug("dns write", "to", src.String(), "err", err.Error())
	}
}

// remoteOf returns the source address and transport of a query.
func remoteOf(a net.Addr) (netip.Addr, string) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmapped(a.IP), "udp"
	case *net.TCPAddr:
		return unmapped(a.IP), "tcp"
	}
	return netip.Addr{}, "udp"
}

// udpSize is the largest UDP answer the client accepts.
func udpSize(r *dns.Msg) int {
	if o := r.IsEdns0(); o != nil && o.UDPSize() > dns.MinMsgSize {
		return int(o.UDPSize())
	}
	return dns.MinMsgSize
}

// answer returns the reply to r from src, or nil to drop it (r is itself a
// reply). It never fails: every error becomes an rcode.
func (d *dnsd) answer(r *dns.Msg, src netip.Addr, proto string) *dns.Msg {
	if r.Response {
		return nil
	}
	if resp := d.answerOwn(r, src); resp != nil {
		return withEDNS(r, resp)
	}
	return d.forward(r, proto)
}

// answerOwn returns the answers the server makes itself: refusals, errors and
// local names; nil means forward r.
func (d *dnsd) answerOwn(r *dns.Msg, src netip.Addr) *dns.Msg {
	switch {
	case !src.IsValid() || !d.prefix.Contains(src) && !d.prefix6.Contains(src):
		return rcode(r, dns.RcodeRefused)
	case r.Opcode != dns.OpcodeQuery:
		return rcode(r, dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		return rcode(r, dns.RcodeFormatError)
	}
	if o := r.IsEdns0(); o != nil && o.Version() != 0 {
		return rcode(r, dns.RcodeBadVers) // RFC 6891 6.1.3
	}
	return d.local(r)
}

// withEDNS adds an OPT record to an answer of ours when the query had one, as
// RFC 6891 7 requires, and only then.
func withEDNS(r, m *dns.Msg) *dns.Msg {
	stripOPT(m)
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(ednsSize, o.Do())
	}
	return m
}

// stripOPT removes every OPT record from m.
func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// rcode returns an empty reply to r with code c.
func rcode(r *dns.Msg, c int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, c)
	m.RecursionAvailable = true
	return m
}

// local answers names of guests (NAME and NAME.DOMAIN) and reverse names of
// the subnet. It returns nil for names that are not ours. Names under DOMAIN
// and reverse names of the subnet are never forwarded: the upstream does not
// know them, and leaking private lookups helps nobody.
func (d *dnsd) local(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	if q.Qclass != dns.ClassINET {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	if ip, ok := reverseName(name); ok {
		if !d.prefix.Contains(ip) {
			return nil
		}
		return d.localPTR(r, ip)
	}
	label, under := strings.CutSuffix(name, "."+d.domain)
	zone := dns.Fqdn(d.domain)
	switch {
	case name == d.domain:
		return d.localAnswer(r, netip.Addr{}, nil, true, zone)
	case under && !strings.Contains(label, "."):
	case under:
		return d.localAnswer(r, netip.Addr{}, nil, false, zone)
	case strings.Contains(name, ".") || name == "":
		return nil
	}
	ip, ok := d.pool.lookup(label, d.now())
	if !ok && !under {
		return nil // a bare name we do not know: let the upstream say
	}
	if !under {
		zone = "" // a bare name is in no zone of ours: no SOA to show
	}
	var ips6 []netip.Addr
	if ok {
		ips6 = d.addrs6(label)
	}
	return d.localAnswer(r, ip, ips6, ok, zone)
}

// localAnswer answers r authoritatively: an A record when ip is valid and A
// (or ANY) was asked, NODATA when the name exists without that type,
// NXDOMAIN when it does not exist. A negative answer carries the SOA of zone
// (unless zone is "") so that resolvers can cache it (RFC 2308).
func (d *dnsd) localAnswer(r *dns.Msg, ip netip.Addr, ips6 []netip.Addr, exists bool, zone string) *dns.Msg {
	m := rcode(r, dns.RcodeSuccess)
	if !exists {
		m = rcode(r, dns.RcodeNameError)
	}
	m.Authoritative = true
	q := r.Question[0]
	if ip.IsValid() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) {
		hdr := dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: localTTL}
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(ip.AsSlice())})
	}
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, aaaa(q, ips6)...)
	}
	if len(m.Answer) == 0 && zone != "" {
		m.Ns = append(m.Ns, soa(zone))
	}
	return m
}

// soa is the SOA record of a zone the server answers for; its minimum (and
// TTL) is the negative-caching TTL of RFC 2308.
func soa(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: localTTL},
		Ns:  zone, Mbox: "hostmaster." + zone,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: localTTL,
	}
}

// reverseZone is the in-addr.arpa zone that holds the reverse names of p,
// rounded out to whole octets.
func reverseZone(p netip.Prefix) string {
	a := p.Masked().Addr().As4()
	labels := []string{"in-addr.arpa."}
	for i := 0; i < p.Bits()/8; i++ {
		labels = append([]string{strconv.Itoa(int(a[i]))}, labels...)
	}
	return strings.Join(labels, ".")
}

// localPTR answers the reverse name of a subnet address.
func (d *dnsd) localPTR(r *dns.Msg, ip netip.Addr) *dns.Msg {
	host, ok := d.pool.reverse(ip, d.now())
	if !ok {
		return d.localAnswer(r, netip.Addr{}, nil, false, d.revZone)
	}
	m := d.localAnswer(r, netip.Addr{}, nil, true, "")
	q := r.Question[0]
	if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
		hdr := dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: localTTL}
		m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: dns.Fqdn(host + "." + d.domain)})
	} else {
		m.Ns = append(m.Ns, soa(d.revZone))
	}
	return m
}

// reverseName parses "4.3.2.1.in-addr.arpa" into 1.2.3.4.
func reverseName(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	for i, j := 0, 3; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	ip, err := netip.ParseAddr(strings.Join(parts, "."))
	return ip, err == nil && ip.Is4()
}

// dnsListeners are the UDP and TCP sockets of the forwarder, opened before
// the daemon reports ready.
type dnsListeners struct {
	udp *net.UDPConn
	tcp net.Listener
}

// dnsConns serves DNS on udp and tcp, the sockets ctl.Bind bound to port 53
// of a gateway address (with IP_FREEBIND, so that the daemon can start while
// the bridge is still getting its address).
func dnsConns(udp, tcp *os.File) (*dnsListeners, error) {
	c, err := net.FilePacketConn(udp) // dups: the caller closes the files
	if err != nil {
		return nil, fmt.Errorf("dns udp socket: %w", err)
	}
	pc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("dns udp socket: %w", unix.EPROTOTYPE)
	}
	l, err := net.FileListener(tcp)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns tcp socket: %w", err)
	}
	return &dnsListeners{udp: pc, tcp: l}, nil
}

// unmapped is ip as a netip.Addr, IPv4-mapped addresses as IPv4.
func unmapped(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
