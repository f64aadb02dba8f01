package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvmnet/kvmnet/internal/state"
)

// ipForward is per network namespace: /proc/sys/net shows the opener's namespace.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// forwarding is the host-wide record of ip_forward: which NAT networks need it
// and whether kvmnet turned it on, so that it goes back off only when kvmnet
// turned it on and the last NAT network is gone, and never when an admin did.
const forwardingFile = "forwarding.state"

type forwarding struct {
	TurnedOn bool     `json:"turned_on"`
	Users    []string `json:"users"`
}

// Forwarding reports whether ip_forward is on in this namespace.
func Forwarding() (bool, error) {
	b, err := os.ReadFile(ipForward)
	if err != nil {
		return false, fmt.Errorf("read ip_forward: %w", err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

func setForwarding(on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	if err := os.WriteFile(ipForward, []byte(v), 0o644); err != nil {
		return fmt.Errorf("write ip_forward: %w", err)
	}
	return nil
}

// acquireForwarding registers network as a user of ip_forward and turns it on
// if it is off, remembering that kvmnet did. The record is written before
// ip_forward is turned on, so a helper killed in between leaves a record that
// the network's teardown settles. It reports whether it turned ip_forward on.
func acquireForwarding(d state.Dir, network string) (turnedOn bool, err error) {
	err = updateForwarding(d, func(f *forwarding) (func() error, bool, error) {
		on, err := Forwarding()
		if err != nil {
			return nil, false, err
		}
		if on && slices.Contains(f.Users, network) {
			return nil, false, nil
		}
		if !slices.Contains(f.Users, network) {
			f.Users = append(f.Users, network)
		}
		if on {
			return noAct, false, nil
		}
		f.TurnedOn, turnedOn = true, true
		return func() error { return setForwarding(true) }, false, nil
	})
	return turnedOn, err
}

// releaseForwarding drops network's use of ip_forward and turns it off when
// kvmnet turned it on and no other network uses it. It reports whether it
// turned ip_forward off.
func releaseForwarding(d state.Dir, network string) (turnedOff bool, err error) {
	err = updateForwarding(d, func(f *forwarding) (func() error, bool, error) {
		i := slices.Index(f.Users, network)
		if i < 0 {
			return nil, false, nil
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		if len(f.Users) > 0 || !f.TurnedOn {
			return noAct, false, nil
		}
		f.TurnedOn = false
		on, err := Forwarding()
		if err != nil || !on {
			return noAct, false, err
		}
		turnedOff = true
		return func() error { return setForwarding(false) }, true, nil
	})
	return turnedOff, err
}

func noAct() error { return nil }

// updateForwarding runs change on the record under the host-wide lock; when
// change returns an act, the record is saved and act changes ip_forward. The
// order keeps a record of every change a killed helper may have made: turning
// ip_forward on is recorded before it is done, turning it off after (redoing
// either is harmless).
func updateForwarding(d state.Dir, change func(*forwarding) (act func() error, actFirst bool, err error)) error {
	lk, err := d.Lock("forwarding")
	if err != nil {
		return err
	}
	defer lk.Unlock()
	var f forwarding
	if _, err := d.ReadJSON(forwardingFile, &f); err != nil {
		return err
	}
	act, actFirst, err := change(&f)
	if err != nil {
		return err
	}
	if act == nil {
		if !f.TurnedOn && len(f.Users) == 0 { // a killed helper's half-written record may be left
			return removeForwardingRecord(d)
		}
		return nil
	}
	if actFirst {
		if err := act(); err != nil {
			return err
		}
	}
	if !f.TurnedOn && len(f.Users) == 0 { // nothing left to remember
		err = removeForwardingRecord(d)
	} else {
		err = d.WriteJSON(forwardingFile, f)
	}
	if err != nil || actFirst {
		return err
	}
	return act()
}

// removeForwardingRecord removes the record and any half-written copy of it
// a killed helper left.
func removeForwardingRecord(d state.Dir) error {
	tmps, _ := filepath.Glob(filepath.Join(d.Path, forwardingFile+".tmp*"))
	errs := []error{d.RemoveFile(forwardingFile)}
	for _, t := range tmps {
		errs = append(errs, d.RemoveFile(filepath.Base(t)))
	}
	return errors.Join(errs...)
}
