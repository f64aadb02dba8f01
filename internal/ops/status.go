package ops

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Status is what `kvmnet status --json` prints. Schema 1; fields are only
// ever added, and lists are [] rather than null:
//
//	{
//	  "schema": 1,
//	  "ip_forward": true,                 // net.ipv4.ip_forward of the namespace
//	  "bridge_nf_call_iptables": 1,       // -1 when br_netfilter is not loaded
//	  "networks": [{
//	    "name": "default",
//	    "configured": true,               // in the file, or the built-in default
//	    "up": true,                       // kvmnet has a record: it set the network up
//	    "pinned": false,                  // `kvmnet up` made it: it outlives its VMs
//	    "mode": "nat",                    // isolated, hostonly, nat, routed; "" when undecided
//	    "bridge": {"name": "br0", "exists": true, "owned": true, "mtu": 1500,
//	               "stp": false, "forward_delay_ms": 0},
//	    "address": {"prefix": "192.168.100.1/24", "present": true, "owned": true},
//	    "forwarding": {"needed": true, "held": true},
//	    "rules": {"checked": true, "owned": true, "missing": [],
//	              "firewall": "nftables",    // the rule engine: nftables or iptables; "" when not up
//	              "older": "kvmnet v1.2.0"}, // an older kvmnet made them: what is missing is what
//	                                      // it wrote otherwise (next up rewrites them); absent else
//	    "services": {"enabled": true, "running": true, "pid": 4242,
//	                 "leases": [{"ip": "192.168.100.2", "mac": "52:54:00:3c:a1:07",
//	                             "hostname": "web1", "expires": "2025-01-01T10:00:00Z", "static": false}]},
//	    "ports": [{"name": "vnet0", "kind": "tuntap", "kvmnet": true, "attached": true,
//	               "up": true, "mtu": 1500, "mac": "fe:54:00:3c:a1:07",
//	               "domain": "web1",      // the libvirt domain of the tap (the hook's); absent when none
//	               "uid": 1000, "user": "alice", // the tap's owner: the user whose VM holds it
//	                                      // (kvmnet-bridge-helper's taps); absent when none
//	               "guard": {"mac": "52:54:00:3c:a1:07", "ip": "192.168.100.2", "isolated": false},
//	                                      // what the guard learned the port sends from; absent when nothing
//	               "stats": {"rx_bytes": 5120, "rx_packets": 40,   // rx: from the guest, tx: to it;
//	                         "tx_bytes": 2048, "tx_packets": 20},  // absent for a port that is gone
//	               "limits": {"in": 20000000, "out": 10000000,   // bits/s, 0: none; absent when none
//	                          "hosts": [{"mac": "52:54:00:00:55:21", "in": 0, "out": 5000000}]}}],
//	    "forwards": [{"proto": "tcp", "host_ip": "", "port": "8080", "to": "192.168.100.21:80",
//	                  "leased": true}],   // port forwards: the rules' when up, else the file's
//	    "vxlan": {"device": "vx-lab", "exists": true, "owned": true, "vni": 4242, "port": 4789, "mtu": 1450,
//	              "evpn": false,          // true: peers are the VTEPs FRR's zebra installed
//	              "peers": [{"address": "198.51.100.2", "flood": true, "heard": true}],
//	              "macs": [{"mac": "52:54:00:77:00:03", "vtep": "198.51.100.3"}]},
//	                                      // only for a network with an overlay; macs: evpn's remote guests
//	    "ipv6": {"address": {"prefix": "fd00:6b76:6d6e::1/64", "present": true, "owned": true},
//	             "ra": true, "forwarding": {"needed": true, "held": true}, "forwarding_on": true},
//	                                      // only for a network with address6
//	    "domains": [{"name": "web1", "uuid": "71e034e8-…", "taps": ["vnet0"],  // libvirt domains
//	                 "since": "2025-01-01T09:00:00Z"}],                         // using it (the hook)
//	    "errors": [],                     // what could not be read
//	    "teardown": "in progress"         // a last down's teardown: "in progress" (its process
//	                                      // holds the lock) or "cut short"; absent otherwise
//	  }]
//	}
//
// "owned" is what kvmnet made and will undo (bridge, address, rules), as
// opposed to what it found and will leave; "held" means this network holds a
// use of ip_forward; a port's "kvmnet" means kvmnet attached it for a VM, or
// made it (the overlay's VXLAN link).
type Status struct {
	Schema               int             `json:"schema"`
	IPForward            bool            `json:"ip_forward"`
	BridgeNFCallIptables int             `json:"bridge_nf_call_iptables"`
	Networks             []NetworkStatus `json:"networks"`
}

// SchemaVersion is Status.Schema.
const SchemaVersion = 1

// NetworkStatus is one network of Status.
type NetworkStatus struct {
	Name       string         `json:"name"`
	Configured bool           `json:"configured"`
	Up         bool           `json:"up"`
	Pinned     bool           `json:"pinned"`
	Mode       string         `json:"mode"`
	Bridge     BridgeStatus   `json:"bridge"`
	Address    AddressStatus  `json:"address"`
	Forwarding ForwardStatus  `json:"forwarding"`
	Rules      RulesStatus    `json:"rules"`
	Services   ServicesStatus `json:"services"`
	Ports      []PortStatus   `json:"ports"`
	// Forwards are the network's port forwards (PortForwardStatus).
	Forwards []PortForwardStatus `json:"forwards"`
	VXLAN    *VXLANStatus        `json:"vxlan,omitempty"`
	IPv6     *IPv6Status         `json:"ipv6,omitempty"`
	Domains  []DomainStatus      `json:"domains"`
	Errors   []string            `json:"errors"`
	// Teardown is a last down's background teardown: "in progress" while
	// its process holds the network's lock, "cut short" when it was killed
	// (gc or the next up finishes it); absent otherwise.
	Teardown string `json:"teardown,omitempty"`
	// Broken is the configuration's error for the network's section
	// (FILE:LINE: ...): no VM can start on it. Empty when it is right.
	Broken string `json:"broken,omitempty"`
	// rulesNeedRoot: the rules were not read, as only root may (Rules.Checked is false).
	rulesNeedRoot bool
}

// DomainStatus is a libvirt domain that uses the network through kvmnet's
// libvirt hook; its taps are among the network's ports.
type DomainStatus struct {
	Name  string    `json:"name"`
	UUID  string    `json:"uuid"`
	Taps  []string  `json:"taps"` // empty while libvirt starts it
	Since time.Time `json:"since"`
}

// BridgeStatus is a network's bridge.
type BridgeStatus struct {
	Name           string `json:"name"`
	Exists         bool   `json:"exists"`
	Owned          bool   `json:"owned"`
	MTU            int    `json:"mtu"`
	STP            bool   `json:"stp"`
	ForwardDelayMS int64  `json:"forward_delay_ms"`
}

// AddressStatus is a network's gateway address.
type AddressStatus struct {
	Prefix  string `json:"prefix"`
	Present bool   `json:"present"`
	Owned   bool   `json:"owned"`
}

// ForwardStatus is a network's use of ip_forward.
type ForwardStatus struct {
	Needed bool `json:"needed"`
	Held   bool `json:"held"`
}

// RulesStatus is a network's firewall rules; missing holds, in the
// backend's own syntax, those absent now (firewall.Firewall.Check).
type RulesStatus struct {
	Checked  bool     `json:"checked"`
	Owned    bool     `json:"owned"`
	Missing  []string `json:"missing"`
	Firewall string   `json:"firewall"`
	// Older names the older kvmnet that made the rules ("kvmnet VERSION",
	// or "an older kvmnet (…)") when what is missing is only what that
	// release wrote differently: the next up or doctor --fix replaces them.
	// Absent otherwise.
	Older string `json:"older,omitempty"`
}

// ServicesStatus is a network's DHCP/DNS daemon and its leases.
type ServicesStatus struct {
	Enabled bool          `json:"enabled"`
	Running bool          `json:"running"`
	PID     int           `json:"pid"`
	Leases  []LeaseStatus `json:"leases"`
}

// LeaseStatus is one DHCP lease.
type LeaseStatus struct {
	IP       string    `json:"ip"`
	MAC      string    `json:"mac"`
	Hostname string    `json:"hostname"`
	Expires  time.Time `json:"expires"`
	Static   bool      `json:"static"`
}

// PortStatus is one port of a network: on its bridge, or recorded by kvmnet.
type PortStatus struct {
	Name     string       `json:"name"`
	Kind     string       `json:"kind"`
	KVMnet   bool         `json:"kvmnet"`
	Attached bool         `json:"attached"`
	Up       bool         `json:"up"`
	MTU      int          `json:"mtu"`
	MAC      string       `json:"mac"`
	Domain   string       `json:"domain,omitempty"` // the libvirt domain the tap is of, when the hook recorded it
	UID      *int         `json:"uid,omitempty"`    // the tap's owner (kvmnet-bridge-helper sets the VM's user); absent when none
	User     string       `json:"user,omitempty"`   // that uid's name, when /etc/passwd has it
	Guard    *GuardStatus `json:"guard,omitempty"`  // what the network's guard holds it to (guard.go); absent when nothing
	// Stats are the port's counters; absent for a port that is gone (portstats.go).
	Stats *PortStats `json:"stats,omitempty"`
	// Limits are its bandwidth limits; absent when it has none.
	Limits *PortLimits `json:"limits,omitempty"`
}

// brNFCallIptables is per network namespace since Linux 5.3, like ip_forward.
const brNFCallIptables = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// BridgeNFCallIptables returns br_netfilter's bridge-nf-call-iptables, or -1
// when the module is not loaded (bridged traffic then never meets iptables).
func BridgeNFCallIptables() int {
	b, err := os.ReadFile(brNFCallIptables)
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return v
}

// Status reports on the named networks.
func (h Host) Status(names []string) (Status, error) {
	fwd, err := lifecycle.Forwarding()
	if err != nil {
		return Status{}, err
	}
	s := Status{Schema: SchemaVersion, IPForward: fwd, BridgeNFCallIptables: BridgeNFCallIptables(), Networks: []NetworkStatus{}}
	fws := firewalls{}
	for _, name := range names {
		s.Networks = append(s.Networks, h.network(name, fws))
	}
	return s, nil
}

// firewalls opens each backend once, for the networks recorded with it.
type firewalls map[firewall.Backend]struct {
	fw  firewall.Firewall
	err error
}

// of returns the rule engine a network's record names.
func (fws firewalls) of(rec state.Network) (firewall.Firewall, error) {
	b := recordedBackend(rec)
	if f, ok := fws[b]; ok {
		return f.fw, f.err
	}
	fw, err := firewall.New(b)
	fws[b] = struct {
		fw  firewall.Firewall
		err error
	}{fw, err}
	return fw, err
}

// network gathers one network's status; what cannot be read goes to Errors.
func (h Host) network(name string, fws firewalls) NetworkStatus {
	ns := NetworkStatus{Name: name, Configured: h.Configured(name), Ports: []PortStatus{}, Forwards: []PortForwardStatus{}, Domains: []DomainStatus{}, Errors: []string{}}
	fail := func(err error) { ns.Errors = append(ns.Errors, err.Error()) }
	rec, up, err := h.Dir.Load(name)
	if err != nil {
		fail(err)
	}
	var forwards []state.Forward
	if up {
		if forwards, err = h.Dir.LoadForwards(name); err != nil {
			fail(err)
		}
	}
	conf, err := h.Resolve(name, "")
	if broken := h.File.Broken[name]; broken != nil {
		ns.Broken = broken.Error()
	} else if err != nil && ns.Configured {
		fail(err)
	}
	if !up {
		rec = state.Network{Name: name, Bridge: conf.Bridge, Mode: string(conf.Mode), Gateway: conf.Gateway, Gateway6: conf.Gateway6}
		if ns.Broken != "" {
			rec.Bridge = h.File.BrokenBridge(name)
		}
	}
	ns.Up, ns.Pinned, ns.Mode = up, rec.Pinned, rec.Mode
	if ns.Teardown, err = h.teardownOf(name, rec); err != nil {
		fail(err)
	}
	ns.Forwarding = ForwardStatus{Needed: config.Mode(rec.Mode).Forwards(), Held: rec.Forwarding}
	ns.Rules = RulesStatus{Owned: rec.Rules, Missing: []string{}}
	ns.Services = ServicesStatus{Enabled: rec.Services || (!up && config.Mode(rec.Mode).Routed() && (conf.DHCP || conf.DNS)), Leases: []LeaseStatus{}}
	br, err := bridge.Find(rec.Bridge)
	if err != nil {
		fail(err)
	}
	ns.Bridge, ns.Address = bridgeStatus(rec, br, fail), addressStatus(rec, br, fail)
	if br != nil {
		ns.Ports = h.ports(rec, br, fail)
		if up && config.Mode(rec.Mode) != config.Bridged {
			guardPorts(name, ns.Ports, fail)
		}
	}
	ns.Domains = h.domains(name, ns.Ports, fail)
	switch {
	case !up || config.Mode(rec.Mode) == config.Bridged: // a bridged network has no rules
	case os.Geteuid() != 0:
		// Reading nftables or iptables takes root: an ordinary user's
		// status says so rather than failing on it.
		ns.Rules.Firewall, ns.rulesNeedRoot = string(recordedBackend(rec)), true
	default:
		fw, fwErr := fws.of(rec)
		ns.Rules.Checked, ns.Rules.Missing = checkRules(lifecycle.FirewallNetwork(rec, forwards), fw, fwErr, fail)
		if len(ns.Rules.Missing) > 0 {
			ns.Rules.Older, _ = olderMaker(name, rec, fw.Backend())
		}
		ns.Rules.Firewall = string(recordedBackend(rec))
	}
	ns.Services.PID, ns.Services.Running = lifecycle.ServicesPID(h.Dir, name)
	ns.Services.Leases = h.leases(name, conf.LeaseFile, fail)
	ns.Forwards = forwardStatuses(forwards, up, conf, ns.Services.Leases)
	ns.VXLAN = overlayStatus(rec, conf.VXLAN, fail)
	ns.IPv6 = h.ipv6Status(rec, br, ns.Services.Running, fail)
	return ns
}

func bridgeStatus(rec state.Network, br *netlink.Bridge, fail func(error)) BridgeStatus {
	s := BridgeStatus{Name: rec.Bridge, Owned: rec.MadeBridge}
	if br == nil {
		return s
	}
	s.Exists, s.MTU = true, br.MTU
	stp, err := bridge.ReadSTP(br)
	if err != nil {
		fail(err)
	}
	s.STP, s.ForwardDelayMS = stp.On, stp.ForwardDelay.Milliseconds()
	return s
}

func addressStatus(rec state.Network, br *netlink.Bridge, fail func(error)) AddressStatus {
	s := AddressStatus{Owned: rec.MadeAddress}
	if !rec.Gateway.IsValid() {
		return s
	}
	s.Prefix = rec.Gateway.String()
	if br != nil {
		has, err := bridge.HasAddress(br, rec.Gateway)
		if err != nil {
			fail(err)
		}
		s.Present = has
	}
	return s
}

// ports lists the bridge's ports and the taps kvmnet recorded for the
// network, marking which kvmnet attached and which are still attached.
func (h Host) ports(rec state.Network, br *netlink.Bridge, fail func(error)) []PortStatus {
	out := []PortStatus{}
	seen := map[string]bool{}
	live, err := bridge.Ports(br)
	if err != nil {
		fail(err)
	}
	recorded, err := h.Dir.PortNames(rec.Name)
	if err != nil {
		fail(err)
	}
	for _, l := range live {
		seen[l.Attrs().Name] = true
		out = append(out, portStatus(l, br))
	}
	for _, tap := range recorded {
		if seen[tap] {
			continue
		}
		p := PortStatus{Name: tap, Kind: "gone"}
		if l, err := bridge.Link(tap); err == nil {
			p = portStatus(l, br)
		}
		out = append(out, p)
	}
	for i := range out {
		out[i].KVMnet = slices.Contains(recorded, out[i].Name) || rec.MadeVXLAN && out[i].Name == rec.VXLAN
		if l, err := bridge.Link(out[i].Name); err == nil {
			portTraffic(&out[i], l, fail)
		}
	}
	return out
}

// domains lists the libvirt domains recorded on the network, and names each
// one beside its taps among ports.
func (h Host) domains(name string, ports []PortStatus, fail func(error)) []DomainStatus {
	out := []DomainStatus{}
	doms, err := h.Dir.Domains(name)
	if err != nil {
		fail(err)
	}
	for _, d := range doms {
		out = append(out, DomainStatus{Name: d.Name, UUID: d.UUID, Taps: append([]string{}, d.Taps...), Since: d.Since})
		for i := range ports {
			if slices.Contains(d.Taps, ports[i].Name) {
				ports[i].Domain = d.Name
			}
		}
	}
	return out
}

func portStatus(l netlink.Link, br *netlink.Bridge) PortStatus {
	a := l.Attrs()
	p := PortStatus{
		Name: a.Name, Kind: l.Type(), Attached: a.MasterIndex == br.Index,
		Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, MAC: a.HardwareAddr.String(),
	}
	p.UID, p.User = tapOwner(l)
	return p
}

// tapOwner returns the uid that owns a tap (`ip -d link` prints it as
// "user UID"): kvmnet-bridge-helper gives a user's VM's tap to that user. The
// kernel reports an owner only when one is set; root's QEMU and libvirt set
// none, and uid 0 cannot be told from none, so only other users are named.
func tapOwner(l netlink.Link) (*int, string) {
	t, ok := l.(*netlink.Tuntap)
	if !ok || t.Owner == 0 {
		return nil, ""
	}
	uid := int(t.Owner)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return &uid, u.Username
	}
	return &uid, ""
}

// userCell names a port's user: "alice", or "uid 1000" when /etc/passwd does not say.
func userCell(p PortStatus) string {
	switch {
	case p.UID == nil:
		return "-"
	case p.User != "":
		return p.User
	}
	return "uid " + strconv.Itoa(*p.UID)
}

// recordedBackend is the rule engine a record names; records from before
// the nftables backend name none.
func recordedBackend(rec state.Network) firewall.Backend {
	if rec.Firewall == "" {
		return firewall.IPTables
	}
	return firewall.Backend(rec.Firewall)
}

// checkRules lists the recorded network's rules that are missing now.
func checkRules(n firewall.Network, fw firewall.Firewall, fwErr error, fail func(error)) (bool, []string) {
	if fwErr != nil {
		fail(fwErr)
		return false, []string{}
	}
	missing, err := fw.Check(n)
	if err != nil {
		fail(err)
		return false, []string{}
	}
	if missing == nil {
		missing = []string{}
	}
	return true, missing
}

// leases reads the network's active leases from the file its daemon was
// started with, or else the one the configuration names.
func (h Host) leases(name, confFile string, fail func(error)) []LeaseStatus {
	path := confFile
	if c, ok, err := lifecycle.ServicesConfig(h.Dir, name); err != nil {
		fail(err)
	} else if ok && c.LeaseFile != "" {
		path = c.LeaseFile
	}
	out := []LeaseStatus{}
	if path == "" {
		return out
	}
	ls, err := ctl.Leases(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fail(err)
	}
	for _, l := range ls {
		out = append(out, LeaseStatus{IP: l.IP.String(), MAC: l.MAC.String(), Hostname: l.Hostname, Expires: l.Expires, Static: l.Static})
	}
	return out
}

// WriteTable prints s as compact tables: networks, then ports, then leases.
func WriteTable(w io.Writer, s Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NETWORK\tMODE\tSTATE\tBRIDGE\tMTU\tADDRESS\tFORWARD\tRULES\tDHCP/DNS")
	for _, n := range s.Networks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, orDash(n.Mode), stateCell(n), bridgeCell(n.Bridge),
			mtuCell(n.Bridge), addressCell(n.Address), forwardCell(n.Forwarding, s.IPForward), rulesCell(n), servicesCell(n))
	}
	var ports, leases, forwards, traffic []string
	for _, n := range s.Networks {
		for _, f := range n.Forwards {
			forwards = append(forwards, forwardRow(n.Name, f))
		}
		for _, p := range n.Ports {
			ports = append(ports, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", p.Name, n.Name, p.Kind, yesNo(p.KVMnet, "kvmnet", "found"),
				yesNo(p.Attached, "attached", "detached"), mtuOf(p.MTU), orDash(p.MAC), orDash(p.Domain), userCell(p)))
			if p.KVMnet && p.Stats != nil {
				traffic = append(traffic, trafficRow(n.Name, p))
			}
		}
		for _, l := range n.Services.Leases {
			leases = append(leases, fmt.Sprintf("%s\t%s\t%s\t%s\t%s", l.IP, n.Name, l.MAC, orDash(l.Hostname), leaseEnd(l)))
		}
	}
	if len(ports) > 0 {
		fmt.Fprintln(tw, "\nPORT\tNETWORK\tKIND\tBY\tSTATE\tMTU\tMAC\tDOMAIN\tUSER")
		fmt.Fprintln(tw, strings.Join(ports, "\n"))
	}
	if len(traffic) > 0 {
		fmt.Fprintln(tw, "\nTRAFFIC\tNETWORK\tRX (FROM GUEST)\tTX (TO GUEST)\tLIMITS")
		fmt.Fprintln(tw, strings.Join(traffic, "\n"))
	}
	if len(forwards) > 0 {
		fmt.Fprintln(tw, "\nFORWARD\tHOST PORT\tNETWORK\tTO\tGUEST")
		fmt.Fprintln(tw, strings.Join(forwards, "\n"))
	}
	if len(leases) > 0 {
		fmt.Fprintln(tw, "\nLEASE\tNETWORK\tMAC\tHOSTNAME\tEXPIRES")
		fmt.Fprintln(tw, strings.Join(leases, "\n"))
	}
	writeIPv6Table(tw, s)
	writeGuardTable(tw, s)
	var overlays []string
	for _, n := range s.Networks {
		if row := overlayRow(n); row != "" {
			overlays = append(overlays, row)
		}
	}
	if len(overlays) > 0 {
		fmt.Fprintln(tw, "\nVXLAN\tNETWORK\tVNI\tPORT\tMTU\tPEERS")
		fmt.Fprintln(tw, strings.Join(overlays, "\n"))
	}
	writeEVPNTable(tw, s)
	for _, n := range s.Networks {
		if n.Broken != "" {
			fmt.Fprintf(tw, "%s: broken: %s\n", n.Name, n.Broken)
		}
		for _, e := range n.Errors {
			fmt.Fprintf(tw, "%s: %s\n", n.Name, e)
		}
	}
	return tw.Flush()
}

func stateCell(n NetworkStatus) string {
	switch {
	case n.Teardown == teardownInProgress:
		return "tearing-down"
	case n.Teardown == teardownCutShort:
		return "teardown-cut-short"
	case n.Broken != "" && n.Up:
		return "up,broken"
	case n.Broken != "":
		return "broken"
	case n.Up && n.Pinned:
		return "up,pinned"
	case n.Up:
		return "up"
	case n.Configured:
		return "down"
	}
	return "-"
}

func bridgeCell(b BridgeStatus) string {
	switch {
	case !b.Exists:
		return b.Name + " (absent)"
	case b.Owned:
		return b.Name + " (made)"
	}
	return b.Name + " (found)"
}

func mtuCell(b BridgeStatus) string {
	if !b.Exists {
		return "-"
	}
	return strconv.Itoa(b.MTU)
}

func addressCell(a AddressStatus) string {
	switch {
	case a.Prefix == "":
		return "-"
	case !a.Present:
		return a.Prefix + " (absent)"
	case a.Owned:
		return a.Prefix + " (made)"
	}
	return a.Prefix + " (found)"
}

func forwardCell(f ForwardStatus, on bool) string {
	if !f.Needed {
		return "-"
	}
	return yesNo(on, "on", "OFF")
}

func rulesCell(n NetworkStatus) string {
	switch {
	case !n.Up || config.Mode(n.Mode) == config.Bridged:
		return "-"
	case n.rulesNeedRoot:
		return "unknown (needs root)"
	case !n.Rules.Checked:
		return "unknown"
	case n.Rules.Older != "":
		return "from " + n.Rules.Older + ", replaced at next up or doctor --fix (" + n.Rules.Firewall + ")"
	case len(n.Rules.Missing) > 0:
		return fmt.Sprintf("%d MISSING (%s)", len(n.Rules.Missing), n.Rules.Firewall)
	}
	return "ok (" + n.Rules.Firewall + ")"
}

func servicesCell(n NetworkStatus) string {
	s := n.Services
	switch {
	case !n.Up:
		return "-"
	case s.Running:
		if len(s.Leases) == 1 {
			return fmt.Sprintf("pid %d, 1 lease", s.PID)
		}
		return fmt.Sprintf("pid %d, %d leases", s.PID, len(s.Leases))
	case s.Enabled:
		return "NOT RUNNING"
	}
	return "-"
}

func leaseEnd(l LeaseStatus) string {
	if l.Static {
		return "static"
	}
	return l.Expires.Local().Format(time.DateTime)
}

func mtuOf(m int) string {
	if m == 0 {
		return "-"
	}
	return strconv.Itoa(m)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
