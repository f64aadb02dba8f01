package netsvc

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
)

// The tests speak miekg/dns, a full client library; the daemon does not
// link it (TestDaemonLinksNoTLS). These adapters translate.

// msgAnswer is d.answer on miekg/dns messages: nil when d drops the query or
// its answer does not parse.
func msgAnswer(d *dnsd, m *dns.Msg, src netip.Addr, proto string) *dns.Msg {
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return unpackMsg(d.answer(b, src, proto))
}

// unpackMsg is b decoded, or nil.
func unpackMsg(b []byte) *dns.Msg {
	if b == nil {
		return nil
	}
	m := new(dns.Msg)
	if m.Unpack(b) != nil {
		return nil
	}
	return m
}

// msgOf is an upstream's answer as the forwarder keeps it, decoded.
func msgOf(a *dnsAnswer) *dns.Msg {
	return unpackMsg(a.b)
}

// msgExchange makes an exchangeFunc of a fake upstream written with miekg/dns.
func msgExchange(f func(ctx context.Context, m *dns.Msg, proto, upstream string) (*dns.Msg, error)) exchangeFunc {
	return func(ctx context.Context, q []byte, proto, upstream string) ([]byte, error) {
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil {
			return nil, err
		}
		r, err := f(ctx, m, proto, upstream)
		if err != nil || r == nil {
			return nil, err
		}
		return r.Pack()
	}
}

// questionOf is m's first question in dnsmessage's terms.
func questionOf(m *dns.Msg) dnsmessage.Question {
	q := m.Question[0]
	return dnsmessage.Question{Name: dnsmessage.MustNewName(q.Name), Type: dnsmessage.Type(q.Qtype), Class: dnsmessage.Class(q.Qclass)}
}
