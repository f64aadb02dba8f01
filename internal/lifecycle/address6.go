package lifecycle

import (
	"fmt"

	"github.com/kvmnet/kvmnet/internal/bridge"
)

// address6 gives the bridge the network's IPv6 gateway address (address6),
// refusing a prefix that overlaps an address or route of another interface.
// As for the IPv4 address, the record says kvmnet adds it before it does.
func (u *upCall) address6() (outcome, error) {
	has, err := bridge.HasAddress(u.br, u.n.Gateway6)
	if err != nil || has {
		return unchanged, err
	}
	if err := bridge.CheckOverlap(u.n.Subnet6(), u.br.Index); err != nil {
		return unchanged, fmt.Errorf("add %s to %s: %w", u.n.Gateway6, u.n.Bridge, err)
	}
	u.rec.MadeAddress6 = true
	if err := u.intend(fmt.Sprintf("add %s to %s", u.n.Gateway6, u.n.Bridge)); err != nil {
		return unchanged, err
	}
	if err := bridge.AddAddress(u.br, u.n.Gateway6); err != nil {
		u.rec.MadeAddress6 = u.held.MadeAddress6
		return unchanged, err
	}
	return u.repairOf(u.held.MadeAddress6), nil
}

func (u *upCall) unaddress6() error {
	u.rec.MadeAddress6 = false
	return bridge.DelAddress(u.br, u.n.Gateway6)
}
