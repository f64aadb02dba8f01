package ops

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/portguard"
)

// What status and doctor say of the guards (docs/guard.md).

// GuardStatus is what a network's guard holds a port to: the MAC and (nat,
// hostonly) address it learned the port sends from, and whether the port
// is an isolated bridge port (isolate_guests).
//
//	"guard": {"mac": "52:54:00:3c:a1:07", "ip": "192.168.100.10", "isolated": false}
type GuardStatus struct {
	MAC      string `json:"mac,omitempty"`
	IP       string `json:"ip,omitempty"`
	Isolated bool   `json:"isolated"`
}

// guardPorts fills the guard's view of each attached port of network name.
func guardPorts(name string, ports []PortStatus, fail func(error)) {
	learned, err := portguard.Ports(name)
	if err != nil {
		fail(err)
	}
	for i := range ports {
		p := &ports[i]
		if !p.Attached {
			continue
		}
		l, err := bridge.Link(p.Name)
		if err != nil {
			continue // gone since the ports were listed
		}
		g := &GuardStatus{}
		if lp := learned[l.Attrs().Index]; lp != nil {
			if lp.MAC != nil {
				g.MAC = lp.MAC.String()
			}
			if lp.IP.IsValid() {
				g.IP = lp.IP.String()
			}
		}
		if g.Isolated, err = bridge.Isolated(l); err != nil {
			fail(err)
		}
		if *g != (GuardStatus{}) {
			p.Guard = g
		}
	}
}

// writeGuardTable prints the ports a guard holds or that are isolated.
func writeGuardTable(w io.Writer, s Status) {
	var rows []string
	for _, n := range s.Networks {
		for _, p := range n.Ports {
			if g := p.Guard; g != nil {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s", p.Name, n.Name, orDash(g.MAC), orDash(g.IP), yesNo(g.Isolated, "isolated", "-")))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w, "\nGUARDED PORT\tNETWORK\tMAC\tADDRESS\tISOLATION")
		fmt.Fprintln(w, strings.Join(rows, "\n"))
	}
}

// guardNetwork is the network's rules as the configuration wants its guard.
func (c *netCheck) guardNetwork() firewall.Network {
	n := lifecycle.FirewallNetwork(c.rec, c.forwards)
	if c.confE == nil {
		n.Guard = lifecycle.PortGuard(c.conf)
	}
	return n
}

// guardDrops reports what the guard dropped: not a fault of the host's (a
// guest sent what it may not), but what the admin of a shared host wants to
// know, with the rules that counted most.
func (c *netCheck) guardDrops() []Finding {
	if config.Mode(c.rec.Mode) == config.Bridged {
		return nil
	}
	d, err := firewall.GuardDrops(c.guardNetwork())
	if err != nil {
		return []Finding{{Network: c.name, Info: true, Problem: "the guard's counters cannot be read", Evidence: err.Error(), Fix: "see the evidence"}}
	}
	var total uint64
	var rules []string
	for r, n := range d {
		if n > 0 {
			total += n
			rules = append(rules, r)
		}
	}
	if total == 0 {
		return nil
	}
	slices.SortFunc(rules, func(a, b string) int { return int(d[b]) - int(d[a]) })
	var ev []string
	for _, r := range rules[:min(3, len(rules))] {
		ev = append(ev, fmt.Sprintf("%d by %s", d[r], r))
	}
	return []Finding{{Network: c.name, Info: true,
		Problem:  fmt.Sprintf("the guard dropped %d frames guests sent with a MAC or address not theirs, or as a router or DHCP server", total),
		Evidence: "nft list table bridge " + portguard.Table(c.name).Name + ": " + strings.Join(ev, "; ") + more(len(rules)-3),
		Fix:      "none needed; `kvmnet status` shows each port's MAC and address (docs/guard.md)"}}
}
