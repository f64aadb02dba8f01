package firewall

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/nat"
)

// PortForward is a port forward into a NAT network's guest (see package nat).
type PortForward = nat.PortForward

// ipsDstNAT is the conntrack status bit IPS_DST_NAT (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// Chains of a network's forwards, in the nat base chains prerouting
// (connections from elsewhere) and output (the host's own).
const (
	prefixPre = "pre-"
	prefixOut = "out-"
)

// loopback is where the host's loopback services listen; loopback6 the
// IPv6 loopback address.
var (
	loopback  = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// protoNum is a forward's protocol as nftables takes it.
func protoNum(p string) byte {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// dnatRules send each forward's host ports to its guest, for connections to
// any local address of the host (`fib daddr type local`; over IPv6 but ::1,
// which Linux cannot route to a guest) or to its host_ip. A forward's family
// is its guest's. A range onto the same ports keeps the port; onto other
// ports it becomes a rule per port, as nft's dnat has no offset mapping
// (iptables' has: `--to-destination G:9000-9010/8000`).
func dnatRules(n Network) []*spec {
	var rs []*spec
	for _, f := range n.Forwards {
		p := protoNum(f.Proto)
		match := func(first, last uint16) *spec {
			s := newSpec(true)
			switch {
			case f.Guest.Is6() && f.HostIP.IsValid():
				s.daddr6(netip.PrefixFrom(f.HostIP, 128), false)
			case f.Guest.Is6():
				s.daddr6(loopback6, true).fibLocal()
			case f.HostIP.IsValid():
				s.ipv4() // first, where nft hides it
				s.daddr(netip.PrefixFrom(f.HostIP, 32), false)
			default:
				s.ipv4()
				s.fibLocal()
			}
			return s.dportRange(p, first, last)
		}
		switch {
		case f.First == f.Last:
			rs = append(rs, match(f.First, f.First).dnat(f.Guest, f.GuestPort))
		case f.GuestPort == f.First:
			rs = append(rs, match(f.First, f.Last).dnat(f.Guest, 0))
		default:
			for i := uint16(0); i <= f.Last-f.First; i++ {
				rs = append(rs, match(f.First+i, f.First+i).dnat(f.Guest, f.GuestPort+i))
			}
		}
	}
	return rs
}

// forwardsOf reports whether n has forwards of a family: IPv6 (six) or IPv4.
func forwardsOf(n Network, six bool) bool {
	for _, f := range n.Forwards {
		if f.Guest.Is6() == six {
			return true
		}
	}
	return false
}

// forwardMasqRules come first in a network's nat chain when it has forwards:
// hairpin (a guest reaching a guest of its subnet or IPv6 prefix through the
// host's address gets its answer back through the host), and connections
// the host opened from 127.0.0.1 (route_localnet lets them out, see
// loopbackGuard; IPv4 forwards only).
func forwardMasqRules(n Network) []*spec {
	var rs []*spec
	s, b := n.Subnet(), n.Bridge
	if forwardsOf(n, false) {
		rs = append(rs, newSpec(true).saddr(s, false).daddr(s, false).oif(b, false).ctDNAT().masquerade(false))
	}
	if forwardsOf(n, false) {
		rs = append(rs, newSpec(true).saddr(loopback, false).oif(b, false).masquerade(false))
	}
	if s6 := n.Subnet6(); forwardsOf(n, true) && s6.IsValid() {
		rs = append(rs, newSpec(true).saddr6(s6, false).daddr6(s6, false).oif(b, false).ctDNAT().masquerade(false))
	}
	return rs
}

// loopbackGuard is the first INPUT rule of a network with forwards: with
// route_localnet on the bridge the kernel would take packets for 127.0.0.0/8
// arriving on it, so that a guest could reach the host's loopback services
// (CVE-2020-8558); all but the answers to the host's own connections are
// dropped. It is there while the network has IPv4 forwards, which is while
// lifecycle keeps route_localnet on; IPv6 has no route_localnet.
func loopbackGuard(n Network) []*spec {
	if !forwardsOf(n, false) {
		return nil
	}
	return []*spec{newSpec(true).iif(n.Bridge, false).daddr(loopback, false).notEstablished().drop()}
}

// forwardedIn: the guard lets DNATed connections into the bridge by (to its
// subnet, as the replies), and the accepts accept them.
func forwardedIn(n Network) *spec {
	return newSpec(true).oif(n.Bridge, false).iif(n.Bridge, true).daddr(n.Subnet(), false).ctDNAT()
}

// forwardedIn6 is forwardedIn for the IPv6 prefix.
func forwardedIn6(n Network) *spec {
	return newSpec(true).oif(n.Bridge, false).iif(n.Bridge, true).daddr6(n.Subnet6(), false).ctDNAT()
}

// fibLocal matches `fib daddr type local`: any address of the host's own.
func (s *spec) fibLocal() *spec {
	return s.add("fib daddr type local",
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)})
}

// dportRange matches `tcp|udp dport FIRST[-LAST]`.
func (s *spec) dportRange(p byte, first, last uint16) *spec {
	if first == last {
		return s.dport(p, first)
	}
	return s.add(protoName(p)+" dport "+strconv.Itoa(int(first))+"-"+strconv.Itoa(int(last)),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binary.BigEndian.AppendUint16(nil, first), ToData: binary.BigEndian.AppendUint16(nil, last)})
}

// ctDNAT matches `ct status dnat`: a connection whose destination a DNAT changed.
func (s *spec) ctDNAT() *spec {
	return s.ctFlags(expr.CtKeySTATUS, "ct status dnat", ipsDstNAT, false)
}

// notEstablished matches `ct state != established,related`... as nft spells
// a negated flag match: none of the two bits set.
func (s *spec) notEstablished() *spec {
	return s.ctFlags(expr.CtKeySTATE, "ct state ! established,related", expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, true)
}

// dnat is `dnat ip to ADDR[:PORT]` or `dnat ip6 to [ADDR][:PORT]`; port 0
// keeps the connection's port.
func (s *spec) dnat(a netip.Addr, port uint16) *spec {
	// As the kernel reads it back: both ends of each range named, and
	// "specified" with a port.
	n := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}
	var ip []byte
	text := "dnat ip to " + a.String()
	if a.Is6() {
		s.need(ip6)
		b := a.As16()
		ip, n.Family, text = b[:], unix.NFPROTO_IPV6, "dnat ip6 to ["+a.String()+"]"
	} else {
		s.ipv4()
		b := a.As4()
		ip = b[:]
	}
	es := []expr.Any{&expr.Immediate{Register: 1, Data: ip}}
	if port != 0 {
		es = append(es, &expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)})
		n.RegProtoMin, n.RegProtoMax, n.Specified = 2, 2, true
		text += ":" + strconv.Itoa(int(port))
	}
	return s.add(text, append(es, n)...)
}

// bigBuffers gives a connection's socket room for a large batch: the batch is
// one sendmsg, refused (EMSGSIZE) when longer than the send buffer, and the
// kernel acknowledges every message of it, which overflows the receive
// buffer (ENOBUFS, after the commit). A hundred forwards are some four
// hundred rules; the largest file (256 KiB) holds some 3000 forwards, a few
// MB of batch. SO_*BUFFORCE pass net.core.[rw]mem_max, as kvmnet holds
// CAP_NET_ADMIN.
//
//	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE / SO_RCVBUFFORCE, 16 MiB)
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20))
	}); err != nil {
		return err
	}
	return serr
}
