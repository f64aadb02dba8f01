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
	// repaired: the host, put back to what the network's record held when
	// the up began (rules someone flushed, ip_forward someone turned off).
	// Reported, never undone: the network is up and serving VMs, and
	// undoing the repair would take from them what the record says they have.
	repaired
)

// step is one change of the up path with its undo. do reports what it did;
// only steps that changed or noted something are undone when a later one
// fails (never a repair), and a failing step that had begun is undone too.
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
// begun, and the ones before it that did something, newest first (but not
// their repairs), and returns the failing step's error (and any undo's error,
// joined) with the repairs it kept. It returns the names of the changes made.
func run(steps []step) (changes []string, err error) {
	var done []step
	var kept []string
	for _, s := range steps {
		out, err := s.do()
		switch out {
		case repaired:
			kept = append(kept, s.name)
		case changed, noted:
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
			return kept, err
		}
		if out == changed || out == repaired {
			changes = append(changes, s.name)
		}
	}
	return changes, nil
}
