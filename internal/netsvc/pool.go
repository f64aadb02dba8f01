package netsvc

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Hold times of the short-lived pool states.
const (
	// offerHold reserves an offered address for the client that was offered
	// it, long enough for a slow client to send its REQUEST.
	offerHold = time.Minute
	// declineHold keeps an address another host answered ARP for out of the
	// pool, so the next client does not get the same conflict at once.
	declineHold = 10 * time.Minute
)

// record is what the pool knows about one client and its address. A record
// outlives its lease (expires in the past) so that the client gets the same
// address back later unless the pool has had to reuse it.
type record struct {
	ip       netip.Addr
	mac      net.HardwareAddr
	key      string // client identifier (option 61) or MAC, see clientKey
	hostname string // sanitized label, "" when the client sent none
	expires  time.Time
	bound    bool // ACKed; false while only offered
	static   bool
}

// active reports whether r still holds its address at now.
func (r *record) active(now time.Time) bool { return now.Before(r.expires) }

// pool is the address allocator and lease table of one network. All methods
// take the lock: the DHCP loop writes, DNS lookups read.
type pool struct {
	mu        sync.RWMutex
	prefix    netip.Prefix // the subnet (masked)
	gw        netip.Addr
	start     netip.Addr
	end       netip.Addr
	leaseTime time.Duration

	byIP     map[netip.Addr]*record
	byKey    map[string]*record
	byName   map[string]*record
	declined map[netip.Addr]time.Time // held: declined, or found in use by a probe

	// probing is set when addresses are probed before their first offer;
	// probed holds when each never-used address was last found free.
	probing bool
	probed  map[netip.Addr]time.Time
	// probeNext is where the next probe ahead of demand starts.
	probeNext netip.Addr

	staticByMAC  map[string]Host
	staticByIP   map[netip.Addr]Host
	staticByName map[string]Host

	dirty func() // called after a change worth persisting
}

// newPool makes the pool of a validated config.
func newPool(c Config) *pool {
	p := &pool{
		prefix: c.Gateway.Masked(), gw: c.Gateway.Addr(),
		start: c.RangeStart, end: c.RangeEnd, leaseTime: c.LeaseTime,
		byIP: map[netip.Addr]*record{}, byKey: map[string]*record{},
		byName: map[string]*record{}, declined: map[netip.Addr]time.Time{},
		probed: map[netip.Addr]time.Time{}, probeNext: c.RangeStart,
		staticByMAC: map[string]Host{}, staticByIP: map[netip.Addr]Host{},
		staticByName: map[string]Host{},
		dirty:        func() {},
	}
	for _, h := range c.Hosts {
		h.Name = strings.ToLower(h.Name)
		p.staticByMAC[h.MAC.String()] = h
		p.staticByIP[h.IP] = h
		if h.Name != "" {
			p.staticByName[h.Name] = h
		}
	}
	return p
}

// client identifies the sender of a DHCP message.
type client struct {
	key      string
	mac      net.HardwareAddr
	hostname string
}

// inRange reports whether ip may be handed out dynamically at all.
func (p *pool) inRange(ip netip.Addr) bool {
	return ip.Is4() && !ip.Less(p.start) && !p.end.Less(ip) && ip != p.gw && !p.isStatic(ip)
}

func (p *pool) isStatic(ip netip.Addr) bool {
	_, ok := p.staticByIP[ip]
	return ok
}

// staticFor returns the static host of c's MAC, if any.
func (p *pool) staticFor(c client) (Host, bool) {
	h, ok := p.staticByMAC[c.mac.String()]
	return h, ok
}

// free reports whether ip can go to c at now: in the range, not declined, and
// not held by another client.
func (p *pool) free(ip netip.Addr, c client, now time.Time) bool {
	if !p.inRange(ip) {
		return false
	}
	if until, ok := p.declined[ip]; ok {
		if now.Before(until) {
			return false
		}
		delete(p.declined, ip)
	}
	r := p.byIP[ip]
	return r == nil || r.key == c.key || !r.active(now)
}

// offer picks an address for c's DISCOVER and reserves it for offerHold. It
// prefers c's static address, then c's previous address, then the address c
// asked for, then a never-used address, then the longest-expired one. When
// probing is on and the pick has never been used nor recently probed, it
// reserves nothing and returns the addresses to probe first (see recordProbe).
func (p *pool) offer(c client, want netip.Addr, now time.Time) (ip netip.Addr, probe []netip.Addr, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.staticFor(c); ok {
		return h.IP, nil, true
	}
	ip, ok = p.choose(c, want, now)
	if !ok {
		return ip, nil, false
	}
	if p.needsProbe(ip, now) {
		return netip.Addr{}, append([]netip.Addr{ip}, p.unprobed(ip.Next(), now, probeBatch-1)...), false
	}
	delete(p.probed, ip) // no longer in the reserve: it has a record now
	r := p.bind(c, ip, now)
	if !r.bound || !r.active(now) {
		r.bound = false
		r.expires = now.Add(offerHold)
	}
	return ip, nil, true
}

// needsProbe reports whether ip must be probed before it is offered: it has
// no history (an address once leased was free then, and its client may come
// back for it) and no recent probe found it free.
func (p *pool) needsProbe(ip netip.Addr, now time.Time) bool {
	if !p.probing || p.byIP[ip] != nil {
		return false
	}
	at, ok := p.probed[ip]
	return !ok || now.Sub(at) > probeValid
}

// unprobed returns up to n free never-used addresses from from on that need
// a probe. It looks at a bounded stretch of the range, since it runs under
// the lock, and moves probeNext past what it returns.
func (p *pool) unprobed(from netip.Addr, now time.Time, n int) []netip.Addr {
	var out []netip.Addr
	ip := from
	for steps := 0; ip.IsValid() && !p.end.Less(ip) && len(out) < n && steps < 8*probeBatch; ip, steps = ip.Next(), steps+1 {
		if p.free(ip, client{}, now) && p.needsProbe(ip, now) {
			out = append(out, ip)
		}
	}
	if p.probeNext.Less(ip) {
		p.probeNext = ip
	}
	return out
}

// needProbe returns those of ips that still need a probe.
func (p *pool) needProbe(ips []netip.Addr, now time.Time) []netip.Addr {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []netip.Addr
	for _, ip := range ips {
		if p.needsProbe(ip, now) {
			out = append(out, ip)
		}
	}
	return out
}

// aheadBatch returns never-used addresses to probe before any client asks
// for them, once fewer than probeBatch probed ones are in reserve; nil
// when the reserve is full enough or probing is off. Probing ahead keeps the
// probe's wait off the DHCP loop during a burst of new guests.
func (p *pool) aheadBatch(now time.Time) []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.probing {
		return nil
	}
	reserve := 0
	for ip, at := range p.probed {
		if now.Sub(at) <= probeValid && p.byIP[ip] == nil {
			reserve++
		}
	}
	if reserve >= probeBatch {
		return nil
	}
	return p.unprobed(p.probeNext, now, 2*probeBatch)
}

// recordProbe records a probe of ips: those in inUse are held like a declined
// address, the others count as free for probeValid.
func (p *pool) recordProbe(ips []netip.Addr, inUse map[netip.Addr]net.HardwareAddr, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ip, at := range p.probed {
		if now.Sub(at) > probeValid {
			delete(p.probed, ip)
		}
	}
	for _, ip := range ips {
		if _, taken := inUse[ip]; taken {
			p.declined[ip] = now.Add(declineHold)
			delete(p.probed, ip)
			continue
		}
		p.probed[ip] = now
	}
	if len(inUse) > 0 {
		p.dirty()
	}
}

// choose implements offer's order of preference without changing anything.
func (p *pool) choose(c client, want netip.Addr, now time.Time) (netip.Addr, bool) {
	if r := p.byKey[c.key]; r != nil && !r.static && p.free(r.ip, c, now) {
		return r.ip, true
	}
	if want.IsValid() && p.free(want, c, now) {
		return want, true
	}
	return p.scan(c, now)
}

// scan walks the range for a never-used address, remembering the record that
// expired longest ago as the fallback.
func (p *pool) scan(c client, now time.Time) (netip.Addr, bool) {
	var oldest netip.Addr
	var oldestT time.Time
	for ip := p.start; ip.IsValid() && !p.end.Less(ip); ip = ip.Next() {
		if !p.free(ip, c, now) {
			continue
		}
		r := p.byIP[ip]
		if r == nil {
			return ip, true
		}
		if !oldest.IsValid() || r.expires.Before(oldestT) {
			oldest, oldestT = ip, r.expires
		}
	}
	return oldest, oldest.IsValid()
}

// bind gives ip to c: it drops c's record of another address and any stale
// record of ip, and returns c's record of ip. The caller sets the state.
func (p *pool) bind(c client, ip netip.Addr, now time.Time) *record {
	if r := p.byKey[c.key]; r != nil && r.ip != ip {
		p.remove(r)
	}
	r := p.byIP[ip]
	if r != nil && r.key != c.key {
		p.remove(r)
		r = nil
	}
	if r == nil {
		r = &record{ip: ip, key: c.key}
		p.byIP[ip], p.byKey[c.key] = r, r
	}
	r.mac = append(r.mac[:0], c.mac...)
	return r
}

// remove forgets r entirely.
func (p *pool) remove(r *record) {
	if p.byIP[r.ip] == r {
		delete(p.byIP, r.ip)
	}
	if p.byKey[r.key] == r {
		delete(p.byKey, r.key)
	}
	p.setName(r, "", time.Time{})
}

// setName indexes r under name for DNS. A name belongs to a static host, else
// to the first live lease that claimed it: a later claimant would otherwise
// take over the traffic meant for the owner. A refused claim leaves r without
// a name and returns false; the claim succeeds once the owner's lease has been
// released or has expired.
func (p *pool) setName(r *record, name string, now time.Time) bool {
	if r.hostname != "" && p.byName[r.hostname] == r {
		delete(p.byName, r.hostname)
	}
	r.hostname = ""
	if name == "" {
		return true
	}
	if h, ok := p.staticByName[name]; ok && !(r.static && h.IP == r.ip) {
		return false
	}
	if o := p.byName[name]; o != nil && o != r {
		if o.bound && o.active(now) {
			return false
		}
		o.hostname = "" // the owner's lease is over: the name is not its to come back to
	}
	r.hostname = name
	p.byName[name] = r
	return true
}

// committed is the outcome of pool.commit.
type committed struct {
	r       *record // a copy of the lease; nil when the REQUEST is refused
	renewal bool    // c held ip already, unexpired and under the same name
	taken   string  // the name c asked for and did not get: another guest owns it
}

// commit handles a REQUEST for ip from c: it binds the lease and returns its
// record, or a nil record when ip cannot be c's (the caller NAKs). The server
// is authoritative on its bridge: a client asking for a free address it had
// before a lost lease file gets it rather than silence.
func (p *pool) commit(c client, ip netip.Addr, now time.Time) committed {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, static := p.staticFor(c)
	switch {
	case static && ip != h.IP:
		return committed{}
	case !static && !p.free(ip, c, now):
		return committed{}
	}
	prev := p.byIP[ip]
	renewal := prev != nil && prev.key == c.key && prev.bound && now.Before(prev.expires)
	var prevName string
	if renewal {
		prevName = prev.hostname
	}
	r := p.bind(c, ip, now)
	r.bound, r.static = true, static
	r.expires = now.Add(p.leaseTime)
	name := c.hostname
	if static && h.Name != "" {
		name = h.Name
	}
	if name == "" {
		name = r.hostname // a renewal without option 12 keeps the name
	}
	var taken string
	if !p.setName(r, name, now) {
		taken = name
	}
	p.dirty()
	return committed{r: r.copy(), renewal: renewal && r.hostname == prevName, taken: taken}
}

// copy returns a snapshot of r that is safe to read without the lock.
func (r *record) copy() *record {
	c := *r
	c.mac = append(net.HardwareAddr(nil), r.mac...)
	return &c
}

// release ends c's lease of ip now, keeping the record so that c gets the
// same address back next time if nobody took it meanwhile.
func (p *pool) release(c client, ip netip.Addr, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.byIP[ip]
	if r == nil || r.key != c.key {
		return false
	}
	r.expires = now
	p.setName(r, "", now)
	p.dirty()
	return true
}

// decline takes ip out of the pool for declineHold and forgets c's record of
// it, so that c's next DISCOVER gets another address.
func (p *pool) decline(c client, ip netip.Addr, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.byIP[ip]
	if r == nil || r.key != c.key {
		return false
	}
	p.remove(r)
	if !r.static {
		p.declined[ip] = now.Add(declineHold)
	}
	p.dirty()
	return true
}

// forgetOffer drops c's unbound offer: c chose another server.
func (p *pool) forgetOffer(c client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.byKey[c.key]; r != nil && !r.bound {
		p.remove(r)
	}
}

// lookup returns the address of a guest name (a lowercase label).
func (p *pool) lookup(name string, now time.Time) (netip.Addr, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if h, ok := p.staticByName[name]; ok {
		return h.IP, true
	}
	if r := p.byName[name]; r != nil && r.bound && r.active(now) {
		return r.ip, true
	}
	return netip.Addr{}, false
}

// reverse returns the guest name of ip, for PTR queries.
func (p *pool) reverse(ip netip.Addr, now time.Time) (string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if h, ok := p.staticByIP[ip]; ok && h.Name != "" {
		return h.Name, true
	}
	if r := p.byIP[ip]; r != nil && r.bound && r.active(now) && r.hostname != "" {
		return r.hostname, true
	}
	return "", false
}

// snapshot returns copies of the bound records and the holds still running
// at now, for persisting.
func (p *pool) snapshot(now time.Time) saved {
	p.mu.RLock()
	defer p.mu.RUnlock()
	sv := saved{recs: make([]*record, 0, len(p.byIP)), held: map[netip.Addr]time.Time{}}
	for _, r := range p.byIP {
		if r.bound {
			sv.recs = append(sv.recs, r.copy())
		}
	}
	for ip, until := range p.declined {
		if now.Before(until) {
			sv.held[ip] = until
		}
	}
	return sv
}

// restore loads persisted records, dropping those the current config no
// longer allows: out of range, the gateway, or a static address of another MAC.
// Only a name's owner is saved with it, so names come back to their owners.
func (p *pool) restore(sv saved, now time.Time) (kept int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ip, until := range sv.held {
		if p.inRange(ip) && now.Before(until) {
			p.declined[ip] = until
		}
	}
	for _, r := range sv.recs {
		if !p.restorable(r) {
			continue
		}
		r.bound = true
		p.byIP[r.ip], p.byKey[r.key] = r, r
		name := r.hostname
		r.hostname = ""
		p.setName(r, name, now)
		kept++
	}
	return kept
}

func (p *pool) restorable(r *record) bool {
	if r.key == "" || p.byIP[r.ip] != nil || p.byKey[r.key] != nil {
		return false
	}
	h, static := p.staticByMAC[r.mac.String()]
	r.static = static
	if static {
		return h.IP == r.ip
	}
	return p.inRange(r.ip)
}
