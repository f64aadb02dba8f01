package netsvc

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxQuery is the largest UDP query read; a longer one is dropped.
const maxQuery = 4096

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
