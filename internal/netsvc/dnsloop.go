package netsvc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP serving loop. Go's netpoller cost a thread wakeup per datagram: the
// reader goroutine parked on EAGAIN, epoll_pwait woke a thread for the next
// datagram, and the goroutine was handed to it (per query one recvfrom, one
// sendto, 1.1 epoll_pwait and 0.25 futex, over a third of the daemon's
// samples in context switches). dnsmasq's one thread sits in poll and reads.
// So the loop is one goroutine on an OS thread of its own that waits in
// epoll_wait(2) for its client socket and for the upstream sockets (see
// upReader), reads a burst of queries with one recvmmsg(2), answers guest
// names and cached ones itself and writes those answers with one
// sendmmsg(2) per burst; forwarded queries go upstream from it, and their
// answers, read by it too, go back with a sendto(2) each.

// udpBatch is how many datagrams one recvmmsg takes: a burst of dnsperf's
// 100 outstanding queries rarely queues more, and each costs a maxQuery
// buffer that the kernel writes into.
const udpBatch = 16

// udpLoop is a UDP DNS socket served by the loop (serveUDP).
type udpLoop struct {
	fd int // every call on it says MSG_DONTWAIT: the loop waits in epoll_wait
	// mu orders writes from other goroutines (forwarded answers) before the
	// close of fd, so that none writes to a descriptor number reused since.
	mu      sync.RWMutex
	closed  bool
	running bool
	stop    atomic.Bool
	done    chan struct{} // closed when serveUDP returns
}

// newUDPLoop takes a duplicate of the bound socket f, out of the
// netpoller: the loop waits for it in its own epoll_wait and reads and
// writes it with MSG_DONTWAIT, whatever the open file's O_NONBLOCK says.
// The caller closes f.
func newUDPLoop(f *os.File) (*udpLoop, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dns udp socket: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("dns udp socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dns udp socket: dup: %w", derr)
	}
	return &udpLoop{fd: fd, done: make(chan struct{})}, nil
}

// begin marks the loop running; false: the socket is closed already.
func (l *udpLoop) begin() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = !l.closed
	return l.running
}

// close stops the loop and closes the socket. A thread blocked in
// epoll_wait does not wake when a descriptor is closed, so close first shuts
// the socket down for reading (`shutdown(fd, SHUT_RD)`), which makes it
// readable for good and so wakes the loop (on a socket that is not connected
// the call also reports ENOTCONN, having done it), and waits for the loop to
// leave before the descriptor goes.
func (l *udpLoop) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	running := l.running
	l.mu.Unlock()
	l.stop.Store(true)
	_ = unix.Shutdown(l.fd, unix.SHUT_RD)
	if running {
		<-l.done
	}
	unix.Close(l.fd)
}

// udpPeer is a client's address as recvmmsg gave it, for the answer.
type udpPeer struct {
	sa  unix.RawSockaddrInet6 // or a RawSockaddrInet4 in its first bytes
	len uint32
}

// addr is the peer's IP address.
func (p *udpPeer) addr() netip.Addr {
	switch p.sa.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&p.sa))
		return netip.AddrFrom4(sa.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(p.sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// writeTo sends b to p without blocking (a full send buffer drops it, as
// the network could), unless the socket is closed.
//
//	sendto(fd, b, MSG_DONTWAIT, p)
func (l *udpLoop) writeTo(b []byte, p *udpPeer) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return net.ErrClosed
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(l.fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&p.sa)), uintptr(p.len))
	if e != 0 {
		return e
	}
	return nil
}

// batch is the loop's buffers: udpBatch datagrams in, their answers out.
type batch struct {
	slab  []byte // udpBatch buffers of maxQuery, mmapped outside the Go heap
	peers [udpBatch]udpPeer
	iovs  [udpBatch]unix.Iovec
	in    [udpBatch]unix.Mmsghdr
	// The answers of one burst: out[i] is answer[i] to the peer it names.
	out    [udpBatch]unix.Mmsghdr
	outIov [udpBatch]unix.Iovec
	answer [udpBatch][]byte
}

// newBatch maps the read buffers as anonymous memory: a page is resident
// only once a datagram has been written to it, and the collector neither
// scans nor counts it.
func newBatch() (*batch, error) {
	slab, err := unix.Mmap(-1, 0, udpBatch*maxQuery, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("dns read buffers: %w", err)
	}
	return &batch{slab: slab}, nil
}

func (b *batch) free() { _ = unix.Munmap(b.slab) }

// recv reads the datagrams queued, at most udpBatch, without waiting.
//
//	recvmmsg(fd, in, udpBatch, MSG_DONTWAIT, NULL)
func (b *batch) recv(fd int) (int, error) {
	for i := range b.in {
		b.iovs[i].Base = &b.slab[i*maxQuery]
		b.iovs[i].SetLen(maxQuery)
		h := &b.in[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.peers[i].sa))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Flags = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.in[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	for i := range int(n) {
		b.peers[i].len = b.in[i].Hdr.Namelen
	}
	return int(n), nil
}

// datagram is the i-th datagram read; ok is false for one cut to maxQuery.
func (b *batch) datagram(i int) ([]byte, bool) {
	if b.in[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, false
	}
	return b.slab[i*maxQuery : i*maxQuery+int(b.in[i].Len)], true
}

// queue sets answer k to go to the peer of datagram i.
func (b *batch) queue(k, i int, ans []byte) {
	b.answer[k] = ans
	b.outIov[k].Base = unsafe.SliceData(ans)
	b.outIov[k].SetLen(len(ans))
	h := &b.out[k].Hdr
	h.Name = (*byte)(unsafe.Pointer(&b.peers[i].sa))
	h.Namelen = b.peers[i].len
	h.Iov = &b.outIov[k]
	h.SetIovlen(1)
}

// send writes the first n answers without blocking; one that fails (its
// peer unreachable, a full send buffer) is skipped and the rest go on.
//
//	sendmmsg(fd, out, n, MSG_DONTWAIT)
func (b *batch) send(fd, n int) (failed error) {
	for sent := 0; sent < n; {
		m, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(n-sent), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			failed = e
			m = 1 // the first of the rest failed: skip it
		}
		sent += int(m)
	}
	clear(b.answer[:n]) // let the collector have them
	return failed
}

// serveUDP answers the UDP queries on l until l is closed (see udpLoop),
// and reads the upstreams' answers too (see upReader): its thread waits for
// both in one epoll_wait.
func (d *dnsd) serveUDP(l *udpLoop) error {
	if !l.begin() {
		return nil
	}
	defer close(l.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := newBatch()
	if err != nil {
		return err
	}
	defer b.free()
	ep, err := loopEpoll(l.fd)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	rd := d.ups.rd
	rd.attach(ep)
	defer rd.detach(ep)
	up := make([]byte, maxUpstreamUDP)
	var evs [2]unix.EpollEvent
	for {
		ne, err := pollNow(ep, evs[:])
		if ne == 0 && err == nil {
			ne, err = unix.EpollWait(ep, evs[:], -1)
		}
		switch {
		case l.stop.Load():
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("dns udp wait: %w", err)
		}
		for _, ev := range evs[:ne] {
			if int(ev.Fd) != l.fd {
				rd.drain(up)
				continue
			}
			if err := d.serveBatch(l, b); err != nil {
				return err
			}
		}
	}
}

// pollNow is `epoll_wait(ep, evs, len(evs), 0)` without telling the
// runtime: it cannot block. A blocking call hands the P back (sysmon wakes,
// sleeps 20 µs, retakes it, and is woken again at the next syscall): under
// load the loop mostly finds work ready and skips all of that.
func pollNow(ep int, evs []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// loopEpoll makes the loop's epoll instance, with its client socket in it
// (level-triggered: what one read leaves wakes the next wait at once).
//
//	epoll_create1(EPOLL_CLOEXEC); epoll_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN)
func loopEpoll(fd int) (int, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("dns udp epoll: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(ep)
		return -1, fmt.Errorf("dns udp epoll: %w", err)
	}
	return ep, nil
}

// serveBatch reads the queries queued on l, at most udpBatch, and writes the
// answers the loop has with one sendmmsg.
func (d *dnsd) serveBatch(l *udpLoop, b *batch) error {
	n, err := b.recv(l.fd)
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return nil
	case err != nil:
		return fmt.Errorf("dns udp read: %w", err)
	}
	k := 0
	for i := range n {
		if ans := d.answerUDP(l, b, i); ans != nil {
			b.queue(k, i, ans)
			k++
		}
	}
	if err := b.send(l.fd, k); err != nil {
		d.log.Debug("dns write", "err", err.Error())
	}
	return nil
}

// answerUDP returns the answer to datagram i of b when the loop has it (a
// refusal, a guest's name, a cached one), or nil: not a query, or forwarded,
// whose answer goes from the goroutine that reads it.
func (d *dnsd) answerUDP(l *udpLoop, b *batch, i int) []byte {
	msg, ok := b.datagram(i)
	if !ok {
		return nil
	}
	r, err := parseQuery(msg)
	if err != nil || r.hdr.Response {
		return nil // not a query: say nothing to whoever sent it
	}
	if rep, ok := d.answerOwn(r, b.peers[i].addr()); ok {
		return r.finish(rep, "udp")
	}
	var kb [maxKeyLen]byte
	key := r.appendKey(kb[:0])
	if rep, ok := d.cached(r, key); ok {
		return r.finish(rep, "udp")
	}
	peer := b.peers[i]
	d.forwardMiss(r, key, "udp", func(rep dnsReply) {
		if err := l.writeTo(r.finish(rep, "udp"), &peer); err != nil {
			d.log.Debug("dns write", "to", peer.addr().String(), "err", err.Error())
		}
	})
	return nil
}
