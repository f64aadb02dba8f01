package netsvc

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// AAAA answers. A guest's IPv6 address is of its own making (SLAAC), so the
// forwarder learns it rather than assigns it: a static host's is its ip6; a
// guest with a lease has the addresses in the network's prefix that the
// bridge's neighbour table maps to its MAC. The neighbour table is the
// kernel's own record of which address a MAC answers for, whatever scheme
// made the address (EUI-64, RFC 7217 stable privacy, temporary), and holds
// only addresses in use; guessing EUI-64 from the MAC would answer wrong
// addresses for guests that use stable privacy, as NetworkManager does by
// default. What it does not know is a guest the host has not talked IPv6
// with yet: the first packet it routes for the guest puts it there.

// neighbours6 returns the IPv6 addresses in prefix that the link's neighbour
// table maps to mac, in a stable order; failed and incomplete entries do not count.
//
//	ip -6 neigh show dev BRIDGE | grep MAC
func neighbours6(ifindex int, prefix netip.Prefix, mac net.HardwareAddr) []netip.Addr {
	ns, err := netlink.NeighList(ifindex, netlink.FAMILY_V6)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || !prefix.Contains(ip) || !bytes.Equal(n.HardwareAddr, mac) ||
			n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// addrs6 returns the IPv6 addresses of a guest name, when the network has IPv6.
func (d *dnsd) addrs6(name string) []netip.Addr {
	if !d.prefix6.IsValid() {
		return nil
	}
	ip6, mac, ok := d.pool.lookup6(name, d.now())
	switch {
	case !ok:
		return nil
	case ip6.IsValid():
		return []netip.Addr{ip6}
	case d.neighbours == nil:
		return nil
	}
	return d.neighbours(d.prefix6, mac)
}

// lookup6 returns a guest name's static ip6 (invalid when it has none) and
// the MAC of the static host or of the live lease that holds the name.
func (p *pool) lookup6(name string, now time.Time) (netip.Addr, net.HardwareAddr, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if h, ok := p.staticByName[name]; ok {
		return h.IP6, h.MAC, true
	}
	if r := p.byName[name]; r != nil && r.bound && r.active(now) {
		return netip.Addr{}, r.mac, true
	}
	return netip.Addr{}, nil, false
}
