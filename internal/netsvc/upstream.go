package netsvc

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// Upstream UDP sockets are shared by the queries in flight, as dnsmasq shares
// its: a socket per query cost a socket, a connect and a close each, and
// halved the rate of names every query forwards (TTL 0). Sharing must not
// make spoofing easier, so:
//   - every socket is connect()ed to its upstream, so the kernel delivers
//     only datagrams from that address and port (and the reader checks the
//     source again);
//   - each query gets a random ID, unique among the socket's queries in
//     flight, and an answer is taken only if its ID and its question match;
//   - a socket carries at most sockUses queries and lives at most sockLife,
//     so the source port (random, from the kernel) keeps changing; a query
//     picks one of poolSocks sockets at random.
const (
	poolSocks = 4
	sockUses  = 100000
	sockLife  = 5 * time.Second
	// maxUpstreamUDP is the largest UDP answer asked of an upstream (the
	// EDNS size sent); a larger one comes truncated and the client retries
	// over TCP.
	maxUpstreamUDP = 4096
)

// errUpstreamClosed fails the queries in flight on a socket that is closed
// (its upstream left resolv.conf, or the daemon stops).
var errUpstreamClosed = errors.New("upstream socket closed")

// udpResult is what a query sent on a shared socket got.
type udpResult struct {
	msg *dnsAnswer
	err error
}

// udpWaiter is one query in flight on a socket.
type udpWaiter struct {
	q       dnsmessage.Question
	deliver func(udpResult)
}

// udpPool is the shared sockets of one upstream.
type udpPool struct {
	addr netip.AddrPort
	rd   *upReader
	mu   sync.Mutex
	// socks holds the sockets new queries may use; nil slots are opened on
	// demand, so an idle daemon holds none.
	socks  [poolSocks]*upSock
	closed bool
}

func newUDPPool(addr netip.AddrPort, rd *upReader) *udpPool {
	return &udpPool{addr: addr, rd: rd}
}

// sameSource: from is the upstream's address and port. Zones are left out: a
// link-local upstream written fe80::1%2 comes back as fe80::1%eth0, and the
// socket, connected to it, hears no other anyway.
func sameSource(from, up netip.AddrPort) bool {
	return from.Port() == up.Port() && from.Addr().Unmap().WithZone("") == up.Addr().Unmap().WithZone("")
}

// upSock is one connected socket and the queries in flight on it.
type upSock struct {
	pool *udpPool
	fd   int // non-blocking, read by pool.rd
	mu   sync.Mutex
	// closed: fd is closed or about to be; it is used only under mu when
	// not, so that no read or write reaches a descriptor number reused.
	closed  bool
	pending map[uint16]*udpWaiter
	uses    int
	// retired: no new query may use it; it closes once pending is empty.
	retired bool
}

// send sends query b (packed; its ID is replaced) for question q; its
// answer, or the error that ends it, goes to deliver, once, from the socket's
// reader. The cancel it returns must be called once the answer is no longer
// wanted.
func (p *udpPool) send(b []byte, q dnsmessage.Question, deliver func(udpResult)) (func(), error) {
	w := &udpWaiter{q: q, deliver: deliver}
	s, id, err := p.register(w)
	if err != nil {
		return nil, err
	}
	pkt := make([]byte, len(b))
	copy(pkt, b)
	pkt[0], pkt[1] = byte(id>>8), byte(id)
	cancel := func() { s.unregister(id, w) }
	if err := s.write(pkt); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// register picks a socket at random, opening or replacing it as needed, and
// a random ID that no query in flight on it has.
func (p *udpPool) register(w *udpWaiter) (*upSock, uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, 0, errUpstreamClosed
	}
	i := rand.N(poolSocks)
	s := p.socks[i]
	if s == nil {
		var err error
		if s, err = p.open(); err != nil {
			return nil, 0, err
		}
		p.socks[i] = s
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := uint16(rand.N(1 << 16))
	for s.pending[id] != nil {
		id = uint16(rand.N(1 << 16))
	}
	s.pending[id] = w
	if s.uses++; s.uses >= sockUses {
		p.socks[i] = nil
		s.retired = true // closes when its last query is done
	}
	return s, id, nil
}

// open makes a socket connected to the upstream, hands it to the reader,
// and starts the timer that retires it.
func (p *udpPool) open() (*upSock, error) {
	fd, err := dialUDP(p.addr)
	if err != nil {
		return nil, err
	}
	s := &upSock{pool: p, fd: fd, pending: make(map[uint16]*udpWaiter)}
	if err := p.rd.add(s); err != nil {
		unix.Close(fd)
		return nil, err
	}
	time.AfterFunc(sockLife, s.retire)
	return s, nil
}

// write sends b on s unless s is closed.
//
//	send(fd, b, MSG_DONTWAIT)
func (s *upSock) write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errUpstreamClosed
	}
	_, err := unix.Write(s.fd, b)
	return err
}

// close closes s's socket; queries still in flight on it fail with
// errUpstreamClosed.
func (s *upSock) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.pool.rd.remove(s.fd)
	unix.Close(s.fd)
	s.failAll(errUpstreamClosed)
}

// retire takes s out of the pool; it closes once no query waits on it.
func (s *upSock) retire() {
	p := s.pool
	p.mu.Lock()
	for i := range p.socks {
		if p.socks[i] == s {
			p.socks[i] = nil
		}
	}
	p.mu.Unlock()
	s.mu.Lock()
	s.retired = true
	idle := len(s.pending) == 0
	s.mu.Unlock()
	if idle {
		s.close()
	}
}

// unregister forgets query id (answered, abandoned or failed).
func (s *upSock) unregister(id uint16, w *udpWaiter) {
	s.mu.Lock()
	if s.pending[id] == w {
		delete(s.pending, id)
	}
	done := s.retired && len(s.pending) == 0
	s.mu.Unlock()
	if done {
		s.close()
	}
}

// take returns the query in flight that datagram b answers, no longer in
// flight, and the answer; nil if b answers none (not DNS, not an answer, an
// ID not in flight, another question).
func (s *upSock) take(b []byte) (*udpWaiter, *dnsAnswer) {
	a, err := parseAnswer(b)
	if err != nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.pending[a.hdr.ID]
	if w == nil || !sameQuestion(w.q, a.q) {
		return nil, nil
	}
	delete(s.pending, a.hdr.ID)
	return w, a
}

// failAll ends every query waiting on s with err.
func (s *upSock) failAll(err error) {
	s.mu.Lock()
	ws := s.pending
	s.pending = make(map[uint16]*udpWaiter)
	s.mu.Unlock()
	for _, w := range ws {
		w.deliver(udpResult{err: err})
	}
}

// close closes every socket of p and refuses new queries; those in flight
// fail with errUpstreamClosed.
func (p *udpPool) close() {
	p.mu.Lock()
	p.closed = true
	socks := p.socks
	p.socks = [poolSocks]*upSock{}
	p.mu.Unlock()
	for _, s := range socks {
		if s != nil {
			s.close()
		}
	}
}

// sameQuestion: names compare without case (RFC 4343), as an upstream may
// answer in another case than asked; only ASCII letters have a case there
// (strings.EqualFold would take any two bytes that are not UTF-8 for equal).
func sameQuestion(a, b dnsmessage.Question) bool {
	return a.Type == b.Type && a.Class == b.Class && equalFoldASCII(a.Name.Data[:a.Name.Length], b.Name.Data[:b.Name.Length])
}

func equalFoldASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
