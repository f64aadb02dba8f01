package lifecycle

import (
	"github.com/kvmnet/kvmnet/internal/bridge"
)

// address6 gives the bridge the network's IPv6 gateway address (address6),
// refusing a prefix that overlaps an address or route of another interface.
func (u *upCall) address6() (bool, error) {
	has, err := bridge.HasAddress(u.br, u.n.Gateway6)
	if err != nil || has {
		return false, err
	}
	if err := bridge.CheckOverlap(u.n.Subnet6(), u.br.Index); err != nil {
		return false, err
	}
	if err := bridge.AddAddress(u.br, u.n.Gateway6); err != nil {
		return false, err
	}
	u.rec.MadeAddress6 = true
	return true, nil
}

func (u *upCall) unaddress6() error {
	u.rec.MadeAddress6 = false
	return bridge.DelAddress(u.br, u.n.Gateway6)
}
