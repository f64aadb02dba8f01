package netsvc

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the cache of forwarded answers.
const (
	// cacheSize bounds the entries: a few hundred KB at most.
	cacheSize = 4096
	// maxCacheTTL caps how long a positive answer is kept, whatever its TTL.
	maxCacheTTL = time.Hour
	// maxNegativeTTL caps a negative answer's time (RFC 2308 5 allows hours;
	// a guest waiting for a name to appear should not wait that long).
	maxNegativeTTL = 5 * time.Minute
)

// cacheKey is what makes two queries the same question. DO and CD change
// what an upstream returns, so they are part of it.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	do, cd        bool
}

func keyOf(r *dns.Msg) cacheKey {
	q := r.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: r.CheckingDisabled}
	if o := r.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

type cacheEntry struct {
	msg     *dns.Msg // without OPT
	stored  time.Time
	expires time.Time
}

// dnsCache keeps forwarded answers for their TTL (RFC 1035, RFC 2308 for
// negative ones), so that the guests' repeated lookups do not each go upstream.
type dnsCache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]cacheEntry
}

func newDNSCache(max int) *dnsCache {
	return &dnsCache{max: max, m: make(map[cacheKey]cacheEntry)}
}

// get returns a copy of the cached answer with its TTLs aged, or nil.
func (c *dnsCache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	e, ok := c.m[k]
	if ok && !now.Before(e.expires) {
		delete(c.m, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// put keeps m for as long as its TTLs say, if it may be kept at all.
func (c *dnsCache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok {
		return
	}
	m = m.Copy()
	stripOPT(m)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[k] = cacheEntry{msg: m, stored: now, expires: now.Add(ttl)}
}

// evict drops the expired entries, then arbitrary ones (map order is random)
// until a tenth of the room is free.
func (c *dnsCache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if len(c.m) < c.max*9/10 {
			break
		}
		delete(c.m, k)
	}
}

// cacheTTL is how long m may be cached: the least TTL of its records, or for
// a negative answer (NXDOMAIN or NODATA) the SOA's TTL and minimum (RFC 2308
// 5); not at all for truncated answers, other rcodes, and negative answers
// without SOA.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return 0, false
	}
	if m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
		least := uint32(maxCacheTTL / time.Second)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				least = min(least, rr.Header().Ttl)
			}
		}
		return time.Duration(least) * time.Second, least > 0
	}
	for _, rr := range m.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			ttl := min(time.Duration(min(s.Hdr.Ttl, s.Minttl))*time.Second, maxNegativeTTL)
			return ttl, ttl > 0
		}
	}
	return 0, false
}
