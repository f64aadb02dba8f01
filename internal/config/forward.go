package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Forward is one [[network.NAME.forward]]: connections to a port of the host
// go to a port of a guest (DNAT), as QEMU's hostfwd or Docker's -p.
type Forward struct {
	Proto  string    `toml:"proto"`   // "tcp" or "udp"
	Port   PortRange `toml:"port"`    // the host's port or range
	To     string    `toml:"to"`      // "ADDRESS:PORT", "[IPV6]:PORT" or "HOSTNAME:PORT", PORT a range as long as Port's
	HostIP HostAddr  `toml:"host_ip"` // only connections to this host address; unset: any of the host's

	// To's addresses, a static host's name resolved: IPv4, IPv6 or both (a
	// host with ip and ip6 and no host_ip: the forward is made in both families).
	guest, guest6 netip.Addr
	first         uint16 // To's first port
}

// HostAddr is a forward's host address, IPv4 or IPv6.
type HostAddr struct{ netip.Addr }

// UnmarshalText accepts an IPv4 or IPv6 address without a zone. IPv6
// loopback is refused: a connection from ::1 cannot leave for a guest, as
// Linux has no route_localnet for IPv6.
func (a *HostAddr) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddr(string(b))
	if err != nil || v.Is4In6() || v.Zone() != "" {
		return fmt.Errorf("address %s: want an IPv4 or IPv6 address", Quote(string(b)))
	}
	if v.Is6() && (v.IsLoopback() || v.IsMulticast() || v.IsUnspecified()) {
		return fmt.Errorf("address %s: IPv6 loopback, multicast or unspecified cannot be forwarded (Linux has no route_localnet for IPv6)", Quote(string(b)))
	}
	a.Addr = v
	return nil
}

// PortRange is a port, 8080, or a range, "8000-8010".
type PortRange struct{ First, Last uint16 }

// Size is how many ports the range holds.
func (r PortRange) Size() int { return int(r.Last) - int(r.First) + 1 }

// String spells the range as the file does: "8080" or "8000-8010".
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// UnmarshalTOML accepts an integer port or a string "PORT" or "FIRST-LAST".
func (r *PortRange) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 1 || x > 65535 {
			return fmt.Errorf("port %d: want 1 to 65535", x)
		}
		*r = PortRange{uint16(x), uint16(x)}
		return nil
	case string:
		p, err := ParsePortRange(x)
		if err != nil {
			return err
		}
		*r = p
		return nil
	}
	return fmt.Errorf("port %s: want a port (8080) or a range (\"8000-8010\")", Quote(fmt.Sprint(v)))
}

// ParsePortRange reads "8080" or "8000-8010", ports 1 to 65535, first ≤ last.
func ParsePortRange(s string) (PortRange, error) {
	bad := fmt.Errorf("port %s: want a port from 1 to 65535 or a range like \"8000-8010\"", Quote(s))
	a, b, isRange := strings.Cut(s, "-")
	first, err := strconv.ParseUint(a, 10, 16)
	if err != nil || first == 0 {
		return PortRange{}, bad
	}
	last := first
	if isRange {
		if last, err = strconv.ParseUint(b, 10, 16); err != nil || last == 0 {
			return PortRange{}, bad
		}
	}
	if last < first {
		return PortRange{}, fmt.Errorf("port range %s: ends before it starts", Quote(s))
	}
	return PortRange{uint16(first), uint16(last)}, nil
}

// PortForward is a forward with its guest resolved: what the helpers act on.
type PortForward struct {
	Proto   string     // "tcp" or "udp"
	HostIP  netip.Addr // invalid: any address of the host
	Ports   PortRange  // the host's
	Guest   netip.Addr
	ToFirst uint16 // the guest's first port; the guest's range is as long as Ports
}

// String is the forward as status prints it: "tcp 8080 -> 192.168.100.21:80",
// "tcp 8080 -> [fd00::21]:80".
func (f PortForward) String() string {
	host := f.Ports.String()
	if f.HostIP.IsValid() {
		host = HostPort(f.HostIP, host)
	}
	to := PortRange{f.ToFirst, f.ToFirst + f.Ports.Last - f.Ports.First}
	return fmt.Sprintf("%s %s -> %s", f.Proto, host, HostPort(f.Guest, to.String()))
}

// HostPort joins an address and a port (range) as "192.168.100.21:80" or "[fd00::21]:80".
func HostPort(a netip.Addr, port string) string {
	if a.Is6() {
		return "[" + a.String() + "]:" + port
	}
	return a.String() + ":" + port
}

// checkForward checks forward i: a nat network's, tcp or udp, a guest address
// of the subnet (or a static host's name) with a port range as long as the
// host's. It resolves the guest.
func (n *Network) checkForward(i int) error {
	f := &n.Forwards[i]
	ke := func(key, format string, a ...any) error {
		e := keyErrorf("forward."+key, nil, format, a...)
		e.forward = i + 1
		return e
	}
	if n.Mode != "" && n.Mode != NAT {
		return ke("to", "a forward needs a nat network, this one is %s", n.Mode)
	}
	if f.Proto != "tcp" && f.Proto != "udp" {
		return ke("proto", "proto %s: want \"tcp\" or \"udp\"", Quote(f.Proto))
	}
	if f.Port.First == 0 {
		return ke("port", "a forward needs port and to")
	}
	host, port, err := net.SplitHostPort(f.To)
	if err != nil {
		return ke("to", "%s: want ADDRESS:PORT, [IPV6]:PORT or HOSTNAME:PORT, like \"192.168.100.21:80\"", Quote(f.To))
	}
	to, err := ParsePortRange(port)
	if err != nil {
		return ke("to", "%s: %s", Quote(f.To), err.Error())
	}
	if to.Size() != f.Port.Size() {
		return ke("to", "%s: %d ports, but port %s has %d: a range maps to a range of the same size", Quote(f.To), to.Size(), f.Port, f.Port.Size())
	}
	if f.guest, f.guest6, err = n.guestAddrs(host, f.HostIP.Addr); err != nil {
		key := "to"
		if errors.Is(err, errHostFamily) {
			key = "host_ip"
		}
		return ke(key, "%s: %s", Quote(f.To), err.Error())
	}
	f.first = to.First
	return nil
}

// errHostFamily marks a host_ip whose family the forward's guest lacks.
var errHostFamily = errors.New("host_ip and the guest must be of one family")

// guestAddrs resolves a forward's guest to its IPv4 and IPv6 addresses: a
// literal is one of them; a static host's name is its ip and ip6, of which a
// host_ip keeps only its own family's.
func (n *Network) guestAddrs(s string, hostIP netip.Addr) (v4, v6 netip.Addr, err error) {
	if a, perr := netip.ParseAddr(s); perr == nil && a.Is6() && !a.Is4In6() {
		if v6, err = n.guestAddr6(a); err != nil {
			return v4, v6, err
		}
		if hostIP.Is4() {
			return v4, v6, fmt.Errorf("%w: host_ip %s is IPv4, %s IPv6", errHostFamily, hostIP, a)
		}
		return v4, v6, nil
	}
	for _, h := range n.Hosts {
		if h.Name != "" && strings.EqualFold(h.Name, s) {
			v4, v6 = h.IP.Addr, h.IP6.Addr
			switch {
			case hostIP.Is4():
				v6 = netip.Addr{}
			case hostIP.Is6() && !v6.IsValid():
				return v4, v6, fmt.Errorf("%w: host_ip %s is IPv6, host %s has no ip6", errHostFamily, hostIP, h.Name)
			case hostIP.Is6():
				v4 = netip.Addr{}
			}
			return v4, v6, nil
		}
	}
	if v4, err = n.guestAddr(s); err == nil && hostIP.Is6() {
		err = fmt.Errorf("%w: host_ip %s is IPv6, %s IPv4", errHostFamily, hostIP, v4)
	}
	return v4, v6, err
}

// guestAddr6 checks an IPv6 guest address: inside the network's address6
// prefix, neither the gateway nor the prefix's first address.
func (n *Network) guestAddr6(a netip.Addr) (netip.Addr, error) {
	sub := n.Address6.Masked()
	switch {
	case !n.Address6.IsValid():
		return a, fmt.Errorf("%s: the network has no IPv6 prefix (set address6)", a)
	case a.Zone() != "":
		return a, fmt.Errorf("%s: want an address without a zone", a)
	case !sub.Contains(a):
		return a, fmt.Errorf("%s is outside the network's IPv6 prefix %s", a, sub)
	case a == n.Address6.Addr():
		return a, fmt.Errorf("%s is the gateway, not a guest", a)
	case a == sub.Addr():
		return a, fmt.Errorf("%s is the subnet-router anycast address of %s, not a guest's", a, sub)
	}
	return a, nil
}

// guestAddr resolves a forward's guest: an address of the subnet that is a
// guest's (not the gateway, network or broadcast address), or a static host's name.
func (n *Network) guestAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		for _, h := range n.Hosts {
			if h.Name != "" && strings.EqualFold(h.Name, s) {
				return h.IP.Addr, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("%s is neither an IP address nor a static host of the network", Quote(s))
	}
	sub := n.Address.Masked()
	switch {
	case !a.Is4():
		return a, fmt.Errorf("%s: want an IPv4 address", a)
	case !n.Address.IsValid():
		return a, fmt.Errorf("the network has no address (set address)")
	case !sub.Contains(a):
		return a, fmt.Errorf("%s is outside the network's subnet %s", a, sub)
	case a == n.Address.Addr():
		return a, fmt.Errorf("%s is the gateway, not a guest", a)
	case a == sub.Addr() || a == lastAddr(sub):
		return a, fmt.Errorf("%s is the network or broadcast address of %s, not a guest's", a, sub)
	}
	return a, nil
}

// resolved is the forward as the helpers take it, one per family of its
// guest (IPv4 first); checkForward must have passed.
func (f Forward) resolved() []PortForward {
	var fs []PortForward
	for _, g := range []netip.Addr{f.guest, f.guest6} {
		if g.IsValid() {
			fs = append(fs, PortForward{Proto: f.Proto, HostIP: f.HostIP.Addr, Ports: f.Port, Guest: g, ToFirst: f.first})
		}
	}
	return fs
}

// claim is a forward's hold on host ports, for finding two forwards that claim one.
type claim struct {
	network string
	index   int // in the network's forwards
	f       PortForward
}

// overlaps reports whether two forwards could both take one connection: one
// family and protocol, overlapping ports, and the same host address or either on all.
func (c claim) overlaps(o claim) bool {
	return c.f.Guest.Is4() == o.f.Guest.Is4() && c.f.Proto == o.f.Proto && c.f.Ports.First <= o.f.Ports.Last && o.f.Ports.First <= c.f.Ports.Last &&
		(!c.f.HostIP.IsValid() || !o.f.HostIP.IsValid() || c.f.HostIP == o.f.HostIP)
}

// checkForwardClaims refuses two forwards, of one network or two, that claim
// the same host port for the same protocol and address. Files hold few
// forwards, so every pair is compared.
func (f *File) checkForwardClaims(b []byte, names []string) error {
	var all []claim
	for _, name := range names {
		for i, fw := range f.Networks[name].Forwards {
			var mine []claim
			for _, pf := range fw.resolved() {
				c := claim{name, i, pf}
				for _, o := range all {
					if c.overlaps(o) {
						return &netError{name, fmt.Errorf("%s: network.%s.forward.port: %s %s is already forwarded by network %s's forward %d (%s)",
							forwardWhere(f.Path, b, name, i+1, "port"), name, c.f.Proto, fw.Port, o.network, o.index+1, o.f)}
					}
				}
				mine = append(mine, c)
			}
			all = append(all, mine...)
		}
	}
	return nil
}

// forwardWhere is "path:line" of key in the nth [[network.NAME.forward]]
// table (1 the first), else of the table's header, else of the network.
func forwardWhere(path string, b []byte, network string, nth int, key string) string {
	header := "[[network." + network + ".forward]]"
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, MaxFileSize+1)
	seen, at := 0, 0
	for line := 1; sc.Scan(); line++ {
		t := strings.ReplaceAll(strings.TrimSpace(sc.Text()), " ", "")
		if strings.HasPrefix(t, "[") {
			if seen == nth {
				break
			}
			if t == header || strings.HasPrefix(t, header+"#") {
				if seen++; seen == nth {
					at = line
				}
			}
			continue
		}
		if seen != nth {
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && k == key {
			return fmt.Sprintf("%s:%d", path, line)
		}
	}
	if at > 0 {
		return fmt.Sprintf("%s:%d", path, at)
	}
	return where(path, b, "network."+network)
}
