// Package ctl is the control side of kvmnet's DHCP/DNS daemon (package
// netsvc): its config file, its process (Start, Alive, Stop) and its lease
// file. It holds no DHCP or DNS protocol code, so that the QEMU helpers, which
// start and stop the daemon once per VM, stay small and start fast; the
// daemon itself is the kvmnet-netsvc binary.
package ctl

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvmnet/kvmnet/internal/safefile"
)

// Host is a static DHCP host: the guest with this MAC always gets IP, and Name
// resolves to it.
type Host struct {
	MAC  net.HardwareAddr
	IP   netip.Addr
	IP6  netip.Addr // optional: Name's AAAA
	Name string
}

// hostJSON spells the MAC as text: the default []byte encoding is base64,
// which nobody can read in a config file.
type hostJSON struct {
	MAC  string     `json:"mac"`
	IP   netip.Addr `json:"ip"`
	IP6  netip.Addr `json:"ip6,omitzero"`
	Name string     `json:"name,omitempty"`
}

// MarshalJSON writes the MAC as "52:54:00:12:34:56".
func (h Host) MarshalJSON() ([]byte, error) {
	return json.Marshal(hostJSON{MAC: h.MAC.String(), IP: h.IP, IP6: h.IP6, Name: h.Name})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (h *Host) UnmarshalJSON(b []byte) error {
	var j hostJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	mac, err := net.ParseMAC(j.MAC)
	if err != nil {
		return fmt.Errorf("host mac %q: %w", j.MAC, err)
	}
	*h = Host{MAC: mac, IP: j.IP, IP6: j.IP6, Name: j.Name}
	return nil
}

// Config is everything the daemon of one network needs. The lifecycle code
// writes it as JSON (WriteConfig) and the daemon reads it back (ReadConfig).
type Config struct {
	Network    string       // kvmnet network name
	Bridge     string       // serve only on this interface
	Gateway    netip.Prefix // e.g. 192.168.100.1/24: server address, router, DNS
	Gateway6   netip.Prefix // e.g. fd00::1/64: router advertisements and DNS over IPv6; invalid: none
	MTU        int          // 0 or 1500: no option
	DHCP       bool
	Router     bool       // hand out the gateway as the default route (option 3): NAT networks route
	RangeStart netip.Addr // default: first usable address that is not the gateway
	RangeEnd   netip.Addr // default: last usable address that is not the gateway
	LeaseTime  time.Duration
	Domain     string // default "kvm"
	Hosts      []Host // static hosts
	DNS        bool
	Upstreams  []string // "ip:port"; empty: nameservers of /etc/resolv.conf at start
	LeaseFile  string   // leases persisted here; empty: kept in memory only
	PIDFile    string
	GenFile    string // the network's generation file (gen.go); empty: none to follow
	// Guard says the network's guard is on, so that its leases go to the
	// guard's sets: with it off there are no sets, and each attempt would
	// be a failed nf_tables transaction, which costs an RCU grace period
	// (8-20 ms) before the ACK.
	Guard bool
	// EVPNLink is the network's EVPN VXLAN link, whose VTEPs the daemon
	// keeps in the network's VTEP set (package vtepset); empty: none.
	EVPNLink string
}

// configJSON is the file form of Config: snake_case keys and a lease time
// people can read ("1h0m0s") instead of nanoseconds.
type configJSON struct {
	Network    string       `json:"network"`
	Bridge     string       `json:"bridge"`
	Gateway    netip.Prefix `json:"gateway"`
	Gateway6   netip.Prefix `json:"gateway6,omitzero"`
	MTU        int          `json:"mtu,omitempty"`
	DHCP       bool         `json:"dhcp"`
	Router     bool         `json:"router,omitempty"`
	RangeStart netip.Addr   `json:"range_start,omitzero"`
	RangeEnd   netip.Addr   `json:"range_end,omitzero"`
	LeaseTime  string       `json:"lease_time,omitempty"`
	Domain     string       `json:"domain,omitempty"`
	Hosts      []Host       `json:"hosts,omitempty"`
	DNS        bool         `json:"dns"`
	Upstreams  []string     `json:"upstreams,omitempty"`
	LeaseFile  string       `json:"lease_file,omitempty"`
	PIDFile    string       `json:"pid_file,omitempty"`
	GenFile    string       `json:"gen_file,omitempty"`
	Guard      bool         `json:"guard,omitempty"`
	EVPNLink   string       `json:"evpn_link,omitempty"`
}

// MarshalJSON writes the file form of c.
func (c Config) MarshalJSON() ([]byte, error) {
	j := configJSON{
		Network: c.Network, Bridge: c.Bridge, Gateway: c.Gateway, Gateway6: c.Gateway6, MTU: c.MTU,
		DHCP: c.DHCP, Router: c.Router, RangeStart: c.RangeStart, RangeEnd: c.RangeEnd,
		Domain: c.Domain, Hosts: c.Hosts, DNS: c.DNS, Upstreams: c.Upstreams,
		LeaseFile: c.LeaseFile, PIDFile: c.PIDFile, GenFile: c.GenFile, Guard: c.Guard, EVPNLink: c.EVPNLink,
	}
	if c.LeaseTime != 0 {
		j.LeaseTime = c.LeaseTime.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Config) UnmarshalJSON(b []byte) error {
	var j configJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var lt time.Duration
	if j.LeaseTime != "" {
		var err error
		if lt, err = time.ParseDuration(j.LeaseTime); err != nil {
			return fmt.Errorf("lease_time %q: %w", j.LeaseTime, err)
		}
	}
	*c = Config{
		Network: j.Network, Bridge: j.Bridge, Gateway: j.Gateway, Gateway6: j.Gateway6, MTU: j.MTU,
		DHCP: j.DHCP, Router: j.Router, RangeStart: j.RangeStart, RangeEnd: j.RangeEnd, LeaseTime: lt,
		Domain: j.Domain, Hosts: j.Hosts, DNS: j.DNS, Upstreams: j.Upstreams,
		LeaseFile: j.LeaseFile, PIDFile: j.PIDFile, GenFile: j.GenFile, Guard: j.Guard, EVPNLink: j.EVPNLink,
	}
	return nil
}

// WriteConfig writes c to path atomically, so a daemon starting at the same
// moment never reads half a file. It is not synced: it lives in /run, which
// no crash outlives, and a sync on a disk-backed /run is a journal commit
// on a cold up's critical path.
func WriteConfig(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode netsvc config: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644, false)
}

// ReadConfig reads a config written by WriteConfig. It neither fills defaults
// nor validates: the daemon does both.
func ReadConfig(path string) (Config, error) {
	var c Config
	b, err := safefile.ReadFile(path, 16<<20) // far more than the hosts a 256 KiB kvmnet.toml can name
	if err != nil {
		return c, fmt.Errorf("read netsvc config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse netsvc config %s: %w", path, err)
	}
	return c, nil
}

// ReadDaemonConfig is ReadConfig for starting a daemon, which needs a pid
// file: it is how Process.Wait sees the daemon ready and how Alive and Stop find it.
func ReadDaemonConfig(path string) (Config, error) {
	c, err := ReadConfig(path)
	if err != nil {
		return c, err
	}
	if c.PIDFile == "" {
		return c, fieldError("pid_file", "", "the daemon needs a pid file")
	}
	return c, nil
}

// Default values of the optional fields.
const (
	DefaultLeaseTime = time.Hour
	DefaultDomain    = "kvm"
)

// Defaults fills the optional fields that are unset. It leaves Upstreams empty:
// those are read from /etc/resolv.conf when the daemon starts, so a change of
// the host's resolver is picked up by the next start.
func (c *Config) Defaults() {
	if c.LeaseTime == 0 {
		c.LeaseTime = DefaultLeaseTime
	}
	c.Domain = strings.ToLower(strings.Trim(c.Domain, "."))
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	if !c.Gateway.IsValid() || !c.Gateway.Addr().Is4() || c.Gateway.Bits() > 30 {
		return // Validate reports it; no range can be derived.
	}
	first, last := usable(c.Gateway)
	gw := c.Gateway.Addr()
	if !c.RangeStart.IsValid() {
		c.RangeStart = first
		if c.RangeStart == gw {
			c.RangeStart = first.Next()
		}
	}
	if !c.RangeEnd.IsValid() {
		c.RangeEnd = last
		if c.RangeEnd == gw {
			c.RangeEnd = last.Prev()
		}
	}
}

// usable returns the first and last host addresses of p (neither the network
// nor the broadcast address).
func usable(p netip.Prefix) (first, last netip.Addr) {
	n := p.Masked().Addr()
	return n.Next(), Broadcast(p).Prev()
}

// Broadcast returns the directed broadcast address of p, an IPv4 prefix.
func Broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Validate checks c after Defaults. Each error is one line naming the field
// (as spelled in the JSON file) and the offending value.
func (c Config) Validate() error {
	checks := []func() error{
		c.validateNames, c.validateGateway, c.validateGateway6, c.validateMTU, c.validateRange,
		c.validateLeaseTime, c.validateDomain, c.validateHosts, c.validateUpstreams,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// fieldError is the one shape of every validation error.
func fieldError(field string, value any, why string) error {
	return fmt.Errorf("netsvc config: %s %q: %s", field, fmt.Sprint(value), why)
}

func (c Config) validateNames() error {
	if c.Network == "" {
		return fieldError("network", c.Network, "must not be empty")
	}
	if c.Bridge == "" || len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t\n") {
		return fieldError("bridge", c.Bridge, "not an interface name (1-15 characters, no '/' or spaces)")
	}
	return nil
}

func (c Config) validateGateway() error {
	g := c.Gateway
	switch {
	case !g.IsValid():
		return fieldError("gateway", g, "not an address with prefix length, e.g. 192.168.100.1/24")
	case !g.Addr().Is4():
		return fieldError("gateway", g, "must be IPv4")
	case g.Bits() > 30:
		return fieldError("gateway", g, "prefix longer than /30 leaves no address for guests")
	case g.Addr() == g.Masked().Addr():
		return fieldError("gateway", g, "is the network address, not a host address")
	case g.Addr() == Broadcast(g):
		return fieldError("gateway", g, "is the broadcast address, not a host address")
	}
	return nil
}

func (c Config) validateGateway6() error {
	g := c.Gateway6
	switch {
	case !g.IsValid():
		return nil
	case !g.Addr().Is6() || g.Addr().Is4In6() || g.Bits() != 64:
		return fieldError("gateway6", g, "want an IPv6 address in a /64, e.g. fd00::1/64")
	case g.Addr() == g.Masked().Addr() || g.Addr().IsLinkLocalUnicast() || g.Addr().IsMulticast():
		return fieldError("gateway6", g, "not a host address of its prefix")
	}
	return nil
}

func (c Config) validateMTU() error {
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fieldError("mtu", c.MTU, "must be 0 (default) or 68..65535")
	}
	return nil
}

func (c Config) validateRange() error {
	first, last := usable(c.Gateway)
	for _, f := range []struct {
		name string
		a    netip.Addr
	}{{"range_start", c.RangeStart}, {"range_end", c.RangeEnd}} {
		if !f.a.IsValid() || !f.a.Is4() {
			return fieldError(f.name, f.a, "not an IPv4 address")
		}
		if f.a.Less(first) || last.Less(f.a) {
			return fieldError(f.name, f.a, fmt.Sprintf("outside the usable addresses %s-%s of %s", first, last, c.Gateway.Masked()))
		}
	}
	if c.RangeEnd.Less(c.RangeStart) {
		return fieldError("range_end", c.RangeEnd, "before range_start "+c.RangeStart.String())
	}
	if c.RangeStart == c.RangeEnd && c.RangeStart == c.Gateway.Addr() {
		return fieldError("range_start", c.RangeStart, "the range holds only the gateway")
	}
	return nil
}

func (c Config) validateLeaseTime() error {
	if c.LeaseTime < time.Minute || c.LeaseTime > 365*24*time.Hour {
		return fieldError("lease_time", c.LeaseTime, "must be between 1m and 8760h")
	}
	return nil
}

func (c Config) validateDomain() error {
	for _, label := range strings.Split(c.Domain, ".") {
		if !validLabel(label) {
			return fieldError("domain", c.Domain, "not a DNS name (labels of a-z, 0-9, '-')")
		}
	}
	return nil
}

// validLabel reports whether s is one DNS label of letters, digits and
// hyphens, neither starting nor ending with a hyphen.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (c Config) validateHosts() error {
	macs := map[string]bool{}
	ips := map[netip.Addr]bool{}
	names := map[string]bool{}
	first, last := usable(c.Gateway)
	for _, h := range c.Hosts {
		if len(h.MAC) != 6 {
			return fieldError("hosts.mac", h.MAC, "not a 6-byte Ethernet address")
		}
		if !h.IP.Is4() || h.IP.Less(first) || last.Less(h.IP) || h.IP == c.Gateway.Addr() {
			return fieldError("hosts.ip", h.IP, fmt.Sprintf("not a usable guest address of %s", c.Gateway.Masked()))
		}
		if h.IP6.IsValid() && (!c.Gateway6.IsValid() || !c.Gateway6.Masked().Contains(h.IP6) || h.IP6 == c.Gateway6.Addr()) {
			return fieldError("hosts.ip6", h.IP6, fmt.Sprintf("not a guest address of gateway6 %s", c.Gateway6))
		}
		if h.Name != "" && !validLabel(h.Name) {
			return fieldError("hosts.name", h.Name, "not a DNS label (a-z, 0-9, '-', at most 63)")
		}
		if macs[h.MAC.String()] || ips[h.IP] || (h.Name != "" && names[strings.ToLower(h.Name)]) {
			return fieldError("hosts", h.MAC.String()+" "+h.IP.String()+" "+h.Name, "mac, ip or name given twice")
		}
		macs[h.MAC.String()], ips[h.IP], names[strings.ToLower(h.Name)] = true, true, h.Name != ""
	}
	return nil
}

func (c Config) validateUpstreams() error {
	for _, u := range c.Upstreams {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			return fieldError("upstreams", u, "not ip:port, e.g. 192.0.2.53:53 or [2001:db8::53]:53")
		}
		if c.DNS && c.Gateway.IsValid() && ap == netip.AddrPortFrom(c.Gateway.Addr(), 53) {
			return fieldError("upstreams", u, "is this network's own DNS server (its gateway): forwarding to it would loop")
		}
	}
	return nil
}

// writeFileAtomic writes b to a temporary file beside path, syncs it when
// durable (it must outlive a crash) and renames it over path, so readers see
// the old or the new file, never a mix.
func writeFileAtomic(path string, b []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}
