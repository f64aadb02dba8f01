package ops

import (
	"fmt"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// ipv6 checks the IPv6 side of a network with address6 that is up: its
// gateway address on the bridge and, on NAT, IPv6 forwarding.
func (c *netCheck) ipv6() []Finding {
	if !c.rec.Gateway6.IsValid() {
		return nil
	}
	var fs []Finding
	if has, err := bridge.HasAddress(c.br, c.rec.Gateway6); err == nil && !has {
		fs = append(fs, c.heal(Finding{Problem: "the IPv6 gateway address is missing: guests get no router advertisements, IPv6 DNS or route",
			Evidence: fmt.Sprintf("ip -6 addr show dev %s has no %s", c.br.Name, c.rec.Gateway6),
			Fix:      "kvmnet doctor --fix adds it"}))
	}
	if on, err := lifecycle.Forwarding6(); err == nil && !on && config.Mode(c.rec.Mode).Forwards() {
		fs = append(fs, c.heal(Finding{Problem: "IPv6 forwarding is off while this nat or routed network with address6 is up: guests cannot reach the world over IPv6",
			Evidence: "net.ipv6.conf.all.forwarding = 0", Fix: "kvmnet doctor --fix (turns it on as an up does, accept_ra included)"}))
	}
	return fs
}
