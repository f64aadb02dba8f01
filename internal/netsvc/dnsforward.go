package netsvc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// hopOption is the EDNS0 option, from the local/experimental range of RFC
// 6891 6.1.2, in which kvmnet forwarders count the kvmnet forwarders a query
// has passed. Two networks naming each other's gateway as upstream would
// otherwise pass one query back and forth for ever.
const hopOption = 65431

// maxHops is how many kvmnet forwarders a query may pass: more is a loop.
// Chaining one network's resolver to another's (to see its guest names) takes 2.
const maxHops = 3

// forward answers r from the cache or from the first upstream that answers,
// over the client's transport; SERVFAIL when none answers in forwardTimeout,
// when r has come round a forwarding loop, or when too many forwards wait.
// It waits for forwardAsync, for the TCP server and tests.
func (d *dnsd) forward(r *dnsQuery, proto string) dnsReply {
	ch := make(chan dnsReply, 1)
	d.forwardAsync(r, proto, func(rep dnsReply) { ch <- rep })
	return <-ch
}

// forwardAsync is forward, calling reply once with the answer instead of
// returning it: at once when the cache or a refusal answers, else from the
// goroutine that read the upstream's answer or saw the time run out. No
// goroutine waits for the upstream: that cost a thread wakeup per query.
func (d *dnsd) forwardAsync(r *dnsQuery, proto string, reply func(dnsReply)) {
	var kb [maxKeyLen]byte
	key := r.appendKey(kb[:0])
	if rep, ok := d.cached(r, key); ok {
		reply(rep)
		return
	}
	d.forwardMiss(r, key, proto, reply)
}

// cached returns the cache's answer to r (whose key is key), in the case r
// asked it.
func (d *dnsd) cached(r *dnsQuery, key []byte) (dnsReply, bool) {
	b := d.cache.get(key, d.now())
	if b == nil {
		return dnsReply{}, false
	}
	setCase(b, r.q.Name)
	return dnsReply{b: b}, true
}

// forwardMiss is forwardAsync for a query the cache does not answer.
func (d *dnsd) forwardMiss(r *dnsQuery, key []byte, proto string, reply func(dnsReply)) {
	if r.hops >= maxHops {
		if ok, held := d.loops.allow(d.now()); ok {
			d.log.Warn("dns: forwarding loop: query passed too many kvmnet forwarders; check upstreams",
				"name", r.q.Name.String(), "hops", r.hops, "upstreams", d.ups.addrs(), "since_last_warning", held)
		}
		reply(rcode(r, dnsmessage.RCodeServerFailure))
		return
	}
	select {
	case d.inflight <- struct{}{}:
	default:
		if ok, held := d.busy.allow(d.now()); ok {
			d.log.Warn("dns: too many queries waiting for upstreams; answering SERVFAIL", "limit", maxInflight, "since_last_warning", held)
		}
		reply(rcode(r, dnsmessage.RCodeServerFailure))
		return
	}
	q, err := upstreamQuery(r, r.hops+1)
	if err != nil { // a query that parsed packs: not reached
		<-d.inflight
		reply(rcode(r, dnsmessage.RCodeServerFailure))
		return
	}
	skey := string(key)
	d.race(q, proto, func(a *dnsAnswer) {
		<-d.inflight
		reply(d.finish(r, skey, a))
	})
}

// finish turns an upstream's answer (nil: none) into the client's.
func (d *dnsd) finish(r *dnsQuery, key string, a *dnsAnswer) dnsReply {
	if a == nil {
		if ok, held := d.failures.allow(d.now()); ok {
			d.log.Warn("dns: no upstream answered", "name", r.q.Name.String(), "upstreams", d.ups.addrs(), "since_last_warning", held)
		}
		return rcode(r, dnsmessage.RCodeServerFailure)
	}
	d.cache.put(key, a, d.now())
	b := make([]byte, len(a.b), len(a.b)+optLen) // a.b may be the cache's now
	copy(b, a.b)
	return dnsReply{b: b}
}

// outQuery is a query as sent upstream, and its question.
type outQuery struct {
	b []byte
	q dnsmessage.Question
}

// upstreamQuery is r as sent upstream: its header with a fresh id, its
// question, and EDNS (so that large answers come over UDP; the client's own
// limit is applied on the way back) with the client's DO bit and options and
// the hop count. What else a query may carry (records in its answer,
// authority or additional sections) does not go on.
func upstreamQuery(r *dnsQuery, hops int) (*outQuery, error) {
	h := r.hdr
	h.ID = uint16(rand.N(1 << 16))
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), h)
	_ = b.StartQuestions()
	if err := b.Question(r.q); err != nil {
		return nil, err
	}
	_ = b.StartAdditionals()
	size := uint16(ednsSize)
	if r.edns {
		size = min(r.size, maxUpstreamUDP) // what the upstream sockets read
	}
	var oh dnsmessage.ResourceHeader
	_ = oh.SetEDNS0(int(size), dnsmessage.RCodeSuccess, r.do)
	opts := append(r.options[:len(r.options):len(r.options)], dnsmessage.Option{Code: hopOption, Data: []byte{byte(hops)}})
	if err := b.OPTResource(oh, dnsmessage.OPTResource{Options: opts}); err != nil {
		return nil, err
	}
	out, err := b.Finish()
	if err != nil {
		return nil, err
	}
	return &outQuery{b: out, q: r.q}, nil
}

func errText(res udpResult) string {
	switch {
	case res.err != nil:
		return res.err.Error()
	case res.msg == nil:
		return "empty reply"
	}
	return "rcode " + res.msg.hdr.RCode.String()
}

// sendFunc sends q to u over proto; the answer or error comes to deliver,
// at most once, from another goroutine. An error to send comes back at once
// instead. The caller calls the cancel it returns when it no longer waits.
type sendFunc func(q *outQuery, proto string, u *upstream, deliver func(udpResult)) (cancel func(), err error)

// sendUpstream is the real sendFunc: UDP over the upstream's shared sockets,
// TCP over a connection of the query's own.
func sendUpstream(q *outQuery, proto string, u *upstream, deliver func(udpResult)) (func(), error) {
	if proto != "udp" || u.udp == nil {
		return sendVia(exchangeUpstream)(q, proto, u, deliver)
	}
	return u.udp.send(q.b, q.q, deliver)
}

// sendVia makes a sendFunc of a blocking exchangeFunc, run in a goroutine
// bounded by upstreamTimeout. An answer must match the query's ID and
// question.
func sendVia(exchange exchangeFunc) sendFunc {
	return func(q *outQuery, proto string, u *upstream, deliver func(udpResult)) (func(), error) {
		ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
		go func() {
			defer cancel()
			b, err := exchange(ctx, q.b, proto, u.addr)
			var a *dnsAnswer
			if err == nil {
				a, err = parseAnswer(b)
			}
			if err == nil && (a.hdr.ID != binary.BigEndian.Uint16(q.b) || !sameQuestion(a.q, q.q)) {
				a, err = nil, errMismatch
			}
			if err != nil {
				err = fmt.Errorf("ask %s over %s: %w", u.addr, proto, err)
			}
			deliver(udpResult{msg: a, err: err})
		}()
		return cancel, nil
	}
}

// errMismatch: an answer to another query than the one asked.
var errMismatch = errors.New("answer to another query")

// exchangeUpstream is the real exchangeFunc: a connection of its own (TCP;
// UDP only for an upstream without shared sockets), closed when ctx ends.
func exchangeUpstream(ctx context.Context, q []byte, proto, upstream string) ([]byte, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, proto, upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if proto != "tcp" {
		if _, err := c.Write(q); err != nil {
			return nil, err
		}
		buf := make([]byte, maxUpstreamUDP)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return nil, err
			}
			if n >= headerLen && buf[0] == q[0] && buf[1] == q[1] { // else not ours: wait on
				return buf[:n], nil
			}
		}
	}
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q))), q...)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err = io.ReadFull(c, b)
	return b, err
}
