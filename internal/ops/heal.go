package ops

import (
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// Heal puts back what kvmnet set up for network name and someone took away
// (its rules above all), as `kvmnet doctor --fix` does for it alone: the
// lifecycle's own up steps, with no VM (lifecycle.Heal). A network that is
// not up stays down. It returns the changes made, named as the steps are.
func (h Host) Heal(name string) ([]string, error) {
	n, err := h.Resolve(name, config.NAT)
	if err != nil {
		return nil, ConfigError{err}
	}
	res, err := lifecycle.Heal(h.Dir, n)
	return res.Changes, err
}
