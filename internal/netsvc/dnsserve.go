package netsvc

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// maxQuery is the largest UDP query read; a longer one is cut and then
// fails to parse, and is dropped.
const maxQuery = 4096

// serveUDP answers the UDP queries on pc until it is closed. It reads in one
// goroutine per CPU and answers local and cached names on the spot and sends
// the others upstream, like dnsmasq's single loop; the upstream's answer goes
// back from its socket's reader. (miekg/dns's server made a goroutine and
// timers for every query, and a goroutine waited for each upstream answer:
// half dnsmasq's rate, mostly in thread wakeups.)
func (d *dnsd) serveUDP(pc *net.UDPConn) error {
	n := runtime.GOMAXPROCS(0)
	errc := make(chan error, n)
	for range n {
		go func() { errc <- d.readUDP(pc) }()
	}
	err := <-errc
	pc.Close() // stops the other readers
	for range n - 1 {
		<-errc
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// readUDP is one reader of serveUDP.
func (d *dnsd) readUDP(pc *net.UDPConn) error {
	buf := make([]byte, maxQuery)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		r, err := parseQuery(buf[:n])
		if err != nil || r.hdr.Response {
			continue // not a query: say nothing to whoever sent it
		}
		if rep, ok := d.answerOwn(r, from.Addr().Unmap()); ok {
			d.writeUDP(pc, from, r, rep)
			continue
		}
		d.forwardAsync(r, "udp", func(rep dnsReply) { d.writeUDP(pc, from, r, rep) })
	}
}

// writeUDP sends rep, cut to what the client accepts, to the client.
func (d *dnsd) writeUDP(pc *net.UDPConn, to netip.AddrPort, r *dnsQuery, rep dnsReply) {
	if _, err := pc.WriteToUDPAddrPort(r.finish(rep, "udp"), to); err != nil {
		d.log.Debug("dns write", "to", to.String(), "err", err.Error())
	}
}

// TCP (RFC 7766): each message is preceded by its length; a client may send
// several queries on one connection, which are answered in turn.
const (
	// tcpIdle is how long a connection may wait for its next query (the
	// first must come within upstreamTimeout), as miekg/dns's server had it.
	tcpIdle = 8 * time.Second
	// tcpQueries is how many queries one connection may ask.
	tcpQueries = 128
)

// tcpServer answers the DNS queries of the connections to one listener.
type tcpServer struct {
	d     *dnsd
	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{} // nil once closed
	wg    sync.WaitGroup
}

func newTCPServer(d *dnsd, l net.Listener) *tcpServer {
	return &tcpServer{d: d, l: l, conns: map[net.Conn]struct{}{}}
}

// serve accepts connections until the listener is closed.
func (s *tcpServer) serve() error {
	for {
		c, err := s.l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
				continue
			}
			// EMFILE and friends: wait for descriptors rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// serveConn answers the queries of one connection until it ends, idles or
// has asked tcpQueries.
func (s *tcpServer) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	var src netip.Addr
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = a.AddrPort().Addr().Unmap()
	}
	wait := upstreamTimeout
	var lenBuf [2]byte
	for range tcpQueries {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		wait = tcpIdle
		resp := s.d.answer(q, src, "tcp")
		if resp == nil {
			continue
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		_ = c.SetWriteDeadline(time.Now().Add(upstreamTimeout))
		if _, err := c.Write(append(out, resp...)); err != nil {
			s.d.log.Debug("dns write", "to", src.String(), "err", err.Error())
			return
		}
	}
}

// close stops accepting, ends the connections and waits for their
// goroutines.
func (s *tcpServer) close() {
	s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}
