package ops

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// QEMUDefaultMAC is the MAC every QEMU NIC gets without mac=: two guests with
// it on one bridge break each other.
const QEMUDefaultMAC = "52:54:00:12:34:56"

// Finding is one thing `kvmnet doctor` found.
type Finding struct {
	Network  string // "" when it concerns the whole namespace
	Problem  string // what is wrong
	Evidence string // what shows it
	Fix      string // what repairs it
	Info     bool   // worth knowing but not a fault: doctor still exits 0

	// repair fixes it when kvmnet owns what is wrong; key dedupes repairs
	// shared by several findings (one heal per network).
	repair func() ([]string, error)
	key    string
}

// String is the finding's line: "problem: network NAME: PROBLEM; evidence: …; fix: …".
func (f Finding) String() string {
	level, scope := "problem", ""
	if f.Info {
		level = "info"
	}
	if f.Network != "" {
		scope = "network " + f.Network + ": "
	}
	return fmt.Sprintf("%s: %s%s; evidence: %s; fix: %s", level, scope, f.Problem, f.Evidence, f.Fix)
}

// Fixable reports whether `kvmnet doctor --fix` repairs it.
func (f Finding) Fixable() bool { return f.repair != nil }

// Healthy reports whether no finding is a fault.
func Healthy(fs []Finding) bool {
	return !slices.ContainsFunc(fs, func(f Finding) bool { return !f.Info })
}

// Diagnose checks the namespace and every network kvmnet knows.
func (h Host) Diagnose() ([]Finding, error) {
	names, err := h.Names()
	if err != nil {
		return nil, err
	}
	fwdOn, err := lifecycle.Forwarding()
	if err != nil {
		return nil, err
	}
	fws := firewalls{}
	fs := h.iptablesFindings(names, fws)
	fs = append(fs, h.orphanFindings()...)
	for _, name := range names {
		if f, broken := h.brokenFinding(name); broken {
			fs = append(fs, f)
			if !h.upBroken(name) {
				continue
			}
		}
		// A doctor run right after a last down (natdown; kvmnet doctor)
		// finds its teardown at work: wait for it rather than report half a network.
		if td, err := h.awaitTeardown(name, teardownWait); err == nil && td == teardownInProgress {
			fs = append(fs, h.teardownFinding(name))
			continue
		}
		c, err := h.check(name, fws, fwdOn)
		if err != nil {
			fs = append(fs, Finding{Network: name, Problem: "cannot be checked", Evidence: err.Error(), Fix: "see the evidence"})
			continue
		}
		fs = append(fs, c.findings()...)
	}
	return fs, nil
}

// Firewall names the rule engine a network coming up now gets, and why,
// e.g. "nftables (auto: no legacy iptables tables)"; networks that are up
// keep theirs (status shows it).
func (h Host) Firewall() string {
	b, why, err := firewall.Choose(firewall.Backend(h.File.Firewall))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s (%s)", b, why)
}

// Fix repairs every finding kvmnet owns, each once, and returns what it changed.
func Fix(fs []Finding) ([]string, error) {
	var changes []string
	var errs []error
	done := map[string]bool{}
	for _, f := range fs {
		if f.repair == nil || done[f.key] {
			continue
		}
		done[f.key] = true
		ch, err := f.repair()
		changes = append(changes, ch...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return changes, errors.Join(errs...)
}

// iptablesFindings: without iptables no network on the iptables backend
// (new ones, as the file picks, or those up with it) can have rules.
func (h Host) iptablesFindings(names []string, fws firewalls) []Finding {
	b, _, err := firewall.Choose(firewall.Backend(h.File.Firewall))
	if err != nil {
		return []Finding{{Problem: "the firewall backend cannot be chosen", Evidence: err.Error(), Fix: "set firewall in " + h.File.Path}}
	}
	needed := b == firewall.IPTables
	for _, name := range names {
		if rec, up, err := h.Dir.Load(name); err == nil && up && (rec.Firewall == "" || rec.Firewall == string(firewall.IPTables)) {
			needed = true
		}
	}
	if !needed {
		return nil
	}
	_, fwErr := fws.of(state.Network{Firewall: string(firewall.IPTables)})
	if fwErr == nil {
		return nil
	}
	if errors.Is(fwErr, firewall.ErrNoIptables) {
		return []Finding{{Problem: "iptables is missing", Evidence: fwErr.Error() + " (PATH=" + os.Getenv("PATH") + ")",
			Fix: "apt-get install iptables"}}
	}
	return []Finding{{Problem: "iptables is unusable", Evidence: fwErr.Error(), Fix: "update-alternatives --config iptables"}}
}

// netCheck is one network as doctor sees it.
type netCheck struct {
	h     Host
	name  string
	rec   state.Network
	up    bool
	conf  config.Net
	confE error
	br    *netlink.Bridge
	fw    firewall.Firewall // nil when it cannot be opened (iptablesFindings says why)
	// forwards are the network's recorded port forwards.
	forwards []state.Forward
	fwdOn    bool
}

func (h Host) check(name string, fws firewalls, fwdOn bool) (*netCheck, error) {
	c := &netCheck{h: h, name: name, fwdOn: fwdOn}
	var err error
	if c.rec, c.up, err = h.Dir.Load(name); err != nil {
		return nil, err
	}
	if c.forwards, err = h.Dir.LoadForwards(name); err != nil {
		return nil, err
	}
	if c.up {
		c.fw, _ = fws.of(c.rec)
	}
	// A network that is not up is checked as kvmnet-natup would make it
	// when the file gives no mode.
	c.conf, c.confE = h.Resolve(name, config.NAT)
	if !c.up {
		if c.confE != nil {
			return nil, c.confE
		}
		return c, nil
	}
	c.br, err = bridge.Find(c.rec.Bridge)
	return c, err
}

func (c *netCheck) findings() []Finding {
	if !c.up {
		return append(c.overlap(0), c.underlay()...)
	}
	if c.rec.Doing != "" {
		// What follows would only list the parts it did not get to.
		return []Finding{c.interrupted()}
	}
	if c.br == nil {
		return []Finding{c.heal(Finding{Problem: "bridge " + c.rec.Bridge + " is gone",
			Evidence: "ip link show " + c.rec.Bridge + ": no such device", Fix: "kvmnet doctor --fix makes it again"})}
	}
	fs := c.overlap(c.br.Index)
	if config.Mode(c.rec.Mode) == config.Bridged {
		// The bridge and its LAN are the admin's: kvmnet has no rules
		// there, and its STP is theirs to choose.
		return append(append(fs, c.mtu()...), c.macs()...)
	}
	for _, f := range [][]Finding{c.forwarding(), c.address(), c.ipv6(), c.quiet(), c.rules(), c.services(), c.watcher(), c.forwardChain(), c.stp(), c.mtu(), c.macs(), c.underlay(), c.portForwards(), c.guardDrops()} {
		fs = append(fs, f...)
	}
	return fs
}

// interrupted: a helper was killed while it set the network up, or a last
// down's background teardown was killed. Its record names what it made or was
// about to; the repair undoes all of it when no VM uses the network, as gc
// would, and else finishes it, as the next up would.
func (c *netCheck) interrupted() Finding {
	n, confE := c.conf, c.confE
	problem, who := "an up was killed halfway: the network is half made", "the up"
	ev := fmt.Sprintf("%s: %s was about to %s", c.h.Dir.File(c.name, ".json"), who, c.rec.Doing)
	if c.rec.TearingDown {
		problem, who = "a last down's teardown was cut short: the network is half gone", "the teardown"
		ev = fmt.Sprintf("%s: %s was about to %s, and no process holds %s (its child was killed)",
			c.h.Dir.File(c.name, ".json"), who, c.rec.Doing, c.h.Dir.File(c.name, ".lock"))
	}
	return Finding{Network: c.name, Problem: problem,
		Evidence: ev,
		Fix:      "kvmnet doctor --fix (or kvmnet gc) undoes it when no VM uses the network, else finishes it",
		key:      "heal " + c.name,
		repair: func() ([]string, error) {
			res, gone, err := lifecycle.Reclaim(c.h.Dir, c.name)
			if gone || err != nil {
				return res.Changes, err
			}
			if confE != nil {
				return nil, fmt.Errorf("finish %s: %w", c.name, confE)
			}
			res, err = lifecycle.Heal(c.h.Dir, n)
			return res.Changes, err
		}}
}

// heal attaches the repair of what kvmnet set up for the network: the
// lifecycle's own up steps, run without a VM (lifecycle.Heal).
func (c *netCheck) heal(f Finding) Finding {
	f.Network = c.name
	if c.confE != nil {
		f.Fix += fmt.Sprintf(" (not now: %s)", c.confE)
		return f
	}
	n := c.conf
	f.key = "heal " + c.name
	f.repair = func() ([]string, error) {
		res, err := lifecycle.Heal(c.h.Dir, n)
		if err != nil {
			return res.Changes, fmt.Errorf("heal %s: %w", n.Name, err)
		}
		return res.Changes, nil
	}
	return f
}

func (c *netCheck) overlap(brIndex int) []Finding {
	if f, ok := c.leftover(); ok {
		return []Finding{f}
	}
	gw := c.rec.Gateway
	if !c.up {
		gw = c.conf.Gateway
	}
	if !gw.IsValid() {
		return nil
	}
	err := bridge.CheckOverlap(gw.Masked(), brIndex)
	if err == nil {
		return nil
	}
	what := "its subnet overlaps a host address or route: guests and that network cannot reach each other"
	if !c.up {
		what = "its subnet overlaps a host address or route: it would fail to come up"
	}
	return []Finding{{Network: c.name, Problem: what, Evidence: err.Error(),
		Fix: fmt.Sprintf("pick another address for network %s in %s", c.name, c.h.File.Path)}}
}

func (c *netCheck) forwarding() []Finding {
	if !config.Mode(c.rec.Mode).Forwards() || c.fwdOn {
		return nil
	}
	return []Finding{c.heal(Finding{Problem: "ip_forward is off while this nat or routed network is up: guests cannot reach the world",
		Evidence: "net.ipv4.ip_forward = 0", Fix: "kvmnet doctor --fix (sysctl -w net.ipv4.ip_forward=1)"})}
}

func (c *netCheck) address() []Finding {
	if !c.rec.Gateway.IsValid() {
		return nil
	}
	has, err := bridge.HasAddress(c.br, c.rec.Gateway)
	if err != nil || has {
		return nil
	}
	return []Finding{c.heal(Finding{Problem: "the gateway address is missing: guests get no DHCP, DNS or route",
		Evidence: fmt.Sprintf("ip -4 addr show dev %s has no %s", c.br.Name, c.rec.Gateway),
		Fix:      "kvmnet doctor --fix adds it"})}
}

// quiet: on an isolated network's bridge the host must answer no ARP or NDP
// for its addresses on other links.
func (c *netCheck) quiet() []Finding {
	if config.Mode(c.rec.Mode) != config.Isolated {
		return nil
	}
	var fs []Finding
	for _, s := range []struct{ family, key, want, what string }{
		{"ipv4", "arp_ignore", "8", "answers ARP"},
		{"ipv6", "disable_ipv6", "1", "speaks IPv6"},
	} {
		v, ok, err := bridge.ReadConf(s.family, c.br.Name, s.key)
		if err != nil || !ok || v == s.want {
			continue
		}
		fs = append(fs, c.heal(Finding{Problem: "the host " + s.what + " on the isolated bridge " + c.br.Name + " for its addresses on other links",
			Evidence: fmt.Sprintf("net.%s.conf.%s.%s = %s", s.family, c.br.Name, s.key, v),
			Fix:      fmt.Sprintf("kvmnet doctor --fix sets it to %s", s.want)}))
	}
	return fs
}

func (c *netCheck) rules() []Finding {
	if c.fw == nil {
		return nil
	}
	missing, err := c.fw.Check(c.guardNetwork())
	if err != nil {
		return []Finding{{Network: c.name, Problem: "rules cannot be read", Evidence: err.Error(), Fix: "see the evidence"}}
	}
	if len(missing) == 0 {
		return nil
	}
	if f, ok := c.olderRules(missing); ok {
		return []Finding{f}
	}
	problem, lacks := "(a firewall reload, iptables -F?)", "iptables-save lacks: "
	if c.fw.Backend() == firewall.NFTables {
		problem, lacks = "(nftables backend: a firewall reload, nft flush ruleset?)", "nft list ruleset lacks: "
	}
	return []Finding{c.heal(Finding{
		Problem:  fmt.Sprintf("%d of kvmnet's rules are missing %s", len(missing), problem),
		Evidence: lacks + missing[0] + more(len(missing)-1),
		Fix:      "kvmnet doctor --fix puts them back"})}
}

func more(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" and %d more", n)
}

func (c *netCheck) services() []Finding {
	if !c.rec.Services {
		return nil
	}
	if _, ok := lifecycle.ServicesPID(c.h.Dir, c.name); ok {
		return nil
	}
	return []Finding{c.heal(Finding{Problem: "the DHCP/DNS daemon is not running: guests get no address",
		Evidence: "no kvmnet-netsvc process for " + c.name + " (its pid file names none alive)", Fix: "kvmnet doctor --fix starts it"})}
}

// forwardChain: with br_netfilter's bridge-nf-call-iptables on, traffic
// between guests on one bridge crosses FORWARD, where a DROP policy (Docker
// sets one) or another program's DROP/REJECT would eat it. kvmnet's jump,
// first in FORWARD, accepts it before either is reached.
func (c *netCheck) forwardChain() []Finding {
	if c.fw == nil || BridgeNFCallIptables() != 1 {
		return nil
	}
	fw, err := c.fw.Forward(lifecycle.FirewallNetwork(c.rec, c.forwards))
	if err != nil || (fw.Policy != "DROP" && fw.Blocker < 0) {
		return nil
	}
	what, ev := "FORWARD policy DROP", "iptables -S FORWARD: -P FORWARD DROP"
	if fw.Blocker >= 0 {
		what, ev = fmt.Sprintf("FORWARD rule %d drops", fw.Blocker+1), "iptables-save: "+fw.Rule
	}
	ev += "; bridge-nf-call-iptables = 1"
	switch {
	case fw.Jump >= 0 && (fw.Blocker < 0 || fw.Jump < fw.Blocker):
		return []Finding{{Network: c.name, Info: true,
			Problem:  what + " bridged traffic, but kvmnet's " + fw.Ours + " comes first and decides all of " + c.rec.Bridge + "'s traffic",
			Evidence: ev + fmt.Sprintf("; kvmnet's is FORWARD rule %d", fw.Jump+1), Fix: "none needed"}}
	case fw.Jump < 0:
		return []Finding{c.heal(Finding{Problem: what + " traffic between guests on " + c.rec.Bridge + ", and kvmnet's " + fw.Kind + " is missing",
			Evidence: ev, Fix: "kvmnet doctor --fix inserts it first in FORWARD"})}
	}
	return []Finding{{Network: c.name, Problem: what + " traffic between guests on " + c.rec.Bridge + " before kvmnet's " + fw.Ours,
		Evidence: ev + fmt.Sprintf("; kvmnet's is FORWARD rule %d", fw.Jump+1),
		Fix:      fw.Unhook + ", then kvmnet doctor --fix inserts it first (or sysctl -w net.bridge.bridge-nf-call-iptables=0)"}}
}

func (c *netCheck) stp() []Finding {
	s, err := bridge.ReadSTP(c.br)
	if err != nil || !s.Stalls() {
		return nil
	}
	f := Finding{Network: c.name,
		Problem:  fmt.Sprintf("STP with forward delay on %s: a new VM's port waits %s before forwarding and its first DHCP requests are lost", c.br.Name, 2*s.ForwardDelay),
		Evidence: fmt.Sprintf("ip -d link show %s: stp_state 1 forward_delay %d", c.br.Name, s.ForwardDelay.Milliseconds()/10),
		Fix:      "ip link set " + c.br.Name + " type bridge stp_state 0"}
	if c.rec.MadeBridge {
		br := c.br
		f.Fix = "kvmnet doctor --fix turns STP off on the bridge kvmnet made"
		f.key, f.repair = "stp "+c.name, func() ([]string, error) {
			return []string{"turn off STP on " + br.Name}, bridge.DisableSTP(br)
		}
	}
	return []Finding{f}
}

// mtu: a tap with another MTU than its bridge drops the guest's full-size
// frames. The MTU to repair to is the network's configured one on a bridge
// kvmnet made (a smaller port drags the bridge's down with it, and following
// the bridge would shrink every tap to that), else the bridge's.
func (c *netCheck) mtu() []Finding {
	ports, err := bridge.Ports(c.br)
	if err != nil {
		return nil
	}
	want := c.br.MTU
	var fs []Finding
	if c.confE == nil && c.conf.MTU > 0 && c.rec.MadeBridge && c.conf.MTU != c.br.MTU {
		want = c.conf.MTU
		br := c.br
		fs = append(fs, Finding{Network: c.name,
			Problem:  fmt.Sprintf("bridge %s's MTU is not the configured %d: a port with a smaller MTU lowered it", br.Name, want),
			Evidence: fmt.Sprintf("%s mtu %d, %s says mtu = %d", br.Name, br.MTU, c.h.File.Path, want),
			Fix:      fmt.Sprintf("kvmnet doctor --fix sets it back (ip link set %s mtu %d)", br.Name, want),
			key:      "mtu " + br.Name,
			repair: func() ([]string, error) {
				return []string{fmt.Sprintf("set %s mtu %d", br.Name, want)}, bridge.SetMTU(br, want)
			}})
	}
	recorded, _ := c.h.Dir.PortNames(c.name)
	for _, p := range ports {
		a := p.Attrs()
		if a.MTU == want {
			continue
		}
		f := Finding{Network: c.name, Problem: fmt.Sprintf("port %s's MTU differs from its bridge's: large frames are dropped", a.Name),
			Evidence: fmt.Sprintf("%s mtu %d, %s mtu %d", a.Name, a.MTU, c.br.Name, want),
			Fix:      fmt.Sprintf("ip link set %s mtu %d", a.Name, want)}
		if slices.Contains(recorded, a.Name) {
			port := p
			f.Fix = fmt.Sprintf("kvmnet doctor --fix gives the tap kvmnet attached the MTU %d", want)
			f.key, f.repair = "mtu "+a.Name, func() ([]string, error) {
				return []string{fmt.Sprintf("set %s mtu %d", port.Attrs().Name, want)}, bridge.SetMTU(port, want)
			}
		}
		fs = append(fs, f)
	}
	return fs
}

// macs finds MACs that break guests: the same MAC on two ports (libvirt gives
// a tap its guest's MAC with fe: first, so two guests with one MAC show up
// here), a guest MAC the bridge learned on two ports, and QEMU's default MAC,
// learned from a guest or carried by a libvirt tap.
func (c *netCheck) macs() []Finding {
	ports, err := bridge.Ports(c.br)
	if err != nil {
		return nil
	}
	learned, _ := bridge.Learned(c.br)
	names := map[int]string{}
	seen := map[string][]string{}
	add := func(mac net.HardwareAddr, port string) {
		m := mac.String()
		if m != "" && !slices.Contains(seen[m], port) {
			seen[m] = append(seen[m], port)
		}
	}
	for _, p := range ports {
		names[p.Attrs().Index] = p.Attrs().Name
		add(p.Attrs().HardwareAddr, p.Attrs().Name)
	}
	for _, n := range learned {
		if name, ok := names[n.LinkIndex]; ok {
			add(n.HardwareAddr, name)
		}
	}
	var fs []Finding
	for _, mac := range sortedKeys(seen) {
		on := seen[mac]
		if len(on) > 1 {
			fs = append(fs, Finding{Network: c.name, Problem: "two ports share one MAC: both guests lose packets",
				Evidence: fmt.Sprintf("%s on %s", mac, strings.Join(on, " and ")),
				Fix:      "give each VM its own MAC: -device …,mac=$(kvmnet mac VMNAME)"})
		}
		if mac == QEMUDefaultMAC || mac == "fe"+QEMUDefaultMAC[2:] {
			fs = append(fs, Finding{Network: c.name, Problem: "QEMU's default MAC " + QEMUDefaultMAC + " is in use: a second guest without mac= collides with it",
				Evidence: fmt.Sprintf("%s on %s (bridge fdb show br %s)", mac, strings.Join(on, ", "), c.br.Name),
				Fix:      "give each VM its own MAC: -device …,mac=$(kvmnet mac VMNAME)"})
		}
	}
	return fs
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
