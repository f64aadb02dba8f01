// Package vtepset is the set of VTEPs an EVPN network's VXLAN port accepts,
// `set inet kvmnet vtep-NAME` (package firewall declares it and the rule
// that looks it up), and the following of zebra's VTEPs that keeps it
// current. It is a base package so that both the rule engine (firewall),
// which makes the set, and the resident process (netsvc, the daemon or its
// watch-only role), which keeps its elements equal to the VTEPs zebra
// installed, reach the same set without importing each other or bridge.
package vtepset

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Prefix begins the set's name; the network's name ends it.
const Prefix = "vtep-"

// Set is network's VTEP set in kvmnet's table: IPv4 addresses, as the VXLAN
// link's socket and zebra's VTEPs are.
func Set(network string) *nftables.Set {
	return &nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "kvmnet"},
		Name: Prefix + network, KeyType: nftables.TypeIPAddr}
}

// Elements are vteps as the set's elements; addresses that are not IPv4
// have no place in it and are left out.
func Elements(vteps []netip.Addr) []nftables.SetElement {
	var es []nftables.SetElement
	for _, v := range vteps {
		if v.Is4() {
			a := v.As4()
			es = append(es, nftables.SetElement{Key: a[:]})
		}
	}
	return es
}

// ErrNoSet reports that network's set is not there: the network is down,
// its rules are the iptables backend's, or another program removed them
// (the rule watcher heals that, and Sync is then to be tried again).
var ErrNoSet = errors.New("no vtep set")

// Sync makes network's set hold exactly vteps, in one transaction: a
// datagram meets either the old set or the new one, never an empty one.
//
//	nft flush set inet kvmnet vtep-NAME; nft add element inet kvmnet vtep-NAME '{ A, B }'
func Sync(network string, vteps []netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	s := Set(network)
	c.FlushSet(s)
	if es := Elements(vteps); len(es) > 0 {
		if err := c.SetAddElements(s, es); err != nil {
			return fmt.Errorf("vtep set of %s: %w", network, err)
		}
	}
	if err := c.Flush(); errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("vtep set of %s: %w", network, ErrNoSet)
	} else if err != nil {
		return fmt.Errorf("vtep set of %s: %w", network, err)
	}
	return nil
}

// zeroMAC is the FDB address of zebra's VTEP entries: "every frame with no
// entry of its own goes to this VTEP too" (head-end replication).
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Remotes reads the VXLAN link's remote VTEPs: its all-zero FDB entries,
// which zebra adds and removes as hosts join and leave the overlay; sorted.
//
//	bridge fdb show dev NAME | grep ^00:00:00:00:00:00
func Remotes(vx netlink.Link) ([]netip.Addr, error) {
	all, err := netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	var vteps []netip.Addr
	for _, n := range all {
		ip, ok := netip.AddrFromSlice(n.IP)
		if n.LinkIndex == vx.Attrs().Index && ok && IsVTEP(n.HardwareAddr) {
			vteps = append(vteps, ip.Unmap())
		}
	}
	slices.SortFunc(vteps, netip.Addr.Compare)
	return slices.Compact(vteps), nil
}

// IsVTEP reports whether an FDB entry of a VXLAN link with this MAC names a
// remote VTEP rather than a remote guest.
func IsVTEP(mac net.HardwareAddr) bool { return slices.Equal(mac, zeroMAC) }
