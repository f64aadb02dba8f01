package netsvc

import (
	"testing"

	"github.com/miekg/dns"
)

// The cost of one query in the daemon, without sockets: what answerUDP does
// with a datagram. Allocations per query are independent of the machine's
// load, unlike dnsperf's rates.

// serveOne answers datagram b as answerUDP does, the upstream aside.
func serveOne(d *dnsd, b []byte) []byte {
	r, err := parseQuery(b)
	if err != nil || r.hdr.Response {
		return nil
	}
	if rep, ok := d.answerOwn(r, guestSrc); ok {
		return r.finish(rep, "udp")
	}
	var out []byte
	d.forwardAsync(r, "udp", func(rep dnsReply) { out = r.finish(rep, "udp") })
	return out
}

func packed(b *testing.B, m *dns.Msg) []byte {
	out, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkDNSQueryLocal: a guest's name, with EDNS as glibc and
// systemd-resolved ask.
func BenchmarkDNSQueryLocal(b *testing.B) {
	d, _ := dnsFor(b, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	q := query("web.kvm", dns.TypeA)
	q.SetEdns0(1232, false)
	qb := packed(b, q)
	b.ReportAllocs()
	for b.Loop() {
		if serveOne(d, qb) == nil {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkDNSQueryCached: a forwarded name in the cache.
func BenchmarkDNSQueryCached(b *testing.B) {
	d, _ := dnsFor(b, []string{"192.0.2.1:53"}, &fakeUpstreams{})
	q := query("www.example.org", dns.TypeA)
	q.SetEdns0(1232, false)
	qb := packed(b, q)
	d.answer(qb, guestSrc, "udp") // fills the cache
	b.ReportAllocs()
	for b.Loop() {
		if serveOne(d, qb) == nil {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkDNSQueryForwarded: the work of a forwarded query but the
// sockets: the query read, the upstream's made, its answer read and matched,
// the client's made.
func BenchmarkDNSQueryForwarded(b *testing.B) {
	q := query("www.example.org", dns.TypeA)
	q.SetEdns0(1232, false)
	qb := packed(b, q)
	a := answerTo(q)
	a.SetEdns0(1232, false)
	ab := packed(b, a)
	s := &upSock{pending: map[uint16]*udpWaiter{}}
	b.ReportAllocs()
	for b.Loop() {
		r, err := parseQuery(qb)
		if err != nil {
			b.Fatal(err)
		}
		out, err := upstreamQuery(r, 1)
		if err != nil {
			b.Fatal(err)
		}
		s.pending[a.Id] = &udpWaiter{q: out.q}
		w, ans := s.take(ab)
		if w == nil {
			b.Fatal("answer not taken")
		}
		r.finish(dnsReply{b: append(make([]byte, 0, len(ans.b)+optLen), ans.b...)}, "udp")
	}
}
