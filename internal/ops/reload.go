package ops

import (
	"errors"
	"fmt"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// Reloaded is what Reload did to one network that is up.
type Reloaded struct {
	Network string
	Changes []string
}

// Reload applies the configuration file to the networks that are up (only to
// network name when it is not ""), as lifecycle.Reload does, without touching
// their VMs. A network named that is not up is an error; one the file no
// longer defines is left as it is (`kvmnet down` takes it away). It goes on
// past a network it cannot reload, and returns every failure joined.
func (h Host) Reload(name string) ([]Reloaded, error) {
	names := []string{name}
	if name == "" {
		var err error
		if names, err = h.Dir.Networks(); err != nil {
			return nil, err
		}
	}
	var out []Reloaded
	var errs []error
	for _, nw := range names {
		if !h.Configured(nw) {
			err := fmt.Errorf("network %s: not in %s and not up", nw, h.File.Path)
			if _, up, _ := h.Dir.Load(nw); up {
				err = fmt.Errorf("network %s: no longer in %s: left as it is (kvmnet down %s takes it away)", nw, h.File.Path, nw)
			}
			errs = append(errs, ConfigError{err})
			continue
		}
		n, err := h.Resolve(nw, config.NAT)
		if err != nil {
			errs = append(errs, ConfigError{err})
			continue
		}
		res, up, err := lifecycle.Reload(h.Dir, n)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("reload %s: %w", nw, err))
		case !up && name != "":
			errs = append(errs, fmt.Errorf("network %s: not up: nothing to reload (it takes the file as it is when it comes up)", nw))
		case up:
			out = append(out, Reloaded{Network: nw, Changes: res.Changes})
		}
	}
	return out, errors.Join(errs...)
}
