package netsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/miekg/dns"
)

var guestSrc = netip.MustParseAddr("192.168.100.50")

// fakeUpstreams records forwarded queries and answers from a table.
type fakeUpstreams struct {
	mu    sync.Mutex
	calls []string // "upstream/proto"
	down  map[string]bool
}

func (f *fakeUpstreams) exchange(_ context.Context, m *dns.Msg, proto, up string) (*dns.Msg, error) {
	f.mu.Lock()
	f.calls = append(f.calls, up+"/"+proto)
	f.mu.Unlock()
	if f.down[up] {
		return nil, errors.New("timeout")
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(203, 0, 113, 7)})
	return r, nil
}

// dnsFor makes a socketless DNS handler with a lease for "web" at .2.
func dnsFor(t testing.TB, ups []string, f *fakeUpstreams) (*dnsd, netip.Addr) {
	c := testConfig()
	p := newPool(c)
	d := newDHCPd(c, p, discardLog())
	now := time.Now()
	off := d.handle(newReq(t, dhcpv4.MessageTypeDiscover, macN(1)), now)
	ip := addrOf(off.msg.YourIPAddr)
	d.handle(newReq(t, dhcpv4.MessageTypeRequest, macN(1), optReqIP(ip), optServerID(testGW), withHostname("web")), now)
	s := newDNSd(c, p, newUpstreamSet(ups, nil), discardLog())
	s.send = sendVia(msgExchange(f.exchange))
	return s, ip
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

func aOf(t testing.TB, r *dns.Msg) string {
	t.Helper()
	if r == nil || len(r.Answer) != 1 {
		t.Fatalf("want one answer, got %v", r)
	}
	switch rr := r.Answer[0].(type) {
	case *dns.A:
		return rr.A.String()
	case *dns.PTR:
		return rr.Ptr
	}
	t.Fatalf("unexpected answer %v", r.Answer[0])
	return ""
}

func TestDNSLocalNames(t *testing.T) {
	f := &fakeUpstreams{}
	d, ip := dnsFor(t, []string{"192.0.2.1:53"}, f)
	for _, name := range []string{"web.kvm", "WEB.Kvm", "web"} {
		r := msgAnswer(d, query(name, dns.TypeA), guestSrc, "udp")
		if got := aOf(t, r); got != ip.String() || !r.Authoritative {
			t.Errorf("%s: %s, want %s", name, got, ip)
		}
	}
	if got := aOf(t, msgAnswer(d, query("fixed.kvm", dns.TypeA), guestSrc, "udp")); got != testStatic.IP.String() {
		t.Errorf("static host: %s", got)
	}
	if r := msgAnswer(d, query("web.kvm", dns.TypeAAAA), guestSrc, "udp"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA of a guest: %v, want NODATA", r)
	}
	for _, name := range []string{"nobody.kvm", "a.b.kvm"} {
		if r := msgAnswer(d, query(name, dns.TypeA), guestSrc, "udp"); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: rcode %d, want NXDOMAIN", name, r.Rcode)
		}
	}
	rev, _ := dns.ReverseAddr(ip.String())
	if got := aOf(t, msgAnswer(d, query(rev, dns.TypePTR), guestSrc, "udp")); got != "web.kvm." {
		t.Errorf("PTR: %s", got)
	}
	rev, _ = dns.ReverseAddr("192.168.100.222")
	if r := msgAnswer(d, query(rev, dns.TypePTR), guestSrc, "udp"); r.Rcode != dns.RcodeNameError {
		t.Errorf("PTR of an unknown subnet address: %v", r)
	}
	if len(f.calls) != 0 {
		t.Errorf("local names were forwarded: %v", f.calls)
	}
}

func TestDNSForwardRefuseFail(t *testing.T) {
	f := &fakeUpstreams{down: map[string]bool{"192.0.2.1:53": true}}
	d, _ := dnsFor(t, []string{"192.0.2.1:53", "192.0.2.2:53"}, f)
	q := query("example.org", dns.TypeA)
	if got := aOf(t, msgAnswer(d, q, guestSrc, "tcp")); got != "203.0.113.7" {
		t.Errorf("forwarded answer %s", got)
	}
	if strings.Join(f.calls, " ") != "192.0.2.1:53/tcp 192.0.2.2:53/tcp" {
		t.Errorf("upstream calls %v, want each upstream in order over tcp", f.calls)
	}
	if r := msgAnswer(d, query("unknownhost", dns.TypeA), guestSrc, "udp"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("an unknown bare name is forwarded: %v", r)
	}
	for _, src := range []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("127.0.0.1"), {}} {
		if r := msgAnswer(d, query("web.kvm", dns.TypeA), src, "udp"); r.Rcode != dns.RcodeRefused {
			t.Errorf("query from %s: rcode %d, want REFUSED", src, r.Rcode)
		}
	}
	f.down["192.0.2.2:53"] = true
	if r := msgAnswer(d, query("uncached.example.org", dns.TypeA), guestSrc, "udp"); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("all upstreams down: rcode %d, want SERVFAIL", r.Rcode)
	}
	resp := query("x.org", dns.TypeA)
	resp.Response = true
	if msgAnswer(d, resp, guestSrc, "udp") != nil {
		t.Errorf("a response was answered")
	}
	two := query("x.org", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	if r := msgAnswer(d, two, guestSrc, "udp"); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: rcode %d", r.Rcode)
	}
}

func TestResolvConfServers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# stub\nnameserver 127.0.0.53\nnameserver 2001:db8::53\noptions edns0\nsearch lan\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := resolvConfServers(path)
	if err != nil || strings.Join(got, " ") != "127.0.0.53:53 [2001:db8::53]:53" {
		t.Errorf("got %v %v", got, err)
	}
	if err := os.WriteFile(path, []byte("search lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolvConfServers(path); err == nil {
		t.Errorf("no nameserver: no error")
	}
}

// upServer is a DNS server playing the host's resolver in a test namespace.
type upServer struct {
	addr  string
	mu    sync.Mutex
	nets  []string
	names []string
}

// startUpstream serves outside.example (203.0.113.7) on 127.0.0.1 of ns,
// UDP and TCP on one port.
func startUpstream(t testing.TB, ns *testns.NS) *upServer {
	t.Helper()
	u := &upServer{}
	var pc net.PacketConn
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			return err
		}
		l, err = net.Listen("tcp4", pc.LocalAddr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.mu.Lock()
		u.nets = append(u.nets, w.RemoteAddr().Network())
		u.names = append(u.names, r.Question[0].Name)
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		if strings.HasSuffix(r.Question[0].Name, "outside.example.") {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(203, 0, 113, 7)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	servers := []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}}
	for _, s := range servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	})
	return u
}

// ask sends one query from inside ns, from laddr if set.
func ask(t testing.TB, ns *testns.NS, proto, laddr, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	var r *dns.Msg
	err := ns.Do(func() error {
		c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
		if laddr != "" {
			c.Dialer = &net.Dialer{Timeout: 3 * time.Second}
			if proto == "tcp" {
				c.Dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
			} else {
				c.Dialer.LocalAddr = &net.UDPAddr{IP: net.ParseIP(laddr)}
			}
		}
		var err error
		r, _, err = c.Exchange(query(name, qtype), server)
		return err
	})
	if err != nil {
		t.Fatalf("query %s over %s: %v", name, proto, err)
	}
	return r
}

func TestNetDNS(t *testing.T) {
	n := newTestNet(t, testConfig())
	up := startUpstream(t, n.host)
	// A dead upstream first: the forwarder must go on to the next one.
	n.cfg.Upstreams = []string{"127.0.0.1:1", up.addr}
	n.start()
	c := newRawClient(t, n.guest, "eth0")
	ip := addrOf(c.dora(t, nil, withHostname("web")).YourIPAddr)
	n.guest.MustRun("ip", "addr", "add", guestSrc.String()+"/24", "dev", "eth0")
	server := testGW.String() + ":53"

	for _, proto := range []string{"udp", "tcp"} {
		if got := aOf(t, ask(t, n.guest, proto, "", server, "web.kvm", dns.TypeA)); got != ip.String() {
			t.Errorf("%s web.kvm: %s, want %s", proto, got, ip)
		}
		if got := aOf(t, ask(t, n.guest, proto, "", server, proto+".outside.example", dns.TypeA)); got != "203.0.113.7" {
			t.Errorf("%s forwarded: %s", proto, got)
		}
	}
	// Asked again: answered from the cache, with the TTL not above the upstream's.
	if r := ask(t, n.guest, "udp", "", server, "udp.outside.example", dns.TypeA); aOf(t, r) != "203.0.113.7" || r.Answer[0].Header().Ttl > 60 {
		t.Errorf("cached answer: %v", r)
	}
	if got := aOf(t, ask(t, n.guest, "udp", "", server, "fixed", dns.TypeA)); got != testStatic.IP.String() {
		t.Errorf("bare static name: %s", got)
	}
	up.mu.Lock()
	if strings.Join(up.nets, " ") != "udp tcp" || strings.Join(up.names, " ") != "udp.outside.example. tcp.outside.example." {
		t.Errorf("upstream saw %v %v, want one udp and one tcp query, the repeated one not", up.nets, up.names)
	}
	up.mu.Unlock()
	// From outside the subnet (the host's loopback): refused, not forwarded.
	if r := ask(t, n.host, "udp", "127.0.0.1", server, "outside.example", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("query from 127.0.0.1: rcode %d, want REFUSED", r.Rcode)
	}
	// Only the gateway address listens: not 0.0.0.0.
	out := n.host.MustRun("ss", "-lnH", "sport", "= :53")
	if strings.Contains(out, "0.0.0.0:53") || strings.Contains(out, "*:53") || !strings.Contains(out, server) {
		t.Errorf("dns sockets:\n%s", out)
	}
}

// TestDNSEDNSAndSOA: local answers carry an OPT record exactly when the query
// had one (RFC 6891), and negative ones the SOA of the zone (RFC 2308).
func TestDNSEDNSAndSOA(t *testing.T) {
	d, ip := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	edns := func(name string, qtype uint16) *dns.Msg {
		q := query(name, qtype)
		q.SetEdns0(4096, true)
		return q
	}
	for _, tc := range []struct {
		q     *dns.Msg
		rcode int
		opt   bool
		soa   string // owner of the SOA in the authority section, "" for none
	}{
		{edns("web.kvm", dns.TypeA), dns.RcodeSuccess, true, ""},
		{query("web.kvm", dns.TypeA), dns.RcodeSuccess, false, ""},
		{edns("nobody.kvm", dns.TypeA), dns.RcodeNameError, true, "kvm."},
		{query("nobody.kvm", dns.TypeA), dns.RcodeNameError, false, "kvm."},
		{edns("web.kvm", dns.TypeAAAA), dns.RcodeSuccess, true, "kvm."},
		{query("kvm", dns.TypeA), dns.RcodeSuccess, false, "kvm."},
		{query("222.100.168.192.in-addr.arpa", dns.TypePTR), dns.RcodeNameError, false, "100.168.192.in-addr.arpa."},
		{edns(ip.String(), dns.TypeA), dns.RcodeSuccess, true, ""}, // forwarded: OPT kept
		{func() *dns.Msg { q := edns("web.kvm", dns.TypeA); q.IsEdns0().SetVersion(1); return q }(), dns.RcodeBadVers, true, ""},
	} {
		name := tc.q.Question[0].Name + " " + dns.TypeToString[tc.q.Question[0].Qtype]
		r := msgAnswer(d, tc.q, guestSrc, "udp")
		if r.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
		if o := r.IsEdns0(); (o != nil) != tc.opt || o != nil && !o.Do() {
			t.Errorf("%s: OPT %v, want present %v with DO echoed", name, o, tc.opt)
		}
		var soa string
		for _, rr := range r.Ns {
			if s, ok := rr.(*dns.SOA); ok && s.Minttl == localTTL {
				soa = s.Hdr.Name
			}
		}
		if soa != tc.soa {
			t.Errorf("%s: SOA of %q in authority, want %q", name, soa, tc.soa)
		}
		if _, err := r.Pack(); err != nil {
			t.Errorf("%s: answer does not pack: %v", name, err)
		}
	}
}

// ttlUpstream answers every query with records of the given TTL, or NXDOMAIN
// with an SOA of the given minimum, and counts the queries.
type ttlUpstream struct {
	calls  int
	ttl    uint32
	minttl uint32
}

func (u *ttlUpstream) exchange(_ context.Context, m *dns.Msg, _, _ string) (*dns.Msg, error) {
	u.calls++
	r := new(dns.Msg)
	r.SetReply(m)
	q := m.Question[0]
	if strings.HasPrefix(q.Name, "nx") {
		r.Rcode = dns.RcodeNameError
		r.Ns = append(r.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns: "ns.example.", Mbox: "h.example.", Minttl: u.minttl})
		return r, nil
	}
	r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: u.ttl}, A: net.IPv4(203, 0, 113, 7)})
	return r, nil
}

// TestDNSCache: forwarded answers are kept for their TTL (aged on the way
// out), negative ones for the SOA minimum capped at maxNegativeTTL, nothing
// with TTL 0, and the cache never holds more than its size.
func TestDNSCache(t *testing.T) {
	u := &ttlUpstream{ttl: 60, minttl: 86400}
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	d.send = sendVia(msgExchange(u.exchange))
	clk := &fixedClock{t: time.Now()}
	d.now = clk.now
	ask := func(name string) *dns.Msg {
		return msgAnswer(d, query(name, dns.TypeA), guestSrc, "udp")
	}
	ask("a.example")
	clk.add(20 * time.Second)
	if r := ask("A.example"); u.calls != 1 || r.Answer[0].Header().Ttl != 40 || r.Question[0].Name != "A.example." {
		t.Errorf("after 20 s: %d upstream calls, TTL %d, question %s; want 1 call, TTL 40, the name as asked",
			u.calls, r.Answer[0].Header().Ttl, r.Question[0].Name)
	}
	clk.add(41 * time.Second)
	if ask("a.example"); u.calls != 2 {
		t.Errorf("expired answer not asked again: %d calls", u.calls)
	}
	ask("nx.example")
	clk.add(maxNegativeTTL - time.Second)
	if r := ask("nx.example"); u.calls != 3 || r.Rcode != dns.RcodeNameError {
		t.Errorf("negative answer not cached: %d calls, rcode %d", u.calls, r.Rcode)
	}
	clk.add(2 * time.Second)
	if ask("nx.example"); u.calls != 4 {
		t.Errorf("negative answer kept past %s: %d calls", maxNegativeTTL, u.calls)
	}
	u.ttl = 0
	ask("zero.example")
	if ask("zero.example"); u.calls != 6 {
		t.Errorf("TTL 0 answer cached: %d calls", u.calls)
	}
	u.ttl = 600
	for i := range cacheSize + 100 {
		ask(fmt.Sprintf("n%d.example", i))
	}
	if n := len(d.cache.m); n > cacheSize {
		t.Errorf("cache holds %d entries, over %d", n, cacheSize)
	}
}

// TestDNSForwardingLoopEnds: two forwarders naming each other as upstream
// pass a query back and forth a bounded number of times, then SERVFAIL.
func TestDNSForwardingLoopEnds(t *testing.T) {
	a, _ := dnsFor(t, []string{"b:53"}, &fakeUpstreams{})
	b, _ := dnsFor(t, []string{"a:53"}, &fakeUpstreams{})
	var hops int
	a.send = sendVia(msgExchange(func(ctx context.Context, m *dns.Msg, proto, _ string) (*dns.Msg, error) {
		hops++
		return msgAnswer(b, m, guestSrc, proto), nil
	}))
	b.send = sendVia(msgExchange(func(ctx context.Context, m *dns.Msg, proto, _ string) (*dns.Msg, error) {
		hops++
		if hops > 100 {
			return nil, errors.New("loop not broken")
		}
		return msgAnswer(a, m, guestSrc, proto), nil
	}))
	r := msgAnswer(a, query("example.org", dns.TypeA), guestSrc, "udp")
	if r.Rcode != dns.RcodeServerFailure || hops != maxHops {
		t.Errorf("loop: rcode %s after %d forwards, want SERVFAIL after %d", dns.RcodeToString[r.Rcode], hops, maxHops)
	}
	if r.IsEdns0() != nil {
		t.Errorf("the guest asked without EDNS and got an OPT record")
	}
}

// TestNetDNSLoop: two networks on one host naming each other's gateway as
// upstream answer a guest SERVFAIL at once instead of looping for ever.
func TestNetDNSLoop(t *testing.T) {
	n := newTestNet(t, testConfig())
	n.host.MustRun("ip", "link", "add", "br1", "type", "bridge")
	n.host.MustRun("ip", "addr", "add", "10.0.2.1/24", "dev", "br1")
	n.host.MustRun("ip", "link", "set", "br1", "up")
	n.cfg.Upstreams = []string{"10.0.2.1:53"}
	n.start()
	other := n.cfg
	other.Network, other.Bridge, other.Gateway = "other", "br1", netip.MustParsePrefix("10.0.2.1/24")
	other.RangeStart, other.RangeEnd, other.Hosts = netip.Addr{}, netip.Addr{}, nil
	other.Defaults()
	other.Upstreams = []string{testGW.String() + ":53"}
	other.LeaseFile, other.PIDFile = filepath.Join(n.dir, "other.leases"), filepath.Join(n.dir, "other.pid")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(n.dir, "other.json")
	if err := ctl.WriteConfig(cfgPath, other); err != nil {
		t.Fatal(err)
	}
	if err := n.host.Do(func() error {
		_, err := spawn(exe, cfgPath, filepath.Join(n.dir, "other.log"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.Stop(other.PIDFile, 5*time.Second) })
	n.guest.MustRun("ip", "addr", "add", guestSrc.String()+"/24", "dev", "eth0")

	if r := ask(t, n.guest, "udp", "", testGW.String()+":53", "loop.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("looping query: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	logs, _ := os.ReadFile(n.logPath())
	otherLog, _ := os.ReadFile(filepath.Join(n.dir, "other.log"))
	if !strings.Contains(string(logs)+string(otherLog), "forwarding loop") {
		t.Errorf("no daemon logged the loop:\n%s\n%s", logs, otherLog)
	}
}

// TestDNSInflightBounded: with maxInflight forwards waiting, the next query
// gets SERVFAIL at once instead of another goroutine and socket.
func TestDNSInflightBounded(t *testing.T) {
	f := &fakeUpstreams{}
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, f)
	for range maxInflight {
		d.inflight <- struct{}{}
	}
	if r := msgAnswer(d, query("busy.example", dns.TypeA), guestSrc, "udp"); r.Rcode != dns.RcodeServerFailure || len(f.calls) != 0 {
		t.Errorf("full: rcode %s, %d upstream calls; want SERVFAIL and none", dns.RcodeToString[r.Rcode], len(f.calls))
	}
	<-d.inflight
	if r := msgAnswer(d, query("busy.example", dns.TypeA), guestSrc, "udp"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("room again: rcode %s", dns.RcodeToString[r.Rcode])
	}
}
