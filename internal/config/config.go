// Package config reads kvmnet's configuration: named networks, each a bridge
// with a mode, a gateway address and the services kvmnet runs on it.
//
// The file is TOML (github.com/BurntSushi/toml). Every value is checked while it
// is decoded, so an error names the file, the line and the bad value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where kvmnet looks for its configuration.
const DefaultPath = "/etc/kvmnet/kvmnet.toml"

// EnvPath names the environment variable that points kvmnet at another file.
// It is honoured only when the caller is really root (real uid 0), so that a
// helper made setuid or given capabilities cannot be pointed at a file of the
// caller's choosing.
const EnvPath = "KVMNET_CONFIG"

// DefaultNetwork is the network a helper uses when its name carries none.
const DefaultNetwork = "default"

// Mode is how a network reaches the world.
type Mode string

const (
	// Isolated: guests reach each other only; the host has no address on the bridge.
	Isolated Mode = "isolated"
	// HostOnly: guests reach each other and the host's address on the bridge, nothing beyond.
	HostOnly Mode = "hostonly"
	// NAT: as HostOnly, and guests reach the world through the host, masqueraded.
	NAT Mode = "nat"
	// Bridged: guests join a bridge the admin made (carrying a NIC and the
	// host's address); kvmnet only attaches and detaches taps.
	Bridged Mode = "bridged"
)

// UnmarshalText accepts the mode names, and "host-only" as VMware and VirtualBox spell it.
func (m *Mode) UnmarshalText(b []byte) error {
	switch s := strings.ToLower(string(b)); s {
	case "isolated", "hostonly", "nat", "bridged":
		*m = Mode(s)
	case "host-only":
		*m = HostOnly
	default:
		return fmt.Errorf("mode %s: want isolated, hostonly, nat or bridged", Quote(string(b)))
	}
	return nil
}

// Routed reports whether the host has an address on the network's bridge.
func (m Mode) Routed() bool { return m == HostOnly || m == NAT }

// Ports is which links a network's helpers attach to its bridge.
type Ports string

const (
	// TapPorts: only tun/tap links, as QEMU and libvirt make them, so that a
	// helper handed the host's uplink or another program's link refuses it.
	TapPorts Ports = "tap"
	// AnyPorts: any link but a bridge, e.g. a veth to a container.
	AnyPorts Ports = "any"
)

// UnmarshalText accepts "tap" and "any".
func (p *Ports) UnmarshalText(b []byte) error {
	switch s := Ports(b); s {
	case TapPorts, AnyPorts:
		*p = s
	default:
		return fmt.Errorf("ports %q: want tap or any", b)
	}
	return nil
}

// Gateway is the host's address on the bridge with the network's prefix, e.g. 192.168.100.1/24.
type Gateway struct{ netip.Prefix }

// UnmarshalText accepts an IPv4 address with a prefix length of 8 to 30.
func (g *Gateway) UnmarshalText(b []byte) error {
	p, err := ParseGateway(string(b))
	if err != nil {
		return err
	}
	g.Prefix = p
	return nil
}

// ParseGateway checks an address/prefix for use as a network's gateway.
func ParseGateway(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("address %s: want an IPv4 address with prefix, like 192.168.100.1/24", Quote(s))
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("address %s: prefix length must be 8 to 30", Quote(s))
	}
	if p.Addr() == p.Masked().Addr() || p.Addr() == lastAddr(p) {
		return netip.Prefix{}, fmt.Errorf("address %s: is the network or broadcast address, not a host", Quote(s))
	}
	return p, nil
}

// MTU is a link MTU; zero means "leave as the kernel makes it" (1500).
type MTU int

// The MTUs a network may have. MinMTU is the datagram every IPv4 host must
// take (RFC 791). MaxMTU is the largest a tap takes (Linux's tun sets a
// tap's max_mtu to 65535 less its 14-byte Ethernet header); a bridge takes up
// to 65535, but every port of a kvmnet bridge is a tap given the bridge's MTU.
const (
	MinMTU = 576
	MaxMTU = 65521
)

// UnmarshalTOML accepts an integer from MinMTU to MaxMTU.
func (m *MTU) UnmarshalTOML(v any) error {
	n, ok := v.(int64)
	if !ok || n < MinMTU || n > MaxMTU {
		text := strconv.FormatInt(n, 10)
		if !ok {
			text = Quote(fmt.Sprint(v))
		}
		return fmt.Errorf("mtu %s: want an integer from %d to %d", text, MinMTU, MaxMTU)
	}
	*m = MTU(n)
	return nil
}

// IfName is an interface name as the kernel accepts it: 1 to 15 bytes, no '/', ':' or white space.
type IfName string

// UnmarshalText checks the name with CheckIfName.
func (n *IfName) UnmarshalText(b []byte) error {
	if err := CheckIfName(string(b)); err != nil {
		return err
	}
	*n = IfName(b)
	return nil
}

// BridgeName is a bridge's name: an interface name that is also safe inside
// an iptables rule, so no '+' (iptables reads it as a wildcard), no leading '-'
// and nothing but letters, digits, '_', '.' and '-'.
type BridgeName string

// UnmarshalText checks the name with CheckBridgeName.
func (n *BridgeName) UnmarshalText(b []byte) error {
	if err := CheckBridgeName(string(b)); err != nil {
		return err
	}
	*n = BridgeName(b)
	return nil
}

// CheckBridgeName reports why s cannot name a bridge kvmnet writes rules for.
func CheckBridgeName(s string) error {
	if err := CheckIfName(s); err != nil {
		return err
	}
	if s[0] == '-' {
		return fmt.Errorf("bridge name %s starts with '-'", Quote(s))
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("bridge name %s: want letters, digits, '_', '.' and '-' only", Quote(s))
		}
	}
	return nil
}

// CheckIfName reports why s cannot be a Linux interface name, if it cannot.
// Beyond the kernel's rules it refuses control characters and bytes that do
// not print (invalid UTF-8, zero-width and direction marks): a name goes into
// logs and messages, where such bytes could forge or hide text.
func CheckIfName(s string) error {
	switch {
	case s == "":
		return errors.New("interface name is empty")
	case len(s) > 15:
		return fmt.Errorf("interface name %s is longer than 15 bytes", Quote(s))
	case s == "." || s == "..":
		return fmt.Errorf("interface name %s is not allowed", Quote(s))
	case strings.ContainsAny(s, "/:") || strings.IndexFunc(s, isSpace) >= 0:
		return fmt.Errorf("interface name %s contains '/', ':' or white space", Quote(s))
	case !printable(s):
		return fmt.Errorf("interface name %s contains a control character or a byte that does not print", Quote(s))
	}
	return nil
}

// printable reports whether s is valid UTF-8 of printable characters only.
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// maxEcho is how many bytes of a value a message repeats.
const maxEcho = 40

// Quote is s as %q prints it, cut to its first 40 bytes and then marked
// with "…" and its length, so that an error or a log line naming a value
// stays one short line however long the value is.
func Quote(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// CheckNetworkName reports why s cannot name a network. Names are short and
// plain because they become parts of iptables chain names (at most 28 bytes).
func CheckNetworkName(s string) error {
	if !validNetworkName(s) {
		return fmt.Errorf("network name %s: want 1 to 15 of a-z 0-9 _ -, starting with a letter or digit", Quote(s))
	}
	return nil
}

// Duration is a time.Duration written as "1h", "30m".
type Duration struct{ time.Duration }

// UnmarshalText accepts a Go duration of at least a minute.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < time.Minute {
		return fmt.Errorf("duration %s: want e.g. \"1h\" or \"30m\", at least 1m", Quote(string(b)))
	}
	d.Duration = v
	return nil
}

// Addr is an IPv4 address.
type Addr struct{ netip.Addr }

// UnmarshalText accepts a dotted-quad IPv4 address.
func (a *Addr) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddr(string(b))
	if err != nil || !v.Is4() {
		return fmt.Errorf("address %s: want an IPv4 address", Quote(string(b)))
	}
	a.Addr = v
	return nil
}

// MAC is an Ethernet address.
type MAC struct{ net.HardwareAddr }

// UnmarshalText accepts aa:bb:cc:dd:ee:ff.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := net.ParseMAC(string(b))
	if err != nil || len(v) != 6 {
		return fmt.Errorf("mac %s: want an Ethernet address like 52:54:00:12:34:56", Quote(string(b)))
	}
	m.HardwareAddr = v
	return nil
}

// MarshalText writes the address as UnmarshalText reads it.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Upstream is a DNS server address, "ip" or "ip:port".
type Upstream string

// UnmarshalText accepts an IP address with an optional port (53 when omitted).
func (u *Upstream) UnmarshalText(b []byte) error {
	s := string(b)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		*u = Upstream(ap.String())
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("upstream %s: want an IP address, optionally with :port", Quote(s))
	}
	*u = Upstream(netip.AddrPortFrom(a, 53).String())
	return nil
}

// Host is a guest with a fixed address, handed out by DHCP and named in DNS.
type Host struct {
	MAC  MAC    `toml:"mac"`
	IP   Addr   `toml:"ip"`
	IP6  Addr6  `toml:"ip6"` // optional: answered in DNS (AAAA); the guest takes it itself
	Name string `toml:"name"`
}

// Network is one network as the file describes it; see Resolve for the defaults.
type Network struct {
	Name      string     `toml:"-"`
	Bridge    BridgeName `toml:"bridge"`
	Mode      Mode       `toml:"mode"`
	Address   Gateway    `toml:"address"`
	Address6  Gateway6   `toml:"address6"` // off unless set
	MTU       MTU        `toml:"mtu"`
	Ports     Ports      `toml:"ports"`
	DHCP      *bool      `toml:"dhcp"`
	DNS       *bool      `toml:"dns"`
	Router    *bool      `toml:"dhcp_router"` // default: true for nat, false for hostonly
	RangeFrom Addr       `toml:"dhcp_from"`
	RangeTo   Addr       `toml:"dhcp_to"`
	LeaseTime Duration   `toml:"lease_time"`
	Domain    string     `toml:"domain"`
	Upstreams []Upstream `toml:"upstreams"`
	Hosts     []Host     `toml:"host"`
	Forwards  []Forward  `toml:"forward"`
	VXLAN     *VXLAN     `toml:"vxlan"`
	Allow     []Allowed  `toml:"allow"`      // who may use it through kvmnet-bridge-helper; see allow.go
	AllowFrom []string   `toml:"allow_from"` // networks whose guests may open connections into it; see allowfrom.go

	set map[string]bool // the keys the file gives it (see keys.go)
}

// names returns the names of the file's networks, sorted, so that checks
// across networks report the same first mistake every time.
func (f *File) names() []string {
	names := make([]string, 0, len(f.Networks))
	for name := range f.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// File is a parsed configuration file.
type File struct {
	Path     string              `toml:"-"`
	LeaseDir string              `toml:"lease_dir"`
	Firewall Firewall            `toml:"firewall"`
	Networks map[string]*Network `toml:"network"` // the usable networks

	// Broken holds the networks whose sections are wrong, each with its
	// error (FILE:LINE: ...); they are not in Networks.
	Broken map[string]error `toml:"-"`

	text []byte // the file's contents, to find a mistake's line
	// brokenBridges maps the bridges of broken networks to them.
	brokenBridges map[string]string
}

// Firewall is the rule engine networks get: "auto" (the default: from what
// the host has and uses), "nftables" or "iptables".
type Firewall string

// UnmarshalText accepts auto, nftables and iptables.
func (f *Firewall) UnmarshalText(b []byte) error {
	switch s := string(b); s {
	case "auto", "nftables", "iptables":
		*f = Firewall(s)
	default:
		return fmt.Errorf("firewall %q: want auto, nftables or iptables", b)
	}
	return nil
}

// DefaultLeaseDir keeps DHCP leases across reboots.
const DefaultLeaseDir = "/var/lib/kvmnet"

// Path returns the file kvmnet reads: $KVMNET_CONFIG for a real root caller, else DefaultPath.
func Path() string {
	if p := os.Getenv(EnvPath); p != "" && os.Getuid() == 0 {
		return p
	}
	return DefaultPath
}

// Load reads the file at path. A missing file is an empty configuration:
// kvmnet works with none. A file larger than MaxFileSize is refused unread.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Path: path, LeaseDir: DefaultLeaseDir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes b, the contents of the file at path, and checks every network.
// Its size and nesting are bounded before it is decoded (see checkBounds).
// A mistake outside the networks' sections returns no File. A mistake in a
// network's section breaks that network only: the File is returned with the
// network in Broken, and so is the first broken network's error (Err), for
// callers that need the whole file right.
func Parse(path string, b []byte) (*File, error) {
	if err := checkBounds(path, b); err != nil {
		return nil, err
	}
	var raw rawFile
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		return nil, posError(path, err)
	}
	f := &File{Path: path, LeaseDir: raw.LeaseDir, Firewall: raw.Firewall, Networks: map[string]*Network{}, text: b}
	values := sync.OnceValue(func() map[string]any { return decodeValues(b) })
	for _, name := range slices.Sorted(maps.Keys(raw.Networks)) {
		n := &Network{Name: name}
		if err := f.decodeNetwork(md, raw.Networks[name], n, values); err != nil {
			f.breakNetwork(name, err)
			continue
		}
		f.Networks[name] = n
	}
	for _, key := range md.Undecoded() {
		err := fmt.Errorf("%s: unknown key %s", where(path, b, key[len(key)-1]), Quote(key.String()))
		if len(key) < 2 || key[0] != "network" {
			return nil, err
		}
		if _, broken := f.Broken[key[1]]; !broken {
			f.breakNetwork(key[1], err)
		}
	}
	if f.LeaseDir == "" {
		f.LeaseDir = DefaultLeaseDir
	}
	if !filepath.IsAbs(f.LeaseDir) {
		return nil, fmt.Errorf("%s: lease_dir: %s: want an absolute path (helpers run from any directory)", where(path, b, "lease_dir"), Quote(f.LeaseDir))
	}
	if n, ok := f.Networks[DefaultNetwork]; ok && !n.Address.IsValid() {
		// Its static hosts and DHCP range are checked against the address it will have.
		n.Address.Prefix = DefaultGateway
	}
	dns := f.dnsServers()
	for _, name := range f.names() {
		if err := f.checkNetwork(f.Networks[name], dns); err != nil {
			f.breakNetwork(name, err)
		}
	}
	if err := f.checkAcross(); err != nil {
		return nil, err
	}
	return f, f.Err()
}

// dnsServers maps the gateway addresses where kvmnet's DNS forwarders listen
// to their networks: those the file gives an address, not isolated, with DNS
// not turned off. Not the built-in default network's 192.168.100.1 when the file does
// not define it: many home routers have that address, and while one does the
// default network cannot come up (its subnet would overlap the LAN's).
func (f *File) dnsServers() map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for name, n := range f.Networks {
		if n.Address.IsValid() && n.Mode != Isolated && (n.DNS == nil || *n.DNS) {
			m[n.Address.Addr()] = name
			if n.Address6.IsValid() {
				m[n.Address6.Addr()] = name
			}
		}
	}
	return m
}

// checkShared rejects two networks on one bridge or with overlapping subnets.
// It sorts rather than compares every pair, so that a file of many networks
// costs n log n. Of two networks in conflict the error names the one blame
// picks, at its key's line (conflict.go).
func (f *File) checkShared(b []byte) error {
	type entry struct {
		name string
		sub  netip.Prefix
	}
	bridges := map[string]string{}
	var subs []entry
	for name, n := range f.Networks {
		br := n.bridge()
		if prev, dup := bridges[br]; dup {
			other, blamed := blame(b, prev, name, "bridge")
			return f.conflict(b, blamed, "bridge", br, "want a bridge of its own, not network %s's", other)
		}
		bridges[br] = name
		if n.Address.IsValid() {
			subs = append(subs, entry{name, n.Address.Masked()})
		}
	}
	// Sorted by first address, widest first, a subnet overlaps an earlier
	// one exactly when it starts inside the earlier one that reaches furthest.
	sort.Slice(subs, func(i, j int) bool {
		if c := subs[i].sub.Addr().Compare(subs[j].sub.Addr()); c != 0 {
			return c < 0
		}
		return subs[i].sub.Bits() < subs[j].sub.Bits()
	})
	for i, reach := 1, 0; i < len(subs); i++ {
		if subs[reach].sub.Contains(subs[i].sub.Addr()) {
			x, y := subs[reach], subs[i]
			other, blamed := blame(b, x.name, y.name, "address")
			if blamed == x.name {
				x, y = y, x
			}
			return f.conflict(b, blamed, "address", f.Networks[blamed].Address.String(), "want a subnet of its own: %s overlaps network %s's %s", y.sub, other, x.sub)
		}
		if lastAddr(subs[i].sub).Compare(lastAddr(subs[reach].sub)) > 0 {
			reach = i
		}
	}
	return nil
}

// MaxLeaseTime bounds lease_time. A lease is how long an address stays taken
// after its guest is gone for good: a pool of leases that long is used up by
// guests that come and go (test VMs, CI), and a restart does not free it
// (leases are kept in lease_dir). Thirty days covers a guest switched off for
// a month; DHCP's own limit (32-bit seconds, 136 years) is no guide.
const MaxLeaseTime = 30 * 24 * time.Hour

// check validates what decoding alone cannot: names, and addresses against
// the subnet. dns maps the gateways where kvmnet's forwarders listen to their networks.
func (n *Network) check(dns map[netip.Addr]string) error {
	if err := CheckNetworkName(n.Name); err != nil {
		return err
	}
	if n.Domain != "" && !validDomain(n.Domain) {
		return keyErrorf("domain", nil, "%s: want a DNS name like kvm or lab.example", Quote(n.Domain))
	}
	if n.LeaseTime.Duration > MaxLeaseTime {
		return keyErrorf("lease_time", nil, "%s: at most 720h (30 days): an address stays taken that long after its guest is gone", n.LeaseTime.Duration)
	}
	if err := n.checkRange(); err != nil {
		return err
	}
	if err := n.checkUpstreams(dns); err != nil {
		return err
	}
	seen := map[string]int{}
	for i := range n.Hosts {
		if err := n.checkHost(i, seen); err != nil {
			return err
		}
		if err := n.checkHost6(i, seen); err != nil {
			return err
		}
	}
	for i := range n.Forwards {
		if err := n.checkForward(i); err != nil {
			return err
		}
	}
	return nil
}

// checkRange: the DHCP pool lies inside the subnet, holds neither its
// network nor its broadcast address, and not the gateway.
func (n *Network) checkRange() error {
	sub := n.Address.Masked()
	for _, r := range []struct {
		key string
		a   Addr
	}{{"dhcp_from", n.RangeFrom}, {"dhcp_to", n.RangeTo}} {
		switch {
		case !r.a.IsValid():
		case !n.Address.IsValid() || !sub.Contains(r.a.Addr):
			return keyErrorf(r.key, nil, "dhcp range address %s: not inside the network's address %s", r.a, n.Address)
		case r.a.Addr == sub.Addr() || r.a.Addr == lastAddr(sub):
			return keyErrorf(r.key, nil, "%s is the network or broadcast address of %s, not a guest's", r.a, sub)
		}
	}
	switch {
	case n.RangeTo.IsValid() && !n.RangeFrom.IsValid():
		return keyErrorf("dhcp_to", nil, "%s: want dhcp_from beside it: a DHCP pool is given by both ends or neither", n.RangeTo)
	case n.RangeFrom.IsValid() && !n.RangeTo.IsValid():
		return keyErrorf("dhcp_from", nil, "%s: want dhcp_to beside it: a DHCP pool is given by both ends or neither", n.RangeFrom)
	}
	if !n.RangeFrom.IsValid() {
		return nil
	}
	if n.RangeTo.Less(n.RangeFrom.Addr) {
		return keyErrorf("dhcp_to", nil, "dhcp range %s-%s: ends before it starts", n.RangeFrom, n.RangeTo)
	}
	if gw := n.Address.Addr(); !gw.Less(n.RangeFrom.Addr) && !n.RangeTo.Less(gw) {
		return keyErrorf("dhcp_from", nil, "dhcp range %s-%s holds the gateway %s", n.RangeFrom, n.RangeTo, gw)
	}
	return nil
}

// checkUpstreams refuses an upstream on port 53 of a gateway where kvmnet's
// own forwarder listens: the network's own (a query would be forwarded to
// itself) or another network's (two networks naming each other's gateway
// forward a query between them for ever).
func (n *Network) checkUpstreams(dns map[netip.Addr]string) error {
	for _, u := range n.Upstreams {
		ap, err := netip.ParseAddrPort(string(u))
		if err != nil || ap.Port() != 53 {
			continue
		}
		switch other, ok := dns[ap.Addr()]; {
		case ok && other == n.Name:
			return keyErrorf("upstreams", nil, "%s is this network's own DNS forwarder: queries would loop", u)
		case ok:
			return keyErrorf("upstreams", nil, "%s is network %s's DNS forwarder: queries could loop between the two", u, other)
		}
	}
	return nil
}

// bridge is the network's bridge: its own, else one named after it (br0 for
// the default network).
func (n *Network) bridge() string {
	switch {
	case n.Bridge != "":
		return string(n.Bridge)
	case n.Name == DefaultNetwork:
		return DefaultBridge
	}
	return n.Name
}

// checkHost checks static host i: a unicast MAC, an address of a guest (not
// the gateway, the network or the broadcast address), a DNS name, and none
// of the three shared with an earlier host. seen maps each MAC, address and
// lower-case name to the index of the host that has it.
func (n *Network) checkHost(i int, seen map[string]int) error {
	h := n.Hosts[i]
	if h.MAC.HardwareAddr == nil || !h.IP.IsValid() {
		return fmt.Errorf("host %s: needs mac and ip", Quote(h.Name))
	}
	mac, ip := h.MAC.String(), h.IP.String()
	sub := n.Address.Masked()
	switch {
	case h.MAC.HardwareAddr[0]&1 != 0:
		return keyErrorf("host.mac", sameMAC(mac), "%s is a multicast address: a guest's must be unicast", mac)
	case bytes.Equal(h.MAC.HardwareAddr, make([]byte, 6)):
		return keyErrorf("host.mac", sameMAC(mac), "%s: all zero, not a guest's", mac)
	case !n.Address.IsValid() || !sub.Contains(h.IP.Addr) || h.IP.Addr == n.Address.Addr():
		return keyErrorf("host.ip", sameIP(h.IP.Addr), "%s is not a guest address of %s", ip, n.Address)
	case h.IP.Addr == sub.Addr() || h.IP.Addr == lastAddr(sub):
		return keyErrorf("host.ip", sameIP(h.IP.Addr), "%s is the network or broadcast address of %s, not a guest's", ip, sub)
	case h.Name != "" && !validDomain(h.Name):
		return keyErrorf("host.name", nil, "%s is not a DNS label", Quote(h.Name))
	}
	for _, k := range []struct{ key, val string }{{"host.mac", mac}, {"host.ip", ip}, {"host.name", strings.ToLower(h.Name)}} {
		if k.val == "" {
			continue
		}
		if prev, dup := seen[k.key+"="+k.val]; dup {
			match := sameText(k.val)
			switch k.key {
			case "host.mac":
				match = sameMAC(k.val)
			case "host.ip":
				match = sameIP(h.IP.Addr)
			}
			e := keyErrorf(k.key, match, "%s is also host %s's", Quote(k.val), n.Hosts[prev].MAC)
			e.nth = 2
			return e
		}
		seen[k.key+"="+k.val] = i
	}
	return nil
}

// The checks below are loops, not regular expressions: every helper run
// checks a network name, and compiling a regexp at init costs a helper run
// half a millisecond.

// validNetworkName: 1 to 15 of a-z 0-9 _ -, the first a letter or digit.
func validNetworkName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '_' || s[0] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validDomain: dot-separated labels of letters, digits and inner hyphens, each 1 to 63 long.
func validDomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// posError turns a decoder error into "file:line: message". The decoder's
// message may repeat the file's text (a key, a value); what is not a short
// printable line is quoted and cut, so the error stays one short line.
func posError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := tame(pe.Message, 200)
		if pe.LastKey != "" && !strings.Contains(pe.Message, pe.LastKey) {
			msg = tame(pe.LastKey, 2*maxEcho) + ": " + msg
		}
		return fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)
	}
	return fmt.Errorf("%s: %s", path, tame(err.Error(), 200))
}

// tame returns s if it is printable and at most limit bytes, else Quote(s).
func tame(s string, limit int) string {
	if len(s) <= limit && printable(s) {
		return s
	}
	return Quote(s)
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
