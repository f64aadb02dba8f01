package netsvc

import (
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// race is one forwarded query: it asks the upstreams in order, the next one
// as soon as the last failed or its hedge delay passed without an answer,
// and ends with the first good answer; else, when every upstream asked has
// failed or forwardTimeout passed, with the last SERVFAIL or REFUSED answer,
// or nil. Upstreams that had not answered by then are marked failed: that is
// how a slow one loses its place. Events come from the upstreams' socket
// readers and from one timer, under mu.
type race struct {
	d        *dnsd
	q        *outQuery
	proto    string
	ups      []*upstream
	done     func(*dnsAnswer)
	deadline time.Time

	mu       sync.Mutex
	sent     []time.Time
	answered []bool
	cancels  []func()
	last     *dnsAnswer
	timer    *time.Timer
	over     bool
}

// race starts asking for q; done gets the outcome, once.
func (d *dnsd) race(q *outQuery, proto string, done func(*dnsAnswer)) {
	now := time.Now()
	ups := d.ups.order(d.now())
	if len(ups) == 0 {
		done(nil)
		return
	}
	ra := &race{d: d, q: q, proto: proto, ups: ups, done: done, deadline: now.Add(forwardTimeout),
		sent: make([]time.Time, 0, len(ups)), answered: make([]bool, len(ups))}
	ra.mu.Lock()
	ra.timer = time.AfterFunc(time.Hour, ra.tick)
	end := ra.startNext()
	ra.mu.Unlock()
	end()
}

// startNext asks the next upstream that takes the query, and sets the timer
// to its hedge delay. It returns what to run after unlocking mu: the end of
// the race when no upstream is left and all asked have failed.
func (ra *race) startNext() func() {
	for len(ra.sent) < len(ra.ups) {
		i := len(ra.sent)
		u := ra.ups[i]
		ra.sent = append(ra.sent, time.Now())
		cancel, err := ra.d.send(ra.q, ra.proto, u, func(res udpResult) { ra.result(i, res) })
		if err == nil {
			ra.cancels = append(ra.cancels, cancel)
			ra.timer.Reset(min(u.hedge(), time.Until(ra.deadline)))
			return func() {}
		}
		ra.answered[i] = true
		u.failed(ra.d.now())
		ra.d.log.Debug("dns upstream failed", "upstream", u.addr, "proto", ra.proto, "err", err.Error())
	}
	if ra.allFailed() {
		return ra.end(ra.last)
	}
	ra.timer.Reset(time.Until(ra.deadline))
	return func() {}
}

// result takes try i's outcome. A try that failed to send may also see its
// socket's error delivered: only the first outcome counts.
func (ra *race) result(i int, res udpResult) {
	ra.mu.Lock()
	if ra.over || ra.answered[i] {
		ra.mu.Unlock()
		return
	}
	ra.answered[i] = true
	u := ra.ups[i]
	var end func()
	if res.err == nil && usable(res.msg) {
		u.answered(time.Since(ra.sent[i]))
		end = ra.end(res.msg)
	} else {
		u.failed(ra.d.now())
		ra.d.log.Debug("dns upstream failed", "upstream", u.addr, "proto", ra.proto, "err", errText(res))
		if res.msg != nil {
			ra.last = res.msg
		}
		end = ra.startNext()
	}
	ra.mu.Unlock()
	end()
}

// tick is the timer: a hedge delay passed (ask the next upstream) or the
// deadline did (give up).
func (ra *race) tick() {
	ra.mu.Lock()
	if ra.over {
		ra.mu.Unlock()
		return
	}
	end := func() {}
	switch {
	case !time.Now().Before(ra.deadline):
		end = ra.end(ra.last)
	case len(ra.sent) < len(ra.ups):
		end = ra.startNext()
	default:
		ra.timer.Reset(time.Until(ra.deadline))
	}
	ra.mu.Unlock()
	end()
}

// end closes the race with m and returns what to run once mu is unlocked:
// cancelling the tries (which takes their sockets' locks) and done.
func (ra *race) end(m *dnsAnswer) func() {
	ra.over = true
	ra.timer.Stop()
	for i := range ra.sent {
		if !ra.answered[i] {
			ra.ups[i].failed(ra.d.now())
		}
	}
	cancels := ra.cancels
	return func() {
		for _, c := range cancels {
			c()
		}
		ra.done(m)
	}
}

func (ra *race) allFailed() bool {
	for _, a := range ra.answered[:len(ra.sent)] {
		if !a {
			return false
		}
	}
	return true
}

// usable: SERVFAIL and REFUSED say "ask someone else".
func usable(m *dnsAnswer) bool {
	return m != nil && m.hdr.RCode != dnsmessage.RCodeServerFailure && m.hdr.RCode != dnsmessage.RCodeRefused
}
