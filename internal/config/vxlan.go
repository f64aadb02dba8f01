package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// VXLANPort is the IANA port of VXLAN. The kernel's own default (8472) is
// older than the RFC and speaks to no one else, so kvmnet always names a port.
const VXLANPort = 4789

// VXLAN is a network's overlay across hypervisors, [network.NAME.vxlan]: the
// network's bridge gets a VXLAN port that carries its frames to the peers.
type VXLAN struct {
	ID    VNI    `toml:"id"`
	Peers []Peer `toml:"peers"`
	Port  Port   `toml:"port"`  // 0: VXLANPort
	Local Peer   `toml:"local"` // the source address; zero: the route's
	Dev   IfName `toml:"dev"`   // the underlay link; "": the route's
	EVPN  bool   `toml:"evpn"`  // VTEPs and MACs from FRR's BGP EVPN, not Peers
}

// VNI is a VXLAN network identifier, 1 to 16777215 (24 bits; 0 is reserved).
type VNI uint32

// UnmarshalTOML accepts an integer from 1 to 16777215.
func (v *VNI) UnmarshalTOML(x any) error {
	n, ok := x.(int64)
	if !ok || n < 1 || n > 1<<24-1 {
		return fmt.Errorf("id %v: want a VNI, an integer from 1 to 16777215", x)
	}
	*v = VNI(n)
	return nil
}

// Port is a UDP port, 1 to 65535.
type Port uint16

// UnmarshalTOML accepts an integer from 1 to 65535.
func (p *Port) UnmarshalTOML(x any) error {
	n, ok := x.(int64)
	if !ok || n < 1 || n > 65535 {
		return fmt.Errorf("port %v: want a UDP port, an integer from 1 to 65535", x)
	}
	*p = Port(n)
	return nil
}

// Peer is a hypervisor's underlay address: a unicast IPv4 address that is
// neither unspecified, loopback, link-local, multicast nor broadcast.
type Peer struct{ netip.Addr }

// UnmarshalText checks the address with ParsePeer.
func (p *Peer) UnmarshalText(b []byte) error {
	a, err := ParsePeer(string(b))
	if err != nil {
		return err
	}
	p.Addr = a
	return nil
}

// ParsePeer checks s as an underlay address.
func ParsePeer(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("address %q: want an IPv4 address", s)
	}
	if !a.IsGlobalUnicast() {
		return netip.Addr{}, fmt.Errorf("address %q: not a unicast address another host can be reached at", s)
	}
	return a, nil
}

// Overlay is a network's VXLAN with its defaults filled in.
type Overlay struct {
	VNI    uint32
	Peers  []netip.Addr
	Port   int
	Local  netip.Addr // invalid: the route's source
	Dev    string     // "": the route's link
	Device string     // the VXLAN link kvmnet makes, e.g. vx-lab
	EVPN   bool       // FRR's zebra fills the FDB; Peers is empty
}

// overlay resolves v for the network called name; nil when v is.
func (v *VXLAN) overlay(name string) *Overlay {
	if v == nil {
		return nil
	}
	o := &Overlay{VNI: uint32(v.ID), Port: int(v.Port), Local: v.Local.Addr, Dev: string(v.Dev), Device: VXLANDevice(name), EVPN: v.EVPN}
	if o.Port == 0 {
		o.Port = VXLANPort
	}
	for _, p := range v.Peers {
		o.Peers = append(o.Peers, p.Addr)
	}
	return o
}

// VXLANDevice names the VXLAN link of a network: vx-NAME, or for a name
// longer than 12 bytes its first 7, a dash and 4 hex digits of a hash of the
// whole, so that it fits the kernel's 15 bytes and stays distinct.
func VXLANDevice(network string) string {
	if len(network) <= 12 {
		return "vx-" + network
	}
	var h uint32 = 2166136261 // FNV-1a
	for _, c := range []byte(network) {
		h = (h ^ uint32(c)) * 16777619
	}
	return fmt.Sprintf("vx-%s-%04x", network[:7], h&0xffff)
}

// check validates what decoding alone cannot: a VNI present, peers or evpn
// (never both), no peer twice, the local address not a peer.
func (v *VXLAN) check() error {
	if v.ID == 0 {
		return errors.New("id: missing: give the VNI, e.g. id = 4242")
	}
	if v.EVPN && len(v.Peers) > 0 {
		return errors.New("peers: with evpn = true FRR's BGP EVPN finds the other hypervisors: leave peers out, or evpn")
	}
	if v.EVPN {
		return nil
	}
	if len(v.Peers) == 0 {
		return errors.New("peers: missing: give the other hypervisors' underlay addresses, or evpn = true to have FRR's BGP EVPN find them")
	}
	seen := map[netip.Addr]bool{}
	for _, p := range v.Peers {
		if seen[p.Addr] {
			return fmt.Errorf("peers: %s given twice", p)
		}
		seen[p.Addr] = true
	}
	if v.Local.IsValid() && seen[v.Local.Addr] {
		return fmt.Errorf("peers: %s is also local, this host's own address", v.Local)
	}
	return nil
}

// checkVXLAN checks every network's overlay, and that no two networks share
// a VNI on one port (their frames would mix). Errors name the overlay's line.
func (f *File) checkVXLAN(b []byte) error {
	owner := map[[2]int]string{}
	for _, name := range f.names() {
		v := f.Networks[name].VXLAN
		if v == nil {
			continue
		}
		table := "network." + name + ".vxlan"
		if err := v.check(); err != nil {
			key, _, _ := strings.Cut(err.Error(), ":")
			return &netError{name, fmt.Errorf("%s: %s: %w", whereIn(f.Path, b, table, key), table, err)}
		}
		o := v.overlay(name)
		k := [2]int{int(o.VNI), o.Port}
		if prev, dup := owner[k]; dup {
			return f.conflict(b, name, "vxlan.id", fmt.Sprint(o.VNI), "want a VNI of its own on port %d, not network %s's: one VNI per network", o.Port, prev)
		}
		owner[k] = name
	}
	return nil
}
