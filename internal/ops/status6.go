package ops

import (
	"fmt"
	"io"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/state"
)

// IPv6Status is the IPv6 side of a network with address6: its gateway
// address, whether its daemon advertises the prefix (RA), and its use of
// IPv6 forwarding (NAT). Absent for a network without address6.
type IPv6Status struct {
	Address    AddressStatus `json:"address"`
	RA         bool          `json:"ra"` // the daemon runs with address6: it sends router advertisements
	Forwarding ForwardStatus `json:"forwarding"`
	On         bool          `json:"forwarding_on"` // net.ipv6.conf.all.forwarding
}

// ipv6Status reads the IPv6 side of a network; nil when it has none.
func (h Host) ipv6Status(rec state.Network, br *netlink.Bridge, running bool, fail func(error)) *IPv6Status {
	if !rec.Gateway6.IsValid() {
		return nil
	}
	s := &IPv6Status{
		Address:    AddressStatus{Prefix: rec.Gateway6.String(), Owned: rec.MadeAddress6},
		Forwarding: ForwardStatus{Needed: config.Mode(rec.Mode).Forwards(), Held: rec.Forwarding6},
	}
	if br != nil {
		has, err := bridge.HasAddress(br, rec.Gateway6)
		if err != nil {
			fail(err)
		}
		s.Address.Present = has
	}
	if c, ok, err := lifecycle.ServicesConfig(h.Dir, rec.Name); err != nil {
		fail(err)
	} else {
		s.RA = running && ok && c.Gateway6.IsValid()
	}
	on, err := lifecycle.Forwarding6()
	if err != nil {
		fail(err)
	}
	s.On = on
	return s
}

// writeIPv6Table prints the IPv6 side of the networks that have one.
func writeIPv6Table(w io.Writer, s Status) {
	var rows []string
	for _, n := range s.Networks {
		if v := n.IPv6; v != nil {
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s", n.Name, addressCell(v.Address),
				yesNo(v.RA, "on", "off"), forwardCell(v.Forwarding, v.On)))
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w, "\nIPV6\tADDRESS6\tRA\tFORWARD6")
		fmt.Fprintln(w, strings.Join(rows, "\n"))
	}
}
