package nat

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// PortForward sends connections to ports of the host to ports of a guest
// (DNAT), from anywhere: other machines, the host itself (its own addresses
// and, over IPv4, 127.0.0.1, as QEMU's hostfwd), and guests through the
// host's address (hairpin). Guest's family decides the forward's: an IPv6
// guest's goes in ip6tables (and HostIP, if set, is IPv6 too). IPv6 has no
// loopback forwarding: Linux has no route_localnet for IPv6, so a
// connection from ::1 cannot leave for a guest.
type PortForward struct {
	Proto       string     // "tcp" or "udp"
	HostIP      netip.Addr // only connections to this address; invalid: to any of the host's
	First, Last uint16     // the host's ports
	Guest       netip.Addr // inside the network's subnet or IPv6 prefix
	GuestPort   uint16     // the first of the guest's ports; the range is as long as the host's
}

// Validate reports why f cannot be a forward into subnet s (of Guest's family), or nil.
func (f PortForward) Validate(s netip.Prefix) error {
	switch {
	case f.Proto != "tcp" && f.Proto != "udp":
		return fmt.Errorf("forward %s: want tcp or udp", f.Proto)
	case f.First == 0 || f.Last < f.First || f.GuestPort == 0 || int(f.GuestPort)+int(f.Last-f.First) > 65535:
		return fmt.Errorf("forward %s %d-%d to port %d: bad port range", f.Proto, f.First, f.Last, f.GuestPort)
	case !s.Contains(f.Guest):
		return fmt.Errorf("forward %s %d to %s: not inside %s", f.Proto, f.First, f.Guest, s)
	case f.HostIP.IsValid() && f.HostIP.Is4() != f.Guest.Is4():
		return fmt.Errorf("forward %s %d: host address %s and guest %s are of two families", f.Proto, f.First, f.HostIP, f.Guest)
	case f.HostIP.Is6() && (f.HostIP.IsLoopback() || f.HostIP.IsMulticast() || f.HostIP.IsUnspecified()):
		return fmt.Errorf("forward %s %d: host address %s: IPv6 loopback cannot be forwarded (no route_localnet for IPv6)", f.Proto, f.First, f.HostIP)
	}
	return nil
}

// forwards are n's forwards of its family (see Network.ipv6).
func (n Network) forwards() []PortForward {
	var fs []PortForward
	for _, f := range n.Forwards {
		if f.Guest.Is6() == n.family6 {
			fs = append(fs, f)
		}
	}
	return fs
}

// loopback6 is the IPv6 loopback address, which a forward on every address
// leaves out: a connection from ::1 could not leave for the guest.
const loopback6 = "::1/128"

// Chains of the forwards, in the nat table: one jumped from PREROUTING
// (connections from elsewhere), one from OUTPUT (the host's own).
const (
	prefixPre = "KVMNET-PRE-"
	prefixOut = "KVMNET-OUT-"
)

// loopback is where the host's own loopback services listen.
const loopback = "127.0.0.0/8"

// dnatRules send each forward's host ports to its guest. Without a host
// address a forward takes connections to any address of the host's own
// (addrtype LOCAL: its uplink, the gateway, 127.0.0.1), as QEMU's hostfwd and
// Docker's -p do; over IPv6 but ::1. A range maps port by port: 8000-8010 to 9000-9010 is
// `--to-destination G:9000-9010/8000` (the kernel's offset mapping).
func dnatRules(n Network) [][]string {
	var rs [][]string
	for _, f := range n.forwards() {
		var m []string
		switch {
		case f.HostIP.IsValid():
			m = []string{"-d", hostAddr(f.HostIP), "-p", f.Proto}
		case n.family6:
			m = []string{"!", "-d", loopback6, "-p", f.Proto, "-m", "addrtype", "--dst-type", "LOCAL"}
		default:
			m = []string{"-p", f.Proto, "-m", "addrtype", "--dst-type", "LOCAL"}
		}
		ports := strconv.Itoa(int(f.First))
		to := f.Guest.String()
		if n.family6 {
			to = "[" + to + "]"
		}
		to += ":" + strconv.Itoa(int(f.GuestPort))
		if f.Last != f.First {
			ports += ":" + strconv.Itoa(int(f.Last))
			to += "-" + strconv.Itoa(int(f.GuestPort)+int(f.Last-f.First)) + "/" + strconv.Itoa(int(f.First))
		}
		m = append(m, "-m", f.Proto, "--dport", ports)
		rs = append(rs, rule(n, m, "-j", "DNAT", "--to-destination", to))
	}
	return rs
}

// forwardMasqRules come first in a network's POSTROUTING chain when it has
// forwards. Hairpin: a guest reaching a guest of its own subnet through the
// host's address must get the answer back through the host, so the
// connection leaves masqueraded as the gateway. Loopback: a connection the
// host opened from 127.0.0.1 leaves with the gateway's address instead,
// which the guest can answer (and the kernel routes 127.0.0.0/8 on the
// bridge at all only because of route_localnet, see loopbackGuard). IPv6
// has hairpin only.
func forwardMasqRules(n Network) [][]string {
	var rs [][]string
	s, b := n.Subnet.String(), n.Bridge
	if len(n.forwards()) > 0 {
		rs = append(rs, rule(n, slices.Concat([]string{"-s", s, "-d", s, "-o", b}, dnatted), "-j", "MASQUERADE"))
	}
	if !n.family6 && len(n.forwards()) > 0 {
		rs = append(rs, rule(n, []string{"-s", loopback, "-o", b}, "-j", "MASQUERADE"))
	}
	return rs
}

// dnatted matches connections whose destination a DNAT changed.
var dnatted = []string{"-m", "conntrack", "--ctstate", "DNAT"}

// loopbackGuard is the first rule of INPUT for a network with forwards. They
// need route_localnet on the bridge (so that a connection from 127.0.0.1 may
// leave through it, and its answers come back), which also lets the kernel
// take packets for 127.0.0.0/8 that arrive on the bridge: a guest could reach
// the host's loopback services (kube-proxy's CVE-2020-8558). The guard drops
// every such packet but the answers to the host's own connections. It is
// there while the network has IPv4 forwards, which is while lifecycle keeps
// route_localnet on (IPv6 has no route_localnet).
func loopbackGuard(n Network) [][]string {
	if len(n.forwards()) == 0 {
		return nil
	}
	return [][]string{rule(n, []string{"-d", loopback, "-i", n.Bridge, "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED"}, "-j", "DROP")}
}

// repliesOrForwarded is what a NAT network's guard lets into the bridge and its
// accept chain accepts: replies, and, with forwards, the forwarded connections.
func repliesOrForwarded(n Network) []string {
	if len(n.forwards()) == 0 {
		return replies
	}
	return []string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT"}
}
