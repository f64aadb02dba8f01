package ops

import (
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// Heal puts back network name's rules when someone took some away, with
// whatever else of the network went missing, as `kvmnet doctor --fix` does
// for it alone (lifecycle.HealRules). A network that is not up stays down.
// It returns the changes made, named as the steps are.
func (h Host) Heal(name string) ([]string, error) {
	n, err := h.Resolve(name, config.NAT)
	if err != nil {
		return nil, ConfigError{err}
	}
	res, err := lifecycle.HealRules(h.Dir, n)
	return res.Changes, err
}
