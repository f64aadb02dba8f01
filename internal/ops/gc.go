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
	// Note says what gc found of a last down's teardown: one in progress
	// that it waited for, or one cut short that it finished.
	Note string
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
		td, _ := h.teardownState(name)
		// Reclaim waits for the lock, so for a teardown in progress too.
		res, gone, err := lifecycle.Reclaim(h.Dir, name)
		switch {
		case td == teardownInProgress && !gone && err == nil:
			out = append(out, Reclaimed{Network: name, Note: "its last down's teardown was in progress: gc waited for it to finish"})
		case td == teardownCutShort && gone:
			out = append(out, Reclaimed{Network: name, Changes: res.Changes, Note: "its last down's teardown was cut short: gc finished it"})
		case gone:
			out = append(out, Reclaimed{Network: name, Changes: res.Changes})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reclaim %s: %w", name, err))
		}
	}
	orphans, err := h.removeOrphans()
	return append(out, orphans...), errors.Join(append(errs, err)...)
}

// GCNetwork is GC for one network, leaving one a libvirt domain is recorded
// on to the hook (lifecycle.Vacated): what its DHCP/DNS daemon runs when the
// network's last tap was deleted.
func (h Host) GCNetwork(name string) ([]Reclaimed, error) {
	res, gone, err := lifecycle.Vacated(h.Dir, name)
	if err != nil {
		err = fmt.Errorf("reclaim %s: %w", name, err)
	}
	if !gone {
		return nil, err
	}
	return []Reclaimed{{Network: name, Changes: res.Changes}}, err
}
