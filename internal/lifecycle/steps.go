// Package lifecycle is what the helpers do: bring a VM's tap onto its network,
// setting the network up on first use, and take it off, tearing the network
// down with the last VM. Every change is recorded in package state before it
// is made, so the teardown undoes exactly what kvmnet did and nothing an admin
// or another program did, even after a helper was killed halfway.
package lifecycle

import (
	"errors"
	"fmt"
)

// outcome is what a step did.
type outcome int

const (
	unchanged outcome = iota // nothing: there is nothing to undo
	noted                    // kvmnet's records only (a user of ip_forward, a port): undone on failure, not reported
	changed                  // the host: undone on failure, and reported
)

// step is one change of the up path with its undo. do reports what it did;
// only steps that did something are undone when a later one fails, and a
// failing step that had begun (its outcome is not unchanged) is undone too.
type step struct {
	name string
	do   func() (outcome, error)
	undo func() error
	// named: do's errors already name the step (they come from package
	// bridge, whose errors say what they did to which link), so run adds
	// nothing rather than say it twice.
	named bool
}

// run performs the steps in order. When one fails it undoes it, if it had
// begun, and the ones before it that did something, newest first, and
// returns the failing step's error (and any undo's error, joined). It returns
// the names of the changes made.
func run(steps []step) (changes []string, err error) {
	var done []step
	for _, s := range steps {
		out, err := s.do()
		if out != unchanged {
			done = append(done, s)
		}
		if err != nil {
			if !s.named {
				err = fmt.Errorf("%s: %w", s.name, err)
			}
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
		if out == changed {
			changes = append(changes, s.name)
		}
	}
	return changes, nil
}
