// Package portguard is the per-port state of a network's guard table, `table
// bridge kvmnet-NAME` (package firewall makes its rules): the sets that the
// packet path fills as guests send, the DHCP daemon's leases, and the
// forgetting of ports that left. It is a base package so that both the rule
// engine (firewall) and the DHCP daemon (netsvc) reach the same sets without
// importing each other; it knows the table's names and nothing of its rules.
//
// State is keyed by ifindex (`meta iif`), never by name: the kernel gives a
// new link a new index (it reuses one only after all 2^31 were given), so a
// reused tap name never inherits an old owner's MAC or address.
package portguard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"
)

// Set names in the guard table. A port owns one MAC (PortMAC, with the MAC
// in MACs and the port in MACPorts, so that the packet path can ask "is this
// MAC anyone's" and "has this port one" each in one lookup) and, on nat and
// hostonly, one IPv4 address (PortIP, IPs, IPPorts). Leases pairs a MAC with
// the address kvmnet's DHCP leased it (or a static host's), Leased their
// addresses.
const (
	PortMAC  = "port_mac"  // iface_index . ether_addr
	MACs     = "macs"      // ether_addr
	MACPorts = "mac_ports" // iface_index
	PortIP   = "port_ip"   // iface_index . ipv4_addr
	IPs      = "ips"       // ipv4_addr
	IPPorts  = "ip_ports"  // iface_index
	Leases   = "leases"    // ether_addr . ipv4_addr, with timeouts
	Leased   = "leased"    // ipv4_addr, with timeouts
)

// Table is network's guard table: `table bridge kvmnet-NAME`.
func Table(network string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyBridge, Name: "kvmnet-" + network}
}

// Group is the device group (`ip link set PORT group G`) of every port
// kvmnet attaches to network's bridge, which is how the guard table tells
// them (`meta iifgroup`) from the bridge's other ports (an uplink, the
// admin's) and from other bridges' ports: the bridge family has no match on
// a port's bridge without nft_meta_bridge, which not every kernel has. The
// high bit keeps it clear of the small groups admins number by hand; the
// rest is FNV-1a of the name, so that a front computes it alone.
func Group(network string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(network); i++ {
		h ^= uint32(network[i])
		h *= 16777619
	}
	return 1<<31 | h&(1<<31-1)
}

// Key types of the sets, as nft declares them.
var (
	portMACType = nftables.MustConcatSetType(nftables.TypeIFIndex, nftables.TypeEtherAddr)
	portIPType  = nftables.MustConcatSetType(nftables.TypeIFIndex, nftables.TypeIPAddr)
	leaseType   = nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIPAddr)
)

// learnedMax is the most elements a learned set holds (`size` in nft's
// terms): twice the most ports a bridge can have (the kernel's
// BR_MAX_PORTS, 1024), each of which learns one MAC and, leases aside, one
// address; the rest is for ports gone but not yet forgotten. A frame that
// would learn beyond it learns nothing: a MAC passes unlearned, an address
// is dropped.
//
// It is also the kernel's first guess at the set's size: nf_tables gives a
// dynamic set a hash table sized for `size` elements when it is made, a
// bucket array of 8 bytes per 0.75 element rounded up to a power of two,
// zeroed. 65535 made that 1 MiB per set, six of them, 6 MiB per network's
// first up: 25 ms of clear_page in its nf_tables batch on a loaded 2-core
// VM, the largest part of a cold up (docs/speed.md). 2048 takes 32 KiB
// each; the table still grows on its own past 75 % full.
const learnedMax = 2048

// Sets are the guard table's sets, empty, as Ensure declares them: the
// learned ones dynamic (the packet path adds to them), the leases with
// per-element timeouts. routed: nat or hostonly, which have the IPv4 ones.
// A table made by an older kvmnet keeps its sets' size until it is made
// anew (Ensure adds only the sets that are missing).
func Sets(network string, routed bool) []*nftables.Set {
	t := Table(network)
	dyn := func(name string, key nftables.SetDatatype) *nftables.Set {
		s := &nftables.Set{Table: t, Name: name, KeyType: key, Dynamic: true, Size: learnedMax,
			Concatenation: len(nftables.ConcatSetTypeElements(key)) > 1}
		if key == nftables.TypeIFIndex {
			s.KeyByteOrder = binaryutil.NativeEndian // as `meta iif` loads it: nft lists names, not numbers
		}
		return s
	}
	sets := []*nftables.Set{dyn(PortMAC, portMACType), dyn(MACs, nftables.TypeEtherAddr), dyn(MACPorts, nftables.TypeIFIndex)}
	if !routed {
		return sets
	}
	return append(sets, dyn(PortIP, portIPType), dyn(IPs, nftables.TypeIPAddr), dyn(IPPorts, nftables.TypeIFIndex),
		&nftables.Set{Table: t, Name: Leases, KeyType: leaseType, Concatenation: true, HasTimeout: true},
		&nftables.Set{Table: t, Name: Leased, KeyType: nftables.TypeIPAddr, HasTimeout: true})
}

// pad4 rounds a concatenation's field up to nf_tables' 32-bit registers.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// IfindexKey is an ifindex as `meta iif` loads it: host byte order.
func IfindexKey(i int) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(i)) }

// MACKey is a MAC as a concatenation's field: padded to 32 bits.
func MACKey(mac net.HardwareAddr) []byte { return pad4(append([]byte(nil), mac...)) }

// LeaseKey is a Leases element's key: MAC, padded, then address.
func LeaseKey(mac net.HardwareAddr, ip netip.Addr) []byte {
	a := ip.As4()
	return append(MACKey(mac), a[:]...)
}

// Lease tells network's guard that the DHCP daemon leased ip to mac for
// ttl: the guest may send from ip until the lease ends (a renewal extends
// it). A network with no guard table (guard off, or not up) is no error:
// committed is false then, as the kernel committed nothing.
//
//	nft add element bridge kvmnet-NAME leases '{ MAC . IP timeout TTL }'
//	nft add element bridge kvmnet-NAME leased '{ IP timeout TTL }'
func Lease(network string, mac net.HardwareAddr, ip netip.Addr, ttl time.Duration) (committed bool, err error) {
	if len(mac) != 6 || !ip.Is4() || ttl <= 0 {
		return false, fmt.Errorf("guard lease %s %s: want a MAC, an IPv4 address and a lease time", mac, ip)
	}
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	t := Table(network)
	leases := &nftables.Set{Table: t, Name: Leases, KeyType: leaseType, HasTimeout: true}
	leased := &nftables.Set{Table: t, Name: Leased, KeyType: nftables.TypeIPAddr, HasTimeout: true}
	a := ip.As4()
	if err := c.SetAddElements(leases, []nftables.SetElement{{Key: LeaseKey(mac, ip), Timeout: ttl}}); err != nil {
		return false, err
	}
	if err := c.SetAddElements(leased, []nftables.SetElement{{Key: a[:], Timeout: ttl}}); err != nil {
		return false, err
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("guard lease %s %s on %s: %w", mac, ip, network, err)
	}
	return true, nil
}

// Port is what a port owns: its MAC and (nat, hostonly) IPv4 address, as
// the packet path learned them.
type Port struct {
	Index int
	MAC   net.HardwareAddr // nil: none yet
	IP    netip.Addr       // invalid: none yet
}

// Ports lists the ports network's guard has learned, by ifindex; a network
// with no guard table has none.
//
//	nft list set bridge kvmnet-NAME port_mac; nft list set … port_ip
func Ports(network string) (map[int]*Port, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return ports(c, Table(network))
}

func ports(c *nftables.Conn, t *nftables.Table) (map[int]*Port, error) {
	ps := map[int]*Port{}
	// Only the sets that exist: an isolated network has no address sets,
	// a network with the guard off no table at all, and the library's
	// errors do not all let ENOENT through.
	have := map[string]bool{}
	if tb, err := c.ListTableOfFamily(t.Name, t.Family); err != nil || tb == nil {
		return ps, nil
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets of bridge %s: %w", t.Name, err)
	}
	for _, s := range sets {
		have[s.Name] = true
	}
	port := func(key []byte) *Port {
		i := int(binary.NativeEndian.Uint32(key[:4]))
		if ps[i] == nil {
			ps[i] = &Port{Index: i}
		}
		return ps[i]
	}
	for _, name := range []string{PortMAC, PortIP} {
		if !have[name] {
			continue
		}
		els, err := c.GetSetElements(&nftables.Set{Table: t, Name: name})
		if err != nil {
			return nil, fmt.Errorf("list set bridge %s %s: %w", t.Name, name, err)
		}
		for _, e := range els {
			switch {
			case name == PortMAC && len(e.Key) >= 10:
				port(e.Key).MAC = net.HardwareAddr(append([]byte(nil), e.Key[4:10]...))
			case name == PortIP && len(e.Key) >= 8:
				port(e.Key).IP = netip.AddrFrom4([4]byte(e.Key[4:8]))
			}
		}
	}
	return ps, nil
}

// Forget deletes, in one batch, what network's guard learned of ports whose
// link is gone, so that a new port (a VM started again, with its MAC and
// address) may learn them; it reports how many ports it forgot. alive
// reports whether an ifindex is a link still; nil asks the kernel.
//
//	nft delete element bridge kvmnet-NAME port_mac '{ IIF . MAC }' (and macs, mac_ports, port_ip, ips, ip_ports)
func Forget(network string, alive func(int) bool) (int, error) {
	if alive == nil {
		alive = linkExists
	}
	c, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	t := Table(network)
	ps, err := ports(c, t)
	if err != nil || len(ps) == 0 {
		return 0, err
	}
	del := func(set string, key []byte) {
		// The set exists: ports found an element of this family in it.
		_ = c.SetDeleteElements(&nftables.Set{Table: t, Name: set}, []nftables.SetElement{{Key: key}})
	}
	gone := 0
	for i, p := range ps {
		if alive(i) {
			continue
		}
		gone++
		if p.MAC != nil {
			del(PortMAC, append(IfindexKey(i), MACKey(p.MAC)...))
			del(MACs, p.MAC) // a key of its own: not padded
			del(MACPorts, IfindexKey(i))
		}
		if p.IP.IsValid() {
			a := p.IP.As4()
			del(PortIP, append(IfindexKey(i), a[:]...))
			del(IPs, a[:])
			del(IPPorts, IfindexKey(i))
		}
	}
	if gone == 0 {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("forget gone ports of %s: %w", network, err)
	}
	return gone, nil
}

// linkExists reports whether ifindex i names a link (`ip link show index I`):
// SIOCGIFNAME, one ioctl, no dump of every link.
func linkExists(i int) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true // cannot tell: forget nothing
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return true
	}
	ifr.SetUint32(uint32(i))
	err = unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr)
	return !errors.Is(err, unix.ENODEV)
}
