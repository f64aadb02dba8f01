package netsvc

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reading the upstreams' answers. A goroutine per upstream socket, parked in
// Go's netpoller, cost a thread wakeup per forwarded answer on top of the
// serving loop's own (per TTL-0 query 0.9 context switches, futex and the
// runtime's nanosleep). dnsmasq waits for its client socket and its upstream
// sockets in one poll. So the upstream sockets are raw non-blocking
// descriptors, outside the netpoller, gathered in one epoll instance (ep);
// the serving loop waits on its client socket and on ep together, and reads
// the answers itself when ep is readable: a forwarded query then costs the
// loop's thread two wakeups at most (its query, its answer), none of another
// thread, and under load one wakeup serves many.
//
// ep sits in exactly one waiter's epoll set at a time: the first serving
// loop's, or, while no loop runs (before the daemon serves, in tests that
// forward directly), a fallback goroutine's that lives while sockets are
// open. Two loops (IPv4 and IPv6) do not both wake for one answer.

// upReader is the upstream sockets of one upstream set and who reads them.
type upReader struct {
	mu    sync.Mutex
	ep    int // epoll of the sockets, level-triggered; -1 until the first
	socks map[int32]*upSock
	loops []int // the serving loops' epoll fds; loops[0] reads ep
	at    int   // the epoll fd that holds ep now; -1 none
	fbEp  int   // the fallback's epoll fd; -1 while it does not run
}

func newUpReader() *upReader {
	return &upReader{ep: -1, socks: map[int32]*upSock{}, at: -1, fbEp: -1}
}

// fallbackWait is how long the fallback waits before it checks whether it
// is still needed (a loop took ep over, or no socket is left).
const fallbackWait = 1000 // ms

// add registers s's socket for reading.
//
//	epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, EPOLLIN)
func (r *upReader) add(s *upSock) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ep < 0 {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return err
		}
		r.ep = ep
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}
	if err := unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return err
	}
	r.socks[int32(s.fd)] = s
	r.placeLocked()
	return nil
}

// remove forgets fd before it is closed.
func (r *upReader) remove(fd int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.socks[int32(fd)] == nil {
		return
	}
	delete(r.socks, int32(fd))
	_ = unix.EpollCtl(r.ep, unix.EPOLL_CTL_DEL, fd, nil)
	r.placeLocked()
}

// attach makes the serving loop waiting on epoll fd lep a reader of ep.
func (r *upReader) attach(lep int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loops = append(r.loops, lep)
	r.placeLocked()
}

// detach undoes attach, before lep is closed.
func (r *upReader) detach(lep int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loops = slices.DeleteFunc(r.loops, func(e int) bool { return e == lep })
	r.placeLocked()
}

// placeLocked moves ep into the epoll set of the one that should read it: the
// first loop, else the fallback (started if need be) while sockets are open.
func (r *upReader) placeLocked() {
	if r.ep < 0 {
		return
	}
	want := -1
	switch {
	case len(r.loops) > 0:
		want = r.loops[0]
	case len(r.socks) > 0:
		if r.fbEp < 0 {
			fb, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
			if err != nil {
				return // at stays: its reader, if any, keeps reading
			}
			r.fbEp = fb
			go r.fallback(fb)
		}
		want = r.fbEp
	}
	if want == r.at {
		return
	}
	if r.at >= 0 {
		_ = unix.EpollCtl(r.at, unix.EPOLL_CTL_DEL, r.ep, nil)
		r.at = -1
	}
	if want >= 0 {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.ep)}
		if unix.EpollCtl(want, unix.EPOLL_CTL_ADD, r.ep, &ev) == nil {
			r.at = want
		}
	}
}

// fallback reads ep while no loop does, and ends when a loop took it over
// or no socket is left.
func (r *upReader) fallback(fb int) {
	buf := make([]byte, maxUpstreamUDP)
	var evs [1]unix.EpollEvent
	for {
		n, err := unix.EpollWait(fb, evs[:], fallbackWait)
		if n > 0 {
			r.drain(buf)
		}
		r.mu.Lock()
		if r.at == fb && len(r.socks) > 0 && (err == nil || errors.Is(err, unix.EINTR)) {
			r.mu.Unlock()
			continue
		}
		if r.at == fb {
			_ = unix.EpollCtl(fb, unix.EPOLL_CTL_DEL, r.ep, nil)
			r.at = -1
		}
		r.fbEp = -1
		unix.Close(fb)
		r.placeLocked()
		r.mu.Unlock()
		return
	}
}

// drain reads what the ready sockets hold and delivers the answers, with buf
// (maxUpstreamUDP) to read into. Several may drain at once (a loop taking
// over from the fallback): each read is under its socket's lock.
//
//	epoll_wait(ep, evs, 16, 0)
func (r *upReader) drain(buf []byte) {
	r.mu.Lock()
	ep := r.ep
	r.mu.Unlock()
	var evs [16]unix.EpollEvent
	n, err := unix.EpollWait(ep, evs[:], 0)
	if err != nil {
		return
	}
	for _, ev := range evs[:n] {
		r.mu.Lock()
		s := r.socks[ev.Fd]
		r.mu.Unlock()
		if s != nil {
			s.drain(buf)
		}
	}
}

// drainMax bounds the answers read from one socket per wakeup, so that a
// flood on one does not starve the loop's clients; the rest stays readable.
const drainMax = 64

// drain reads and delivers s's queued datagrams. Anything else than an
// answer to a query in flight, from the upstream, is dropped.
func (s *upSock) drain(buf []byte) {
	for range drainMax {
		var from udpPeer
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		n, err := recvFrom(s.fd, buf, &from)
		s.mu.Unlock()
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			// ECONNREFUSED: the upstream's ICMP port unreachable; every
			// query on s went to that port, so none will be answered.
			s.failAll(err)
			return
		}
		if !sameSource(netip.AddrPortFrom(from.addr(), from.port()), s.pool.addr) {
			continue
		}
		if w, m := s.take(buf[:n]); w != nil {
			w.deliver(udpResult{msg: m})
		}
	}
}

// recvFrom reads one datagram without waiting.
//
//	recvfrom(fd, buf, MSG_DONTWAIT, from)
func recvFrom(fd int, buf []byte, from *udpPeer) (int, error) {
	from.len = unix.SizeofSockaddrInet6
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&from.sa)), uintptr(unsafe.Pointer(&from.len)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// port is the peer's port.
func (p *udpPeer) port() uint16 {
	// Port is in network byte order in both sockaddr layouts, at one offset.
	b := (*[2]byte)(unsafe.Pointer(&p.sa.Port))
	return uint16(b[0])<<8 | uint16(b[1])
}

// dialUDP opens a non-blocking UDP socket connected to addr, outside Go's
// netpoller (`socket; connect`: the kernel picks a random source port).
func dialUDP(addr netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a := addr.Addr(); a.Is4() || a.Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.Unmap().As4()}
	} else {
		family = unix.AF_INET6
		zone, err := zoneID(a.Zone())
		if err != nil {
			return -1, err
		}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16(), ZoneId: zone}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// zoneID is the interface index a zone names ("2" or "eth0").
func zoneID(zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}
