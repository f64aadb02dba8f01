package netsvc

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// DHCP ports (RFC 2131); ctl.Bind binds serverPort.
const (
	serverPort = 67
	clientPort = 68
)

// dhcpConn serves DHCP on f, the udp port 67 socket ctl.Bind bound to the
// bridge.
func dhcpConn(f *os.File) (*net.UDPConn, error) {
	pc, err := net.FilePacketConn(f) // a dup: the caller closes f
	if err != nil {
		return nil, fmt.Errorf("dhcp socket: %w", err)
	}
	return pc.(*net.UDPConn), nil
}

// rawSender sends IPv4/UDP datagrams to a given MAC through an AF_PACKET
// socket. A DHCP server needs it to unicast an OFFER or ACK to a client that
// does not have its address yet (RFC 2131 4.1): an ordinary UDP send would ARP
// for that address, and nobody answers. This leaves the neighbour table alone,
// unlike the ARP-injection of other servers.
type rawSender struct {
	fd      int
	ifindex int
	src     netip.Addr
}

// newRawSender opens a send-only packet socket on ifname (protocol 0: it
// receives nothing).
func newRawSender(ifname string, src netip.Addr) (*rawSender, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw socket bind to %s: %w", ifname, err)
	}
	return &rawSender{fd: fd, ifindex: ifc.Index, src: src}, nil
}

// send writes payload as a UDP datagram from src:67 to dst:68 at mac.
func (s *rawSender) send(payload []byte, dst netip.Addr, mac net.HardwareAddr) error {
	pkt := udp4Packet(payload, s.src, serverPort, dst, clientPort)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: s.ifindex, Halen: uint8(len(mac))}
	copy(to.Addr[:], mac)
	if err := unix.Sendto(s.fd, pkt, 0, to); err != nil {
		return fmt.Errorf("raw send to %s: %w", mac, err)
	}
	return nil
}

func (s *rawSender) close() error { return unix.Close(s.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udp4Packet builds an IPv4 header, a UDP header with its checksum, and the
// payload.
func udp4Packet(payload []byte, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) []byte {
	const ipLen, udpLen = 20, 8
	pkt := make([]byte, ipLen+udpLen+len(payload))
	ip, udp := pkt[:ipLen], pkt[ipLen:]
	s4, d4 := src.As4(), dst.As4()
	ip[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(ip[2:], uint16(len(pkt)))
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))

	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(payload)))
	copy(udp[udpLen:], payload)
	pseudo := sum(s4[:], 0)
	pseudo = sum(d4[:], pseudo)
	pseudo += uint32(unix.IPPROTO_UDP) + uint32(udpLen+len(payload))
	c := checksum(udp, pseudo)
	if c == 0 {
		c = 0xffff // zero means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return pkt
}

// sum adds b as big-endian 16-bit words to acc.
func sum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

// checksum is the Internet checksum (RFC 1071) of b on top of acc.
func checksum(b []byte, acc uint32) uint16 {
	acc = sum(b, acc)
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}
