package config

import (
	"fmt"
	"net/netip"
)

// Gateway6 is the host's IPv6 address on the bridge with the guests' prefix,
// e.g. fd00:6b76:6d6e::1/64.
type Gateway6 struct{ netip.Prefix }

// UnmarshalText accepts what ParseGateway6 does.
func (g *Gateway6) UnmarshalText(b []byte) error {
	p, err := ParseGateway6(string(b))
	if err != nil {
		return err
	}
	g.Prefix = p
	return nil
}

// ParseGateway6 checks an IPv6 address/prefix for use as a network's IPv6
// gateway. The prefix must be a /64: guests configure themselves by SLAAC,
// which forms an address from a /64 and the interface identifier (RFC 4862).
// Link-local, multicast, loopback and IPv4-mapped addresses are refused, as
// is the prefix's own first address (the subnet-router anycast address).
func ParseGateway6(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address6 %s: want an IPv6 address with prefix, like fd00:6b76:6d6e::1/64", Quote(s))
	}
	a := p.Addr()
	switch {
	case p.Bits() != 64:
		return netip.Prefix{}, fmt.Errorf("address6 %s: prefix length must be 64 (SLAAC needs a /64)", Quote(s))
	case a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback() || a.IsUnspecified():
		return netip.Prefix{}, fmt.Errorf("address6 %s: link-local, multicast, loopback or unspecified: want a global or ULA (fd00::/8) address", Quote(s))
	case a == p.Masked().Addr():
		return netip.Prefix{}, fmt.Errorf("address6 %s: host bits are zero (the subnet-router anycast address): want the gateway's address, like %s", Quote(s), p.Masked().Addr().Next())
	}
	return p, nil
}

// Addr6 is an IPv6 address of a static host.
type Addr6 struct{ netip.Addr }

// UnmarshalText accepts an IPv6 address without a zone.
func (a *Addr6) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddr(string(b))
	if err != nil || !v.Is6() || v.Is4In6() || v.Zone() != "" {
		return fmt.Errorf("address %s: want an IPv6 address", Quote(string(b)))
	}
	a.Addr = v
	return nil
}

// checkHost6 checks static host i's ip6: an address of the network's IPv6
// prefix, not the gateway's or the prefix's first, and not another host's.
func (n *Network) checkHost6(i int, seen map[string]int) error {
	h := n.Hosts[i]
	if !h.IP6.IsValid() {
		return nil
	}
	ip := h.IP6.Addr
	switch sub := n.Address6.Masked(); {
	case !n.Address6.IsValid():
		return keyErrorf("host.ip6", sameIP(ip), "%s: the network has no address6", ip)
	case !sub.Contains(ip) || ip == n.Address6.Addr() || ip == sub.Addr():
		return keyErrorf("host.ip6", sameIP(ip), "%s is not a guest address of %s", ip, n.Address6)
	}
	key := "host.ip6=" + ip.String()
	if prev, dup := seen[key]; dup {
		e := keyErrorf("host.ip6", sameIP(ip), "%s is also host %s's", Quote(ip.String()), n.Hosts[prev].MAC)
		e.nth = 2
		return e
	}
	seen[key] = i
	return nil
}

// checkShared6 rejects two networks with the same IPv6 prefix. Every
// address6 is a /64, so prefixes overlap exactly when they are equal.
func (f *File) checkShared6(b []byte) error {
	seen := map[netip.Prefix]string{}
	for _, name := range f.names() {
		n := f.Networks[name]
		if !n.Address6.IsValid() {
			continue
		}
		sub := n.Address6.Masked()
		if prev, dup := seen[sub]; dup {
			other, blamed := blame(b, prev, name, "address6")
			return f.conflict(b, blamed, "address6", f.Networks[blamed].Address6.String(), "want a prefix of its own: %s is network %s's", sub, other)
		}
		seen[sub] = name
	}
	return nil
}
