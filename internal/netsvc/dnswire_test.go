package netsvc

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kvmnet/kvmnet/internal/testns"
	"github.com/miekg/dns"
)

// bigUpstream answers every query with n A records, over 512 bytes for n 40.
func bigUpstream(n int) func(context.Context, *dns.Msg, string, string) (*dns.Msg, error) {
	return func(_ context.Context, m *dns.Msg, _, _ string) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetReply(m)
		for i := range n {
			r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(203, 0, 113, byte(i))})
		}
		r.SetEdns0(4096, false) // the upstream's own OPT, never passed on
		return r, nil
	}
}

// TestDNSTruncation: an answer longer than the client accepts over UDP comes
// cut to the records that fit, compressed, with TC set (and the client's
// OPT when it sent one, counted in the size); whole over TCP and to a
// client that accepts it; from the cache as from the upstream.
func TestDNSTruncation(t *testing.T) {
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	d.send = sendVia(msgExchange(bigUpstream(40)))
	edns := func(size uint16) *dns.Msg {
		q := query("big.example", dns.TypeA)
		q.SetEdns0(size, false)
		return q
	}
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		proto string
		size  int  // the limit
		whole bool // all 40 records, no TC
	}{
		{"udp", query("big.example", dns.TypeA), "udp", 512, false},
		{"udp again, cached", query("big.example", dns.TypeA), "udp", 512, false},
		{"udp edns 600", edns(600), "udp", 600, false},
		{"udp edns 4096", edns(4096), "udp", 4096, true},
		{"tcp", query("big.example", dns.TypeA), "tcp", 65535, true},
	} {
		b, _ := tc.q.Pack()
		out := d.answer(b, guestSrc, tc.proto)
		r := unpackMsg(out)
		if r == nil {
			t.Fatalf("%s: answer does not parse", tc.name)
		}
		if len(out) > tc.size {
			t.Errorf("%s: %d bytes, over %d", tc.name, len(out), tc.size)
		}
		if tc.whole != (len(r.Answer) == 40) || tc.whole == r.Truncated || len(r.Answer) == 0 {
			t.Errorf("%s: %d records, TC %v", tc.name, len(r.Answer), r.Truncated)
		}
		if (r.IsEdns0() != nil) != (tc.q.IsEdns0() != nil) || len(r.Extra) > 1 {
			t.Errorf("%s: additional section %v, want the OPT exactly when asked with one", tc.name, r.Extra)
		}
	}
}

// TestParseAnswerOPT: the upstream's OPT record is dropped wherever it sits,
// the other records and their TTLs' places kept.
func TestParseAnswerOPT(t *testing.T) {
	q := query("web.example", dns.TypeA)
	m := answerTo(q)
	m.Answer[0].Header().Ttl = 300
	extra := &dns.A{Hdr: dns.RR_Header{Name: "ns.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 200}, A: net.IPv4(192, 0, 2, 9)}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(4096)
	for _, order := range [][]dns.RR{{extra, opt}, {opt, extra}, {extra}} {
		m.Extra = order
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		a, err := parseAnswer(b)
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		got := msgOf(a)
		if got == nil || got.IsEdns0() != nil || len(got.Extra) != 1 || len(got.Answer) != 1 || len(a.ttls) != 2 {
			t.Fatalf("%v: kept %v, %d TTLs", order, got, len(a.ttls))
		}
		if a.ttl != 300*time.Second {
			t.Errorf("%v: cached for %s, want the answer's least TTL, 300s", order, a.ttl)
		}
	}
}

// TestDNSQueryFormat: a query with two OPT records is a format error (RFC
// 6891 6.1.1); one whose records do not parse, or a reply, is dropped.
func TestDNSQueryFormat(t *testing.T) {
	d, _ := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	q := query("web.kvm", dns.TypeA)
	q.SetEdns0(1232, false)
	q.Extra = append(q.Extra, q.Extra[0])
	if r := msgAnswer(d, q, guestSrc, "udp"); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT records: %v", r)
	}
	b, _ := query("web.kvm", dns.TypeA).Pack()
	b[5] = 2 // two questions announced, one there
	if d.answer(b, guestSrc, "udp") != nil {
		t.Errorf("a short message answered")
	}
}

// TestNetDNSTCPConnection: a client may ask several queries on one TCP
// connection (RFC 7766 6.2.1), and gets each answer in turn.
func TestNetDNSTCPConnection(t *testing.T) {
	ns := testns.New(t)
	d, ip := dnsFor(t, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	d.prefix = netip.MustParsePrefix("127.0.0.0/8") // the test asks from loopback
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := newTCPServer(d, l)
	go func() { _ = srv.serve() }()
	defer srv.close()
	err := ns.Do(func() error {
		c, err := dns.DialTimeout("tcp", l.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		for _, name := range []string{"web.kvm", "web", "outside.example"} {
			q := query(name, dns.TypeA)
			if err := c.WriteMsg(q); err != nil {
				return err
			}
			r, err := c.ReadMsg()
			if err != nil {
				return err
			}
			if want := map[bool]string{true: "203.0.113.7", false: ip.String()}[name == "outside.example"]; r.Id != q.Id || aOf(t, r) != want {
				t.Errorf("%s: %v, want %s", name, r, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestParseAnswerSOAPastEnd: an SOA record whose length runs past the
// message's end is refused, not read beyond it.
func TestParseAnswerSOAPastEnd(t *testing.T) {
	q := query("nx.example", dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Rcode = dns.RcodeNameError
	m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.example.", Mbox: "h.example.", Minttl: 60})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseAnswer(b); err != nil {
		t.Fatalf("the answer as sent: %v", err)
	}
	at := len(b) - 2 // the SOA's RDLENGTH: the last record's data runs to the end
	for ; at > headerLen && int(b[at])<<8|int(b[at+1]) != len(b)-at-2; at-- {
	}
	b[at+1]++ // one more than there is
	if _, err := parseAnswer(b); err == nil {
		t.Errorf("an SOA longer than the message taken")
	}
}
