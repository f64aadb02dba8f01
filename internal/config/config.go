// Package config reads kvmnet's configuration: named networks, each a bridge
// with a mode, a gateway address and the services kvmnet runs on it.
//
// The file is TOML (github.com/BurntSushi/toml). Every value is checked while it
// is decoded, so an error names the file, the line and the bad value.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

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
		return fmt.Errorf("mode %q: want isolated, hostonly, nat or bridged", b)
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
		return netip.Prefix{}, fmt.Errorf("address %q: want an IPv4 address with prefix, like 192.168.100.1/24", s)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("address %q: prefix length must be 8 to 30", s)
	}
	if p.Addr() == p.Masked().Addr() || p.Addr() == lastAddr(p) {
		return netip.Prefix{}, fmt.Errorf("address %q: is the network or broadcast address, not a host", s)
	}
	return p, nil
}

// MTU is a link MTU; zero means "leave as the kernel makes it" (1500).
type MTU int

// UnmarshalTOML accepts an integer from 576 to 65535.
func (m *MTU) UnmarshalTOML(v any) error {
	n, ok := v.(int64)
	if !ok || n < 576 || n > 65535 {
		return fmt.Errorf("mtu %v: want an integer from 576 to 65535", v)
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
		return fmt.Errorf("bridge name %q starts with '-'", s)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("bridge name %q: want letters, digits, '_', '.' and '-' only", s)
		}
	}
	return nil
}

// CheckIfName reports why s cannot be a Linux interface name, if it cannot.
func CheckIfName(s string) error {
	switch {
	case s == "":
		return errors.New("interface name is empty")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case strings.ContainsAny(s, "/:") || strings.IndexFunc(s, isSpace) >= 0:
		return fmt.Errorf("interface name %q contains '/', ':' or white space", s)
	}
	return nil
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// CheckNetworkName reports why s cannot name a network. Names are short and
// plain because they become parts of iptables chain names (at most 28 bytes).
func CheckNetworkName(s string) error {
	if !validNetworkName(s) {
		return fmt.Errorf("network name %q: want 1 to 15 of a-z 0-9 _ -, starting with a letter or digit", s)
	}
	return nil
}

// Duration is a time.Duration written as "1h", "30m".
type Duration struct{ time.Duration }

// UnmarshalText accepts a Go duration of at least a minute.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < time.Minute {
		return fmt.Errorf("duration %q: want e.g. \"1h\" or \"30m\", at least 1m", b)
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
		return fmt.Errorf("address %q: want an IPv4 address", b)
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
		return fmt.Errorf("mac %q: want an Ethernet address like 52:54:00:12:34:56", b)
	}
	m.HardwareAddr = v
	return nil
}

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
		return fmt.Errorf("upstream %q: want an IP address, optionally with :port", s)
	}
	*u = Upstream(netip.AddrPortFrom(a, 53).String())
	return nil
}

// Host is a guest with a fixed address, handed out by DHCP and named in DNS.
type Host struct {
	MAC  MAC    `toml:"mac"`
	IP   Addr   `toml:"ip"`
	Name string `toml:"name"`
}

// Network is one network as the file describes it; see Resolve for the defaults.
type Network struct {
	Name      string     `toml:"-"`
	Bridge    BridgeName `toml:"bridge"`
	Mode      Mode       `toml:"mode"`
	Address   Gateway    `toml:"address"`
	MTU       MTU        `toml:"mtu"`
	Ports     Ports      `toml:"ports"`
	DHCP      *bool      `toml:"dhcp"`
	DNS       *bool      `toml:"dns"`
	RangeFrom Addr       `toml:"dhcp_from"`
	RangeTo   Addr       `toml:"dhcp_to"`
	LeaseTime Duration   `toml:"lease_time"`
	Domain    string     `toml:"domain"`
	Upstreams []Upstream `toml:"upstreams"`
	Hosts     []Host     `toml:"host"`
}

// File is a parsed configuration file.
type File struct {
	Path     string              `toml:"-"`
	LeaseDir string              `toml:"lease_dir"`
	Networks map[string]*Network `toml:"network"`
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
// kvmnet works with none.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Path: path, LeaseDir: DefaultLeaseDir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes b, the contents of the file at path, and checks every network.
func Parse(path string, b []byte) (*File, error) {
	f := &File{Path: path}
	md, err := toml.Decode(string(b), f)
	if err != nil {
		return nil, posError(path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		key := und[0]
		return nil, fmt.Errorf("%s: unknown key %q", where(path, b, key[len(key)-1]), key.String())
	}
	if f.LeaseDir == "" {
		f.LeaseDir = DefaultLeaseDir
	}
	names := make([]string, 0, len(f.Networks))
	for name, n := range f.Networks {
		n.Name = name
		names = append(names, name)
	}
	sort.Strings(names)
	if n, ok := f.Networks[DefaultNetwork]; ok && !n.Address.IsValid() {
		// Its static hosts and DHCP range are checked against the address it will have.
		n.Address.Prefix = DefaultGateway
	}
	for _, name := range names {
		if err := f.Networks[name].check(); err != nil {
			return nil, fmt.Errorf("%s: network %s: %w", where(path, b, "network."+name), name, err)
		}
	}
	return f, f.checkShared(b)
}

// checkShared rejects two networks on one bridge or with overlapping subnets.
func (f *File) checkShared(b []byte) error {
	names := make([]string, 0, len(f.Networks))
	for name := range f.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, a := range names {
		for _, bn := range names[i+1:] {
			na, nb := f.Networks[a], f.Networks[bn]
			if br := na.bridge(); br == nb.bridge() {
				return fmt.Errorf("%s: network %s: bridge %s is already network %s's", where(f.Path, b, "network."+bn), bn, br, a)
			}
			if na.Address.IsValid() && nb.Address.IsValid() && na.Address.Overlaps(nb.Address.Masked()) {
				return fmt.Errorf("%s: network %s: subnet %s overlaps network %s's %s", where(f.Path, b, "network."+bn), bn, nb.Address.Masked(), a, na.Address.Masked())
			}
		}
	}
	return nil
}

// check validates what decoding alone cannot: names, and addresses against the subnet.
func (n *Network) check() error {
	if err := CheckNetworkName(n.Name); err != nil {
		return err
	}
	if n.Domain != "" && !validDomain(n.Domain) {
		return fmt.Errorf("domain %q: want a DNS name like kvm or lab.example", n.Domain)
	}
	sub := n.Address.Masked()
	for _, r := range []Addr{n.RangeFrom, n.RangeTo} {
		if r.IsValid() && (!n.Address.IsValid() || !sub.Contains(r.Addr)) {
			return fmt.Errorf("dhcp range address %s: not inside the network's address %s", r, n.Address)
		}
	}
	if n.RangeFrom.IsValid() != n.RangeTo.IsValid() {
		return errors.New("dhcp_from and dhcp_to: give both or neither")
	}
	if n.RangeFrom.IsValid() && n.RangeTo.Less(n.RangeFrom.Addr) {
		return fmt.Errorf("dhcp range %s-%s: ends before it starts", n.RangeFrom, n.RangeTo)
	}
	seen := map[string]string{}
	for _, h := range n.Hosts {
		if err := n.checkHost(h, seen); err != nil {
			return err
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

func (n *Network) checkHost(h Host, seen map[string]string) error {
	if h.MAC.HardwareAddr == nil || !h.IP.IsValid() {
		return fmt.Errorf("host %q: needs mac and ip", h.Name)
	}
	if !n.Address.IsValid() || !n.Address.Masked().Contains(h.IP.Addr) || h.IP.Addr == n.Address.Addr() {
		return fmt.Errorf("host %s: ip %s is not a guest address of %s", h.MAC, h.IP, n.Address)
	}
	if h.Name != "" && !validDomain(h.Name) {
		return fmt.Errorf("host %s: name %q is not a DNS label", h.MAC, h.Name)
	}
	for _, k := range []string{h.MAC.String(), h.IP.String()} {
		if prev, dup := seen[k]; dup {
			return fmt.Errorf("host %s: %s is also host %s's", h.MAC, k, prev)
		}
		seen[k] = h.MAC.String()
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

// posError turns a decoder error into "file:line: message".
func posError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" && !strings.Contains(msg, pe.LastKey) {
			msg = pe.LastKey + ": " + msg
		}
		return fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// where is "path:line" for the line that defines key (a bare key or a table
// name, "network.lab" also found as [[network.lab.host]]), or just path when
// no line does.
func where(path string, b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimLeft(strings.TrimSpace(sc.Text()), "[ ")
		if rest, ok := strings.CutPrefix(t, key); ok && (rest == "" || strings.ContainsAny(rest[:1], "]. =")) {
			return fmt.Sprintf("%s:%d", path, line)
		}
	}
	return path
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
