package netsvc

import (
	"context"
	"fmt"

	"github.com/miekg/dns"
)

// hopOption is the EDNS0 option, from the local/experimental range of RFC
// 6891 6.1.2, in which kvmnet forwarders count the kvmnet forwarders a query
// has passed. Two networks naming each other's gateway as upstream would
// otherwise pass one query back and forth for ever.
const hopOption = 65431

// maxHops is how many kvmnet forwarders a query may pass: more is a loop.
// Chaining one network's resolver to another's (to see its guest names) takes 2.
const maxHops = 3

// hopsOf returns the hop count a query carries (0 from a guest).
func hopsOf(r *dns.Msg) int {
	o := r.IsEdns0()
	if o == nil {
		return 0
	}
	for _, opt := range o.Option {
		if l, ok := opt.(*dns.EDNS0_LOCAL); ok && l.Code == hopOption && len(l.Data) == 1 {
			return int(l.Data[0])
		}
	}
	return 0
}

// forward answers r from the cache or from the first upstream that answers,
// over the client's transport; SERVFAIL when none answers in forwardTimeout,
// when r has come round a forwarding loop, or when too many forwards wait.
func (d *dnsd) forward(ctx context.Context, r *dns.Msg, proto string) *dns.Msg {
	key := keyOf(r)
	if m := d.cache.get(key, d.now()); m != nil {
		m.Id = r.Id
		return withEDNS(r, m)
	}
	hops := hopsOf(r)
	if hops >= maxHops {
		if ok, held := d.loops.allow(d.now()); ok {
			d.log.Warn("dns: forwarding loop: query passed too many kvmnet forwarders; check upstreams",
				"name", r.Question[0].Name, "hops", hops, "upstreams", d.upstreams, "since_last_warning", held)
		}
		return withEDNS(r, rcode(r, dns.RcodeServerFailure))
	}
	select {
	case d.inflight <- struct{}{}:
		defer func() { <-d.inflight }()
	default:
		if ok, held := d.busy.allow(d.now()); ok {
			d.log.Warn("dns: too many queries waiting for upstreams; answering SERVFAIL", "limit", maxInflight, "since_last_warning", held)
		}
		return withEDNS(r, rcode(r, dns.RcodeServerFailure))
	}
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	q := upstreamQuery(r, hops+1)
	for _, up := range d.upstreams {
		if ctx.Err() != nil {
			break
		}
		resp, err := d.exchange(ctx, q, proto, up)
		if err == nil && resp != nil {
			d.cache.put(key, resp, d.now())
			resp.Id = r.Id
			return withEDNS(r, resp)
		}
		d.log.Debug("dns upstream failed", "upstream", up, "proto", proto, "err", errText(err))
	}
	if ok, held := d.failures.allow(d.now()); ok {
		d.log.Warn("dns: no upstream answered", "name", r.Question[0].Name, "upstreams", len(d.upstreams), "since_last_warning", held)
	}
	return withEDNS(r, rcode(r, dns.RcodeServerFailure))
}

// upstreamQuery is r as sent upstream: a fresh id, EDNS (so that large
// answers come over UDP; the client's own limit is applied on the way back)
// and the hop count.
func upstreamQuery(r *dns.Msg, hops int) *dns.Msg {
	q := r.Copy()
	q.Id = dns.Id()
	o := q.IsEdns0()
	if o == nil {
		q.SetEdns0(ednsSize, false)
		o = q.IsEdns0()
	}
	opts := o.Option[:0]
	for _, opt := range o.Option {
		if opt.Option() != hopOption {
			opts = append(opts, opt)
		}
	}
	o.Option = append(opts, &dns.EDNS0_LOCAL{Code: hopOption, Data: []byte{byte(hops)}})
	return q
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
