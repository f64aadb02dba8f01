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
// It waits for forwardAsync, for the TCP server and tests.
func (d *dnsd) forward(r *dns.Msg, proto string) *dns.Msg {
	ch := make(chan *dns.Msg, 1)
	d.forwardAsync(r, proto, func(m *dns.Msg) { ch <- m })
	return <-ch
}

// forwardAsync is forward, calling reply once with the answer instead of
// returning it: at once when the cache or a refusal answers, else from the
// goroutine that read the upstream's answer or saw the time run out. No
// goroutine waits for the upstream: that cost a thread wakeup per query.
func (d *dnsd) forwardAsync(r *dns.Msg, proto string, reply func(*dns.Msg)) {
	key := keyOf(r)
	if m := d.cached(r, key); m != nil {
		reply(m)
		return
	}
	hops := hopsOf(r)
	if hops >= maxHops {
		if ok, held := d.loops.allow(d.now()); ok {
			d.log.Warn("dns: forwarding loop: query passed too many kvmnet forwarders; check upstreams",
				"name", r.Question[0].Name, "hops", hops, "upstreams", d.ups.addrs(), "since_last_warning", held)
		}
		reply(withEDNS(r, rcode(r, dns.RcodeServerFailure)))
		return
	}
	select {
	case d.inflight <- struct{}{}:
	default:
		if ok, held := d.busy.allow(d.now()); ok {
			d.log.Warn("dns: too many queries waiting for upstreams; answering SERVFAIL", "limit", maxInflight, "since_last_warning", held)
		}
		reply(withEDNS(r, rcode(r, dns.RcodeServerFailure)))
		return
	}
	d.race(upstreamQuery(r, hops+1), proto, func(resp *dns.Msg) {
		<-d.inflight
		reply(d.finish(r, key, resp))
	})
}

// finish turns an upstream's answer (nil: none) into the client's.
func (d *dnsd) finish(r *dns.Msg, key cacheKey, resp *dns.Msg) *dns.Msg {
	if resp == nil {
		if ok, held := d.failures.allow(d.now()); ok {
			d.log.Warn("dns: no upstream answered", "name", r.Question[0].Name, "upstreams", d.ups.addrs(), "since_last_warning", held)
		}
		return withEDNS(r, rcode(r, dns.RcodeServerFailure))
	}
	d.cache.put(key, resp, d.now())
	resp.Id = r.Id
	return withEDNS(r, resp)
}

// cached returns the cache's answer to r, or nil.
func (d *dnsd) cached(r *dns.Msg, key cacheKey) *dns.Msg {
	m := d.cache.get(key, d.now())
	if m == nil {
		return nil
	}
	m.Id = r.Id
	return withEDNS(r, m)
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
	if o.UDPSize() > maxUpstreamUDP {
		o.SetUDPSize(maxUpstreamUDP) // what the upstream sockets read
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

func errText(res udpResult) string {
	switch {
	case res.err != nil:
		return res.err.Error()
	case res.msg == nil:
		return "empty reply"
	}
	return "rcode " + dns.RcodeToString[res.msg.Rcode]
}

// sendFunc sends q to u over proto; the answer or error comes to deliver,
// at most once, from another goroutine. An error to send comes back at once
// instead. The caller calls the cancel it returns when it no longer waits.
type sendFunc func(q *dns.Msg, proto string, u *upstream, deliver func(udpResult)) (cancel func(), err error)

// sendUpstream is the real sendFunc: UDP over the upstream's shared sockets,
// TCP over a connection of the query's own.
func sendUpstream(q *dns.Msg, proto string, u *upstream, deliver func(udpResult)) (func(), error) {
	if proto != "udp" || u.udp == nil {
		return sendVia(exchangeUpstream)(q, proto, u, deliver)
	}
	b, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	return u.udp.send(b, q.Question[0], deliver)
}

// sendVia makes a sendFunc of a blocking exchangeFunc, run in a goroutine
// bounded by upstreamTimeout.
func sendVia(exchange exchangeFunc) sendFunc {
	return func(q *dns.Msg, proto string, u *upstream, deliver func(udpResult)) (func(), error) {
		ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
		go func() {
			defer cancel()
			m, err := exchange(ctx, q, proto, u.addr)
			deliver(udpResult{msg: m, err: err})
		}()
		return cancel, nil
	}
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
