package netsvc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Probing addresses before their first offer (RFC 5227 2.1.1, as a DHCP
// server: dnsmasq pings, an ARP probe is cheaper and sees hosts that drop
// pings).
const (
	// probeTimeout is how long a probe waits for an answer. A host on the
	// bridge answers within microseconds; the DHCP loop waits this long at
	// most once per probeBatch new addresses.
	probeTimeout = 5 * time.Millisecond
	// probeBatch is how many never-used addresses one probe covers, so that a
	// burst of new clients pays the timeout once per batch.
	probeBatch = 16
	// probeValid is how long a probe's "free" holds for an offer.
	probeValid = time.Minute
)

// prober finds which of ips another host on the bridge uses.
type prober interface {
	probe(ips []netip.Addr) (inUse map[netip.Addr]net.HardwareAddr, err error)
}

// arpProber sends ARP probes (who-has, sender IP 0.0.0.0, so that no
// neighbour cache learns anything) on the bridge and collects the answers.
// Its socket lives as long as the daemon: making and binding a packet socket
// takes milliseconds (the kernel waits for an RCU grace period).
type arpProber struct {
	ifindex int

	mu sync.Mutex // a probe runs whole, and close waits for it
	fd int        // -1 once closed
}

// newARPProber opens the ARP socket on ifname.
func newARPProber(ifname string) (*arpProber, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("arp probe: %w", err)
	}
	// Protocol 0 here and ARP at bind: a socket made with a protocol is
	// hooked into every device at once, and moving the hook to one device at
	// bind waits out an RCU grace period (~10 ms), on a cold up's critical path.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("arp probe socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("arp probe bind to %s: %w", ifname, err)
	}
	return &arpProber{fd: fd, ifindex: ifc.Index}, nil
}

// close closes the socket once no probe uses it.
func (a *arpProber) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fd >= 0 {
		unix.Close(a.fd)
		a.fd = -1
	}
}

// ARP header fields of Ethernet/IPv4 (RFC 826).
const (
	arpLen     = 28
	arpRequest = 1
	arpReply   = 2
)

// probe sends one probe per address and waits probeTimeout for answers.
// What queued up since the last probe is dropped first: it answers nothing
// asked. The bridge's MAC is read each time: a bridge takes a port's MAC as
// ports come and go, and answers go to the MAC the probe names.
func (a *arpProber) probe(ips []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fd := a.fd
	if fd < 0 {
		return nil, errors.New("arp probe: socket closed")
	}
	mac, err := boundMAC(fd)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 128)
	for {
		if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil {
			break // EAGAIN: drained
		}
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: a.ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	want := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		want[ip] = true
		if err := unix.Sendto(fd, arpProbe(mac, ip), 0, to); err != nil {
			return nil, fmt.Errorf("arp probe %s: %w", ip, err)
		}
	}
	return collectAnswers(fd, want, time.Now().Add(probeTimeout))
}

// boundMAC returns the current MAC of the interface a packet socket is bound
// to. getsockname asks the socket's own namespace, whatever thread runs it,
// and costs no netlink dump.
func boundMAC(fd int) (net.HardwareAddr, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("arp probe: bridge address: %w", err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok || ll.Halen != 6 {
		return nil, errors.New("arp probe: bridge has no Ethernet address")
	}
	return net.HardwareAddr(append([]byte(nil), ll.Addr[:6]...)), nil
}

// arpProbe is an ARP request for target from mac with sender IP 0.0.0.0.
func arpProbe(mac net.HardwareAddr, target netip.Addr) []byte {
	b := make([]byte, arpLen)
	binary.BigEndian.PutUint16(b[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(b[2:], unix.ETH_P_IP)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], arpRequest)
	copy(b[8:14], mac)
	t := target.As4()
	copy(b[24:28], t[:])
	return b
}

// collectAnswers reads ARP packets until deadline and returns the senders
// that claim one of want: a reply, or a request announcing it (RFC 5227 2.1.1).
func collectAnswers(fd int, want map[netip.Addr]bool, deadline time.Time) (map[netip.Addr]net.HardwareAddr, error) {
	inUse := map[netip.Addr]net.HardwareAddr{}
	buf := make([]byte, 128)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return inUse, nil
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return inUse, fmt.Errorf("arp probe poll: %w", err)
		}
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // EAGAIN: read all there is
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue // our own probe
			}
			if ip, mac, ok := claimant(buf[:n]); ok && want[ip] {
				inUse[ip] = mac
			}
		}
	}
}

// claimant returns the sender of an Ethernet/IPv4 ARP packet that uses its
// address: a reply, or a request with a sender address (not a probe).
func claimant(b []byte) (netip.Addr, net.HardwareAddr, bool) {
	if len(b) < arpLen || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != unix.ETH_P_IP ||
		b[4] != 6 || b[5] != 4 {
		return netip.Addr{}, nil, false
	}
	op := binary.BigEndian.Uint16(b[6:])
	spa := netip.AddrFrom4([4]byte(b[14:18]))
	if op != arpReply && op != arpRequest || spa.IsUnspecified() {
		return netip.Addr{}, nil, false
	}
	return spa, net.HardwareAddr(append([]byte(nil), b[8:14]...)), true
}
