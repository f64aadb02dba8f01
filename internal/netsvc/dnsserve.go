package netsvc

import (
	"errors"
	"net"
	"net/netip"
	"runtime"

	"github.com/miekg/dns"
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
		r := new(dns.Msg)
		if r.Unpack(buf[:n]) != nil {
			continue // not DNS: say nothing to whoever sent it
		}
		src := from.Addr().Unmap()
		if r.Response {
			continue
		}
		if resp := d.answerOwn(r, src); resp != nil {
			d.writeUDP(pc, from, r, withEDNS(r, resp))
			continue
		}
		if resp := d.cached(r, keyOf(r)); resp != nil {
			d.writeUDP(pc, from, r, resp)
			continue
		}
		d.forwardAsync(r, "udp", func(resp *dns.Msg) { d.writeUDP(pc, from, r, resp) })
	}
}

// writeUDP sends resp, cut to what the client accepts, to the client.
func (d *dnsd) writeUDP(pc *net.UDPConn, to netip.AddrPort, r, resp *dns.Msg) {
	resp.Truncate(udpSize(r))
	b, err := resp.Pack()
	if err == nil {
		_, err = pc.WriteToUDPAddrPort(b, to)
	}
	if err != nil {
		d.log.Debug("dns write", "to", to.String(), "err", err.Error())
	}
}
