// Package lifecycle is what the helpers do: bring a VM's tap onto its network,
// setting the network up on first use, and take it off, tearing the network
// down with the last VM. Every change is recorded in package state, so the
// teardown undoes exactly what kvmnet did and nothing an admin or another
// program did.
package lifecycle

import (
	"errors"
	"fmt"
)

// step is one change of the up path with its undo. do reports whether it
// changed anything; only those steps are undone when a later one fails.
type step struct {
	name string
	do   func() (changed bool, err error)
	undo func() error
}

// run performs the steps in order. When one fails it undoes the ones before
// it that changed something, newest first, and returns the failing step's
// name with its error (and any undo's error, joined). It returns the names
// of the changes made.
func run(steps []step) (changes []string, err error) {
	var done []step
	for _, s := range steps {
		changed, err := s.do()
		if err != nil {
			err = fmt.Errorf("%s: %w", s.name, err)
			for i := len(done) - 1; i >= 0; i-- {
				if done[i].undo == nil {
					continue
				}
				if uerr := done[i].undo(); uerr != nil {
					err = errors.Join(err, fmt.Errorf("undo %s: %w", done[i].name, uerr))
				}
			}
			return nil, err
		}
		if changed {
			done = append(done, s)
			changes = append(changes, s.name)
		}
	}
	return changes, nil
}
