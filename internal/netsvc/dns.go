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

	"golang.org/x/net/dns/dnsmessage"
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

// exchangeFunc sends query q to upstream over proto ("udp" or "tcp") and
// returns the answer.
type exchangeFunc func(ctx context.Context, q []byte, proto, upstream string) ([]byte, error)

// dnsd answers guest names from the pool and forwards the rest. It answers
// only sources inside the network's subnet: it must never be an open resolver.
type dnsd struct {
	prefix  netip.Prefix
	prefix6 netip.Prefix // the IPv6 prefix, when the network has one
	// neighbours returns the addresses in a prefix that a MAC holds on the
	// bridge (see neighbours6); nil: none known.
	neighbours func(netip.Prefix, net.HardwareAddr) []netip.Addr
	domain     string // lowercase, no dots at the ends
	dotDomain  string // "." + domain
	revZone    string // the reverse zone of the subnet, e.g. "100.168.192.in-addr.arpa."
	zoneSOA    *soaRecord
	revSOA     *soaRecord
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
	rev := reverseZone(c.Gateway.Masked())
	return &dnsd{
		prefix: c.Gateway.Masked(), prefix6: prefix6, domain: c.Domain, dotDomain: "." + c.Domain, revZone: rev, pool: p,
		zoneSOA: newSOA(c.Domain + "."), revSOA: newSOA(rev),
		ups: ups, send: sendUpstream, log: log, now: time.Now,
		failures: throttle{period: time.Minute}, loops: throttle{period: time.Minute},
		busy: throttle{period: time.Minute}, cache: newDNSCache(cacheSize),
		inflight: make(chan struct{}, maxInflight),
	}
}

// answer returns the packed reply to query b from src, or nil to drop it (b
// is not DNS, or is itself a reply). It waits for the upstreams when it
// forwards: the TCP server's and the tests' way in.
func (d *dnsd) answer(b []byte, src netip.Addr, proto string) []byte {
	r, err := parseQuery(b)
	if err != nil || r.hdr.Response {
		return nil
	}
	rep, ok := d.answerOwn(r, src)
	if !ok {
		rep = d.forward(r, proto)
	}
	return r.finish(rep, proto)
}

// answerOwn returns the answers the server makes itself: refusals, errors and
// local names; false means forward r.
func (d *dnsd) answerOwn(r *dnsQuery, src netip.Addr) (dnsReply, bool) {
	switch {
	case !src.IsValid() || !d.prefix.Contains(src) && !d.prefix6.Contains(src):
		return rcode(r, dnsmessage.RCodeRefused), true
	case r.hdr.OpCode != 0:
		return rcode(r, dnsmessage.RCodeNotImplemented), true
	case r.nq != 1 || r.opts > 1: // RFC 6891 6.1.1: one OPT at most
		return rcode(r, dnsmessage.RCodeFormatError), true
	case r.edns && r.version != 0:
		rep := rcode(r, dnsmessage.RCodeSuccess) // RFC 6891 6.1.3: BADVERS, 16,
		rep.ext = 1                              // is 1 in the OPT's upper bits
		return rep, true
	}
	b := d.local(r)
	return dnsReply{b: b}, b != nil
}

// replyHeader is the header of our reply to r with code rc.
func replyHeader(r *dnsQuery, rc dnsmessage.RCode) dnsmessage.Header {
	h := dnsmessage.Header{ID: r.hdr.ID, Response: true, OpCode: r.hdr.OpCode, RCode: rc, RecursionAvailable: true}
	if r.hdr.OpCode == 0 {
		h.RecursionDesired, h.CheckingDisabled = r.hdr.RecursionDesired, r.hdr.CheckingDisabled
	}
	return h
}

// newReply starts our reply to r: header h and r's first question.
func newReply(r *dnsQuery, h dnsmessage.Header) dnsmessage.Builder {
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), h)
	_ = b.StartQuestions()
	if r.nq > 0 {
		_ = b.Question(r.q)
	}
	return b
}

// rcode returns an empty reply to r with code c.
func rcode(r *dnsQuery, c dnsmessage.RCode) dnsReply {
	b := newReply(r, replyHeader(r, c))
	out, err := b.Finish()
	if err != nil { // a question that parsed packs: not reached
		out = make([]byte, headerLen)
	}
	return dnsReply{b: out}
}

// local answers names of guests (NAME and NAME.DOMAIN) and reverse names of
// the subnet. It returns nil for names that are not ours. Names under DOMAIN
// and reverse names of the subnet are never forwarded: the upstream does not
// know them, and leaking private lookups helps nobody.
func (d *dnsd) local(r *dnsQuery) []byte {
	if r.q.Class != dnsmessage.ClassINET {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(r.q.Name.String(), "."))
	if ip, ok := reverseName(name); ok {
		if !d.prefix.Contains(ip) {
			return nil
		}
		return d.localPTR(r, ip)
	}
	label, under := strings.CutSuffix(name, d.dotDomain)
	zone := d.zoneSOA
	switch {
	case name == d.domain:
		return d.localAnswer(r, localRecords{exists: true, soa: zone})
	case under && !strings.Contains(label, "."):
	case under:
		return d.localAnswer(r, localRecords{soa: zone})
	case strings.Contains(name, ".") || name == "":
		return nil
	}
	ip, ok := d.pool.lookup(label, d.now())
	if !ok && !under {
		return nil // a bare name we do not know: let the upstream say
	}
	if !under {
		zone = nil // a bare name is in no zone of ours: no SOA to show
	}
	recs := localRecords{exists: ok, a: ip, soa: zone}
	if ok {
		recs.aaaa = d.addrs6(label)
	}
	return d.localAnswer(r, recs)
}

// localRecords is what a local answer holds.
type localRecords struct {
	exists bool
	a      netip.Addr   // the A record, when valid
	aaaa   []netip.Addr // the AAAA records
	ptr    string       // the PTR record's target (a full name), when not ""
	// soa is the zone's SOA, shown in the authority section of an answer
	// without records; nil: none.
	soa *soaRecord
}

// localAnswer answers r authoritatively with the records of recs that the
// question asks for (ANY: all), NODATA when the name exists without them,
// NXDOMAIN when it does not exist. A negative answer carries the SOA of the
// zone, when it has one, so that resolvers can cache it (RFC 2308).
func (d *dnsd) localAnswer(r *dnsQuery, recs localRecords) []byte {
	rc := dnsmessage.RCodeSuccess
	if !recs.exists {
		rc = dnsmessage.RCodeNameError
	}
	h := replyHeader(r, rc)
	h.Authoritative = true
	b := newReply(r, h)
	_ = b.StartAnswers()
	qt := r.q.Type
	all := qt == dnsmessage.TypeALL
	hdr := dnsmessage.ResourceHeader{Name: r.q.Name, Class: dnsmessage.ClassINET, TTL: localTTL}
	n := 0
	if recs.a.IsValid() && (qt == dnsmessage.TypeA || all) {
		n++
		_ = b.AResource(hdr, dnsmessage.AResource{A: recs.a.As4()})
	}
	if qt == dnsmessage.TypeAAAA || all {
		for _, ip := range recs.aaaa {
			n++
			_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
	}
	if recs.ptr != "" && (qt == dnsmessage.TypePTR || all) {
		if ptr, err := dnsmessage.NewName(recs.ptr); err == nil {
			n++
			_ = b.PTRResource(hdr, dnsmessage.PTRResource{PTR: ptr})
		}
	}
	if n == 0 && recs.soa != nil {
		_ = b.StartAuthorities()
		_ = b.SOAResource(recs.soa.hdr, recs.soa.soa)
	}
	out, err := b.Finish()
	if err != nil { // every name here parsed or was checked: not reached
		return rcode(r, dnsmessage.RCodeServerFailure).b
	}
	return out
}

// soaRecord is the SOA record of a zone the server answers for; its minimum
// (and TTL) is the negative-caching TTL of RFC 2308.
type soaRecord struct {
	hdr dnsmessage.ResourceHeader
	soa dnsmessage.SOAResource
}

// newSOA returns the SOA of zone (a full name), or nil when it is no name.
func newSOA(zone string) *soaRecord {
	name, err1 := dnsmessage.NewName(zone)
	mbox, err2 := dnsmessage.NewName("hostmaster." + zone)
	if err1 != nil || err2 != nil || zone == "." {
		return nil
	}
	return &soaRecord{
		hdr: dnsmessage.ResourceHeader{Name: name, Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: localTTL},
		soa: dnsmessage.SOAResource{NS: name, MBox: mbox, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: localTTL},
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
func (d *dnsd) localPTR(r *dnsQuery, ip netip.Addr) []byte {
	host, ok := d.pool.reverse(ip, d.now())
	if !ok {
		return d.localAnswer(r, localRecords{soa: d.revSOA})
	}
	return d.localAnswer(r, localRecords{exists: true, ptr: host + "." + d.domain + ".", soa: d.revSOA})
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
	udp *udpLoop
	tcp net.Listener
}

// dnsConns serves DNS on udp and tcp, the sockets ctl.Bind bound to port 53
// of a gateway address (with IP_FREEBIND, so that the daemon can start while
// the bridge is still getting its address).
func dnsConns(udp, tcp *os.File) (*dnsListeners, error) {
	u, err := newUDPLoop(udp) // dups: the caller closes the files
	if err != nil {
		return nil, err
	}
	l, err := net.FileListener(tcp)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("dns tcp socket: %w", err)
	}
	return &dnsListeners{udp: u, tcp: l}, nil
}
