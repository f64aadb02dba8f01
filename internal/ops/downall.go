package ops

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmnet/kvmnet/internal/lifecycle"
)

// DownAll tears down every network that is up in the caller's namespace, as
// `kvmnet down --all` does (the package's prerm, before its helpers go).
// Unless force, it first checks that no VM uses any of them and, if one does,
// changes nothing and names them all: a package removal must not cut VMs off,
// nor leave some networks torn down and others not. Rules of networks that
// are not up (orphans) go too.
func (h Host) DownAll(force bool) ([]Reclaimed, error) {
	names, err := h.Dir.Networks()
	if err != nil {
		return nil, err
	}
	// With no network up there is no VM to protect, and nothing to read of
	// the namespace: a package's prerm in a chroot has no /proc.
	if !force && len(names) > 0 {
		if err := h.checkUnused(names); err != nil {
			return nil, err
		}
	}
	var out []Reclaimed
	var errs []error
	for _, name := range names {
		res, err := lifecycle.Release(h.Dir, name, force)
		out = append(out, Reclaimed{Network: name, Changes: res.Changes})
		if err != nil {
			errs = append(errs, fmt.Errorf("tear down %s: %w", name, err))
		}
	}
	// Rules no record accounts for (a crash's, a downgrade's) go too.
	orphans, err := h.removeOrphans()
	return append(out, orphans...), errors.Join(append(errs, err)...)
}

// checkUnused fails with ErrBusy naming every network a VM's tap is attached to.
func (h Host) checkUnused(names []string) error {
	s, err := h.Status(names)
	if err != nil {
		return err
	}
	var busy []string
	for _, n := range s.Networks {
		var taps []string
		for _, p := range n.Ports {
			// A port of a bridge kvmnet made holds it up, as it does for lifecycle.Release.
			if p.Attached && (p.KVMnet || n.Bridge.Owned) {
				taps = append(taps, p.Name)
			}
		}
		if len(taps) > 0 {
			busy = append(busy, n.Name+" by "+strings.Join(taps, ","))
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("networks %w: %s (stop those VMs first, or --force to detach them)",
			lifecycle.ErrBusy, strings.Join(busy, "; "))
	}
	return nil
}
