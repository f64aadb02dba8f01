package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// Raw frames, as a hostile guest writes them: built by hand, sent and seen
// through AF_PACKET sockets on a namespace guest's eth0.

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func ether(dst, src net.HardwareAddr, etype uint16, payload []byte) []byte {
	b := append(append(append([]byte{}, dst...), src...), byte(etype>>8), byte(etype))
	return append(b, payload...)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return append(h, payload...)
}

// udp has no checksum (0: none, which IPv4 allows).
func udp(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

func icmp4(typ, code byte, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], csum(m))
	return m
}

// arp is an Ethernet/IPv4 ARP packet (op 1 request, 2 reply).
func arp(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	s, t := spa.As4(), tpa.As4()
	b = append(append(b, sha...), s[:]...)
	return append(append(b, tha...), t[:]...)
}

// ipv6icmp is an IPv6 packet (hop limit 255, as NDP wants) carrying an ICMPv6
// message with its checksum.
func ipv6icmp(src, dst netip.Addr, msg []byte) []byte {
	s, d := src.As16(), dst.As16()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, 0, byte(len(msg)>>8), byte(len(msg)), 0, 0, 0, unix.IPPROTO_ICMPV6)
	m := append([]byte{}, msg...)
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:], csum(append(pseudo, m...)))
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, unix.IPPROTO_ICMPV6, 255
	binary.BigEndian.PutUint16(h[4:], uint16(len(m)))
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, m...)
}

// routerAdvert is an RA (router lifetime 1800 s) with a prefix information
// option for prefix/64, autonomous and on-link.
func routerAdvert(prefix netip.Addr) []byte {
	ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	pio := []byte{3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0}
	p := prefix.As16()
	return append(append(ra, pio...), p[:]...)
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// rawSock is an AF_PACKET socket on a namespace's eth0.
type rawSock struct {
	fd    int
	index int
}

// openRaw opens it inside ns: the socket stays in ns's network namespace.
func openRaw(ns *testns.NS) (*rawSock, error) {
	var s rawSock
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		s = rawSock{fd: fd, index: ifc.Index}
		return nil
	})
	return &s, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *rawSock) close() { unix.Close(s.fd) }

func (s *rawSock) send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.index, Halen: 6})
}

// seen reports whether a frame the socket receives (not one it sent) within
// wait contains want.
func (s *rawSock) seen(want []byte, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		tv := unix.NsecToTimeval(time.Until(deadline).Nanoseconds())
		_ = unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if bytes.Contains(buf[:n], want) {
			return true
		}
	}
	return false
}

// rawPair opens raw sockets on a's and b's eth0, closed when the test ends.
func rawPair(t *testing.T, a, b *testns.NS) (ra, rb *rawSock) {
	t.Helper()
	var err error
	if ra, err = openRaw(a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ra.close)
	if rb, err = openRaw(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rb.close)
	return ra, rb
}

// macOf is ns's eth0's MAC.
func macOf(ns *testns.NS) net.HardwareAddr {
	m, err := net.ParseMAC(strings.TrimSpace(ns.MustRun("cat", "/sys/class/net/eth0/address")))
	if err != nil {
		panic(fmt.Sprintf("eth0's MAC: %v", err))
	}
	return m
}

// rogueDHCP is a hostile guest's DHCP server on s, as mac and ip: it answers
// every DISCOVER it sees with an OFFER, and every REQUEST with an ACK, of
// offer, with itself as the router and DNS server, until stop is closed.
func (s *rawSock) rogueDHCP(mac net.HardwareAddr, ip, offer netip.Addr, stop <-chan struct{}) {
	buf := make([]byte, 4096)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if ll, ok := from.(*unix.SockaddrLinklayer); err != nil || (ok && ll.Pkttype == unix.PACKET_OUTGOING) {
			continue
		}
		req, ok := dhcpRequest(buf[:n])
		if !ok {
			continue
		}
		answer := map[byte]byte{1: 2, 3: 5}[dhcpType(req)] // DISCOVER: OFFER, REQUEST: ACK
		if answer == 0 {
			continue
		}
		_ = s.send(ether(broadcast, mac, 0x0800, ipv4(ip, netip.MustParseAddr("255.255.255.255"), 17, udp(67, 68, dhcpReply(req, answer, ip, offer)))))
	}
}

// dhcpRequest is the DHCP message a client's frame carries (UDP to port 67).
func dhcpRequest(f []byte) ([]byte, bool) {
	if len(f) < 34 || f[12] != 8 || f[13] != 0 || f[23] != unix.IPPROTO_UDP {
		return nil, false
	}
	u := 14 + int(f[14]&0xf)*4
	if len(f) < u+8+240 || binary.BigEndian.Uint16(f[u+2:]) != 67 || f[u+8] != 1 {
		return nil, false
	}
	return f[u+8:], true
}

// dhcpType is a DHCP message's option 53, 0 when it has none.
func dhcpType(m []byte) byte {
	for o := m[240:]; len(o) >= 2 && o[0] != 255; o = o[min(2+int(o[1]), len(o)):] {
		if o[0] == 53 && o[1] == 1 && len(o) >= 3 {
			return o[2]
		}
	}
	return 0
}

// dhcpReply answers req with message type typ from server, giving it yiaddr.
func dhcpReply(req []byte, typ byte, server, yiaddr netip.Addr) []byte {
	m := make([]byte, 240)
	m[0], m[1], m[2] = 2, 1, 6
	copy(m[4:8], req[4:8])     // xid
	copy(m[10:12], req[10:12]) // flags
	y, s := yiaddr.As4(), server.As4()
	copy(m[16:20], y[:])
	copy(m[28:44], req[28:44]) // chaddr
	copy(m[236:240], []byte{99, 130, 83, 99})
	opt := func(code byte, v ...byte) { m = append(append(m, code, byte(len(v))), v...) }
	opt(53, typ)
	opt(54, s[:]...)
	opt(51, 0, 0, 0x0e, 0x10)
	opt(1, 255, 255, 255, 0)
	opt(3, s[:]...)
	opt(6, s[:]...)
	return append(m, 255)
}
