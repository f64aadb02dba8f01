package ops

import (
	"errors"
	"fmt"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// Reclaimed is a network gc tore down, and what that changed.
type Reclaimed struct {
	Network string
	Changes []string
}

// GC tears down every network no live VM uses any more (its VMs were killed
// with SIGKILL and ran no downscript), exactly as its last down would have,
// and forgets the taps of dead VMs on the others. Pinned networks stay. Each
// network is handled under its lock, so gc is safe while VMs come and go.
func (h Host) GC() ([]Reclaimed, error) {
	names, err := h.Dir.Networks()
	if err != nil {
		return nil, err
	}
	half, err := h.Dir.HalfWritten()
	if err != nil {
		return nil, err
	}
	names = append(names, half...)
	var out []Reclaimed
	var errs []error
	for _, name := range names {
		res, gone, err := lifecycle.Reclaim(h.Dir, name)
		if gone {
			out = append(out, Reclaimed{Network: name, Changes: res.Changes})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reclaim %s: %w", name, err))
		}
	}
	return out, errors.Join(errs...)
}
