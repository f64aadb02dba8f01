package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Built-in values: the seed scripts' br0 and 192.168.100.1/24, so that kvmnet
// drops in where they were.
const (
	DefaultBridge    = "br0"
	DefaultLeaseTime = time.Hour
	DefaultDomain    = "kvm"
)

// DefaultGateway is the default network's gateway.
var DefaultGateway = netip.MustParsePrefix("192.168.100.1/24")

// Net is a network with every default filled in: what the helpers act on.
type Net struct {
	Name      string
	Bridge    string
	Mode      Mode
	Allow     []Allowed    // who may use it through kvmnet-bridge-helper: "@group", "user"
	Gateway   netip.Prefix // invalid for Isolated
	Gateway6  netip.Prefix // the IPv6 gateway and the guests' /64; invalid when off or Isolated
	MTU       int          // 0: leave the bridge's as the kernel makes it
	Ports     Ports        // which links the helpers attach: TapPorts or AnyPorts
	DHCP      bool
	DNS       bool
	Router    bool       // DHCP hands out the gateway as the default route
	RangeFrom netip.Addr // valid when DHCP
	RangeTo   netip.Addr
	LeaseTime time.Duration
	Domain    string
	Upstreams []string
	Hosts     []Host
	Forwards  []PortForward // nat only
	LeaseFile string
	VXLAN     *Overlay // nil: the network stays on this host
	Firewall  Firewall // the file's top-level choice; "" is auto
	AllowFrom []string // the bridges of the networks whose guests may open connections into this one

	// BridgeNamed: the file names the bridge in the network's section
	// (bridge = "..."), rather than the network taking its default one:
	// only then does kvmnet make a nat or hostonly network on a bridge it
	// did not make that carries something of the host's (see lifecycle's adopt).
	BridgeNamed bool

	// Hash identifies what a running network takes from the file besides its
	// bridge, subnet and mode (forwards, the daemon's settings): a network
	// up with another hash runs an older configuration.
	Hash string
	// Elided: Forwards were left out (a cached resolution, see the helpers'
	// cache); Hash still stands for them.
	Elided bool
	// Source says where the resolution came from, for the helpers' cache:
	// the file's Stamp and the mode the helper supplied; "" is not cached.
	Source string
}

// Stamp identifies the file at path without reading it: its path and
// identity (device, inode, size, change and modification times), or its path
// and "none" when there is no file (the default network's built-in values).
func Stamp(path string) (string, error) {
	var st syscall.Stat_t
	err := syscall.Stat(path, &st)
	if errors.Is(err, syscall.ENOENT) {
		return path + " none", nil
	}
	if err != nil {
		return "", fmt.Errorf("read config: %s: %w", path, err)
	}
	return fmt.Sprintf("%s %d:%d:%d:%d.%d:%d.%d", path, st.Dev, st.Ino, st.Size, st.Ctim.Sec, st.Ctim.Nsec, st.Mtim.Sec, st.Mtim.Nsec), nil
}

// Subnet is the network's prefix, e.g. 192.168.100.0/24; invalid for Isolated.
func (n Net) Subnet() netip.Prefix {
	if !n.Gateway.IsValid() {
		return netip.Prefix{}
	}
	return n.Gateway.Masked()
}

// Subnet6 is the network's IPv6 prefix, e.g. fd00:6b76:6d6e::/64; invalid when it has none.
func (n Net) Subnet6() netip.Prefix {
	if !n.Gateway6.IsValid() {
		return netip.Prefix{}
	}
	return n.Gateway6.Masked()
}

// Network resolves a network by name. mode is what the calling helper implies
// (kvmnet-ifup: isolated, kvmnet-natup: nat); a mode in the file wins over it.
// The default network needs no file; any other must be defined in it.
func (f *File) Network(name string, mode Mode) (Net, error) {
	if name == "" {
		name = DefaultNetwork
	}
	if err := CheckNetworkName(name); err != nil {
		return Net{}, err
	}
	if err := f.Broken[name]; err != nil {
		return Net{}, err
	}
	n, ok := f.Networks[name]
	if !ok {
		if name != DefaultNetwork {
			return Net{}, fmt.Errorf("network %s: not defined in %s", name, f.Path)
		}
		n = &Network{Name: name}
	}
	r := Net{Name: name, Bridge: n.bridge(), BridgeNamed: n.Bridge != "", Mode: n.Mode, MTU: int(n.MTU), Ports: n.Ports, Domain: n.Domain, Hosts: n.Hosts, Firewall: f.Firewall}
	if r.Mode == "" {
		r.Mode = mode
	}
	if r.Ports == "" {
		r.Ports = TapPorts
	}
	r.VXLAN = n.VXLAN.overlay(name)
	r.Allow = n.allowed()
	r.AllowFrom = f.allowFromBridges(n)
	if len(n.Forwards) > 0 && r.Mode != NAT && r.Mode != "" { // "": undecided (status of a network that is down)
		return Net{}, fmt.Errorf("network %s: its forwards need mode nat, not %s (forwards are DNAT into a nat network)", name, r.Mode)
	}
	if ke := n.checkModeKeys(r.Mode, f.text); n.Mode == "" && ke != nil { // a mode in the file was checked by Parse
		return Net{}, f.located(name, ke)
	}
	for _, f := range n.Forwards {
		r.Forwards = append(r.Forwards, f.resolved()...)
	}
	if !r.Mode.Routed() {
		r.Hash = r.hash()
		return r, nil
	}
	r.Gateway = n.Address.Prefix
	if !r.Gateway.IsValid() {
		if name != DefaultNetwork {
			return Net{}, f.located(name, keyErrorf("address", nil, "missing: want one for mode %s (the helper's), e.g. address = \"10.0.0.1/24\"", r.Mode))
		}
		r.Gateway = DefaultGateway
	}
	r.Gateway6 = n.Address6.Prefix
	r.DHCP = n.DHCP == nil || *n.DHCP
	r.DNS = n.DNS == nil || *n.DNS
	r.Router = r.Mode == NAT
	if n.Router != nil {
		r.Router = *n.Router
	}
	r.RangeFrom, r.RangeTo = n.RangeFrom.Addr, n.RangeTo.Addr
	if !r.RangeFrom.IsValid() {
		r.RangeFrom, r.RangeTo = defaultRange(r.Gateway)
	}
	r.LeaseTime = n.LeaseTime.Duration
	if r.LeaseTime == 0 {
		r.LeaseTime = DefaultLeaseTime
	}
	if r.Domain == "" {
		r.Domain = DefaultDomain
	}
	for _, u := range n.Upstreams {
		r.Upstreams = append(r.Upstreams, string(u))
	}
	r.LeaseFile = filepath.Join(f.LeaseDir, name+".leases")
	r.Hash = r.hash()
	return r, nil
}

// hash is Net.Hash: a digest of the forwards, allow_from and the daemon's settings.
func (n Net) hash() string {
	b, err := json.Marshal(struct {
		F                []PortForward
		DHCP, DNS, R     bool
		From, To         string
		Lease            int64
		Domain, LeaseDir string
		Up               []string
		Hosts            []Host
		AllowFrom        []string
	}{n.Forwards, n.DHCP, n.DNS, n.Router, n.RangeFrom.String(), n.RangeTo.String(), int64(n.LeaseTime),
		n.Domain, n.LeaseFile, n.Upstreams, n.Hosts, n.AllowFrom})
	if err != nil {
		return "" // matches no recorded hash: an up applies everything
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// defaultRange is every host address of the subnet but the gateway's side:
// from the address after the gateway's (or the subnet's first when the gateway
// is not first) to the last before broadcast, as libvirt's default does.
func defaultRange(gw netip.Prefix) (from, to netip.Addr) {
	first := gw.Masked().Addr().Next()
	last := lastAddr(gw).Prev()
	if gw.Addr() == first {
		first = first.Next()
	}
	if gw.Addr() == last {
		last = last.Prev()
	}
	return first, last
}

// FromProgram splits a helper's program name into its network: the part after
// '@' in "kvmnet-natup@lab", so that a script= path picks a network with no
// arguments (QEMU passes only the tap name). "" means the default network.
func FromProgram(argv0 string) string {
	base := filepath.Base(argv0)
	if i := strings.LastIndexByte(base, '@'); i >= 0 {
		return base[i+1:]
	}
	return ""
}
