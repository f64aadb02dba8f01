package netsvc

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Failover. A query goes to the first healthy upstream; if no answer comes
// within that upstream's hedge delay (at most maxHedge), the next one is asked
// too, and the first answer wins: a dead or slow first server costs a query
// at most a second, never the whole timeout (aardvark-dns#482). An upstream
// that failed downAfter queries in a row is down: it goes to the end of the
// order for a backoff that doubles up to maxDown, then gets one query again.
const (
	minHedge  = 100 * time.Millisecond
	maxHedge  = time.Second
	downAfter = 3
	firstDown = time.Second
	maxDown   = 30 * time.Second
)

// upstream is one server the forwarder asks, and what it knows of its health.
type upstream struct {
	addr string // "ip:port"
	udp  *udpPool

	mu       sync.Mutex
	srtt     time.Duration // smoothed round-trip time; 0 until the first answer
	fails    int           // queries in a row it did not answer in time
	backoff  time.Duration
	downTill time.Time
}

func newUpstream(addr string, rd *upReader) *upstream {
	u := &upstream{addr: addr}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		u.udp = newUDPPool(ap, rd)
	}
	return u
}

// hedge is how long a query waits for u before asking the next upstream too:
// a few round trips (a resolver may recurse), less for each recent failure.
func (u *upstream) hedge() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	d := maxHedge / 2
	if u.srtt > 0 {
		d = 8 * u.srtt
	}
	d >>= min(u.fails, 3)
	return min(max(d, minHedge), maxHedge)
}

// answered records an answer after rtt.
func (u *upstream) answered(rtt time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srtt == 0 {
		u.srtt = rtt
	} else {
		u.srtt = (7*u.srtt + rtt) / 8
	}
	u.fails, u.backoff, u.downTill = 0, 0, time.Time{}
}

// failed records a query u did not answer (in time, or at all).
func (u *upstream) failed(now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fails++; u.fails < downAfter {
		return
	}
	u.backoff = min(max(2*u.backoff, firstDown), maxDown)
	u.downTill = now.Add(u.backoff)
}

func (u *upstream) down(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return now.Before(u.downTill)
}

func (u *upstream) close() {
	if u.udp != nil {
		u.udp.close()
	}
}

// upstreamSet is the forwarder's upstreams: fixed by the config, or those of
// the host's resolv.conf, followed as it changes.
type upstreamSet struct {
	list   atomic.Pointer[[]*upstream]
	follow *resolvFollower // nil: fixed
	rd     *upReader       // reads the upstreams' UDP sockets
	mu     sync.Mutex      // serialises replacing list
}

func newUpstreamSet(addrs []string, follow *resolvFollower) *upstreamSet {
	s := &upstreamSet{follow: follow, rd: newUpReader()}
	var l []*upstream
	for _, a := range addrs {
		l = append(l, newUpstream(a, s.rd))
	}
	s.list.Store(&l)
	return s
}

// order returns the upstreams to try: the healthy in their order, then those
// down (still worth a try when no healthy one answers).
func (s *upstreamSet) order(now time.Time) []*upstream {
	if s.follow != nil {
		if addrs, ok := s.follow.changed(now); ok {
			s.set(addrs)
		}
	}
	l := *s.list.Load()
	downs := 0
	for _, u := range l {
		if u.down(now) {
			downs++
		}
	}
	if downs == 0 {
		return l
	}
	out := make([]*upstream, 0, len(l))
	for _, want := range []bool{false, true} {
		for _, u := range l {
			if u.down(now) == want {
				out = append(out, u)
			}
		}
	}
	return out
}

// set replaces the upstreams with addrs, keeping the health and sockets of
// those that stay and closing the others'.
func (s *upstreamSet) set(addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[string]*upstream{}
	for _, u := range *s.list.Load() {
		old[u.addr] = u
	}
	var l []*upstream
	for _, a := range addrs {
		if u, ok := old[a]; ok {
			l = append(l, u)
			delete(old, a)
		} else {
			l = append(l, newUpstream(a, s.rd))
		}
	}
	s.list.Store(&l)
	for _, u := range old {
		u.close()
	}
}

// addrs returns the upstreams' addresses, for logs.
func (s *upstreamSet) addrs() []string {
	var out []string
	for _, u := range *s.list.Load() {
		out = append(out, u.addr)
	}
	return out
}

// close closes every upstream's sockets.
func (s *upstreamSet) close() {
	for _, u := range *s.list.Load() {
		u.close()
	}
}
