package netsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Timeouts of the forwarder.
const (
	// upstreamTimeout bounds one try of one upstream; a guest resolver
	// retries after about 5 s, so two upstreams fit in one of its tries.
	upstreamTimeout = 2 * time.Second
	// localTTL is short: a guest name moves when its lease does.
	localTTL = 30
)

// exchangeFunc sends m to upstream over proto ("udp" or "tcp").
type exchangeFunc func(ctx context.Context, m *dns.Msg, proto, upstream string) (*dns.Msg, error)

// dnsd answers guest names from the pool and forwards the rest. It answers
// only sources inside the network's subnet: it must never be an open resolver.
type dnsd struct {
	prefix    netip.Prefix
	domain    string // lowercase, no dots at the ends
	pool      *pool
	upstreams []string
	exchange  exchangeFunc
	log       *slog.Logger
	now       func() time.Time
	failures  throttle // of "no upstream answered"
}

// newDNSd makes the handler of a validated config around pool p.
func newDNSd(c Config, p *pool, upstreams []string, log *slog.Logger) *dnsd {
	return &dnsd{
		prefix: c.Gateway.Masked(), domain: c.Domain, pool: p,
		upstreams: upstreams, exchange: exchangeUpstream, log: log, now: time.Now,
		failures: throttle{period: time.Minute},
	}
}

// ServeDNS implements dns.Handler.
func (d *dnsd) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	src, proto := remoteOf(w.RemoteAddr())
	resp := d.answer(context.Background(), r, src, proto)
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
		return ip4(a.IP), "udp"
	case *net.TCPAddr:
		return ip4(a.IP), "tcp"
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
func (d *dnsd) answer(ctx context.Context, r *dns.Msg, src netip.Addr, proto string) *dns.Msg {
	if r.Response {
		return nil
	}
	if !src.IsValid() || !d.prefix.Contains(src) {
		return rcode(r, dns.RcodeRefused)
	}
	if r.Opcode != dns.OpcodeQuery {
		return rcode(r, dns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return rcode(r, dns.RcodeFormatError)
	}
	if resp := d.local(r); resp != nil {
		return resp
	}
	return d.forward(ctx, r, proto)
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
	switch {
	case name == d.domain:
		return d.localAnswer(r, netip.Addr{}, true)
	case under && !strings.Contains(label, "."):
	case under:
		return rcode(r, dns.RcodeNameError)
	case strings.Contains(name, ".") || name == "":
		return nil
	}
	ip, ok := d.pool.lookup(label, d.now())
	if !ok && !under {
		return nil // a bare name we do not know: let the upstream say
	}
	return d.localAnswer(r, ip, ok)
}

// localAnswer answers r authoritatively: an A record when ip is valid and A
// (or ANY) was asked, NODATA when the name exists without that type,
// NXDOMAIN when it does not exist.
func (d *dnsd) localAnswer(r *dns.Msg, ip netip.Addr, exists bool) *dns.Msg {
	if !exists {
		m := rcode(r, dns.RcodeNameError)
		m.Authoritative = true
		return m
	}
	m := rcode(r, dns.RcodeSuccess)
	m.Authoritative = true
	q := r.Question[0]
	if ip.IsValid() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) {
		hdr := dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: localTTL}
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(ip.AsSlice())})
	}
	return m
}

// localPTR answers the reverse name of a subnet address.
func (d *dnsd) localPTR(r *dns.Msg, ip netip.Addr) *dns.Msg {
	host, ok := d.pool.reverse(ip, d.now())
	if !ok {
		return d.localAnswer(r, netip.Addr{}, false)
	}
	m := d.localAnswer(r, netip.Addr{}, true)
	q := r.Question[0]
	if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
		hdr := dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: localTTL}
		m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: dns.Fqdn(host + "." + d.domain)})
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

// forward asks each upstream in turn over the client's transport and returns
// the first answer; SERVFAIL when none answers.
func (d *dnsd) forward(ctx context.Context, r *dns.Msg, proto string) *dns.Msg {
	for _, up := range d.upstreams {
		resp, err := d.exchange(ctx, r, proto, up)
		if err == nil && resp != nil {
			resp.Id = r.Id
			return resp
		}
		d.log.Debug("dns upstream failed", "upstream", up, "proto", proto, "err", errText(err))
	}
	if ok, held := d.failures.allow(d.now()); ok {
		d.log.Warn("dns: no upstream answered", "name", r.Question[0].Name, "upstreams", len(d.upstreams), "since_last_warning", held)
	}
	return rcode(r, dns.RcodeServerFailure)
}

func errText(err error) string {
	if err == nil {
		return "empty reply"
	}
	return err.Error()
}

// exchangeUpstream is the real exchangeFunc.
func exchangeUpstream(ctx context.Context, m *dns.Msg, proto, upstream string) (*dns.Msg, error) {
	c := &dns.Client{Net: proto, Timeout: upstreamTimeout, UDPSize: uint16(udpSize(m))}
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, upstream)
	if err != nil {
		return nil, fmt.Errorf("ask %s over %s: %w", upstream, proto, err)
	}
	return resp, nil
}

// dnsListeners are the UDP and TCP sockets of the forwarder, opened before
// the daemon reports ready.
type dnsListeners struct {
	udp net.PacketConn
	tcp net.Listener
}

// listenDNS binds udp and tcp port 53 of the gateway address only. It sets
// IP_FREEBIND so that the daemon can start while the bridge is still getting
// its address.
func listenDNS(gw netip.Addr, port int) (*dnsListeners, error) {
	lc := net.ListenConfig{Control: freebind}
	addr := netip.AddrPortFrom(gw, uint16(port)).String()
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("dns listen udp %s: %w", addr, err)
	}
	l, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns listen tcp %s: %w", addr, err)
	}
	return &dnsListeners{udp: pc, tcp: l}, nil
}

// freebind sets IP_FREEBIND on a socket before bind.
func freebind(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	})
	return errors.Join(err, serr)
}
