package netsvc

import (
	"encoding/binary"
	"sync"
	"time"
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

// cacheEntry is an answer's bytes and TTL offsets (never written: a hit
// is a copy), not the parsed answer, whose question alone is 260 bytes.
type cacheEntry struct {
	b       []byte
	ttls    []uint16
	stored  time.Time
	expires time.Time
}

// dnsCache keeps forwarded answers for their TTL (RFC 1035, RFC 2308 for
// negative ones), so that the guests' repeated lookups do not each go
// upstream. Its keys are dnsQuery.appendKey's: a lookup with a key in a
// buffer of the caller's allocates nothing.
type dnsCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cacheEntry
}

func newDNSCache(max int) *dnsCache {
	return &dnsCache{max: max, m: make(map[string]cacheEntry)}
}

// get returns a copy of the cached answer with its TTLs aged, or nil; the
// copy has room for an OPT record.
func (c *dnsCache) get(key []byte, now time.Time) []byte {
	c.mu.Lock()
	e, ok := c.m[string(key)]
	if ok && !now.Before(e.expires) {
		delete(c.m, string(key))
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	b := make([]byte, len(e.b), len(e.b)+optLen)
	copy(b, e.b)
	age := uint32(now.Sub(e.stored) / time.Second)
	if age == 0 {
		return b
	}
	for _, at := range e.ttls {
		ttl := binary.BigEndian.Uint32(b[at:])
		binary.BigEndian.PutUint32(b[at:], ttl-min(ttl, age))
	}
	return b
}

// put keeps a for as long as its TTLs say, if it may be kept at all.
func (c *dnsCache) put(key string, a *dnsAnswer, now time.Time) {
	if a.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[key] = cacheEntry{b: a.b, ttls: a.ttls, stored: now, expires: now.Add(a.ttl)}
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
