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

// forwarding is a host-wide record of a forwarding sysctl: which NAT
// networks need it and whether kvmnet turned it on, so that it goes back off
// only when kvmnet turned it on and the last NAT network is gone, and never
// when an admin did. ip_forward's is forwardingFile; IPv6's is
// forwarding6File, which also lists the accept_ra kvmnet raised.
const forwardingFile = "forwarding.state"

type forwarding struct {
	TurnedOn bool         `json:"turned_on"`
	Users    []string     `json:"users"`
	AcceptRA []raSwitched `json:"accept_ra,omitempty"`
}

// forwardFamily is what IPv4's and IPv6's forwarding records differ in: the
// lock and file of the record, and the sysctl they hold.
type forwardFamily struct {
	lock, file string
	enabled    func() (bool, error)
	set        func(on bool) error
}

var (
	forward4 = forwardFamily{lock: "forwarding", file: forwardingFile, enabled: Forwarding, set: setForwarding}
	forward6 = forwardFamily{lock: "forwarding6", file: forwarding6File, enabled: Forwarding6, set: setForwarding6}
)

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
// if it is off, remembering that kvmnet did. It reports whether it turned
// ip_forward on.
func acquireForwarding(d state.Dir, network string) (turnedOn bool, err error) {
	return acquire(d, forward4, network, nil)
}

// releaseForwarding drops network's use of ip_forward and turns it off when
// kvmnet turned it on and no other network uses it. It reports whether it
// turned ip_forward off.
func releaseForwarding(d state.Dir, network string) (turnedOff bool, err error) {
	return release(d, forward4, network)
}

// acquire registers network as a user of k's sysctl and, if it is off, runs
// prepare (when given) on the record and turns it on, raising the accept_ra
// prepare listed first. The record is written before the sysctl is turned
// on, so a helper killed in between leaves a record that the network's
// teardown settles. It reports whether it turned the sysctl on.
func acquire(d state.Dir, k forwardFamily, network string, prepare func(*forwarding) error) (turnedOn bool, err error) {
	err = updateForwarding(d, k, func(f *forwarding) (func() error, bool, error) {
		on, err := k.enabled()
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
		if prepare != nil {
			if err := prepare(f); err != nil {
				return nil, false, err
			}
		}
		raise := f.AcceptRA
		f.TurnedOn, turnedOn = true, true
		return func() error {
			if err := raiseAcceptRA(raise); err != nil {
				return err
			}
			if err := k.set(true); err != nil {
				return errors.Join(err, restoreAcceptRA(raise))
			}
			return nil
		}, false, nil
	})
	return turnedOn, err
}

// release drops network's use of k's sysctl and, when kvmnet turned it on
// and no other network uses it, turns it off and puts back the accept_ra it
// raised. It reports whether it turned the sysctl off.
func release(d state.Dir, k forwardFamily, network string) (turnedOff bool, err error) {
	err = updateForwarding(d, k, func(f *forwarding) (func() error, bool, error) {
		i := slices.Index(f.Users, network)
		if i < 0 {
			return nil, false, nil
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		if len(f.Users) > 0 || !f.TurnedOn {
			return noAct, false, nil
		}
		raised := f.AcceptRA
		f.TurnedOn, f.AcceptRA = false, nil
		on, err := k.enabled()
		if err != nil {
			return nil, false, err
		}
		turnedOff = on
		return func() error {
			if on {
				if err := k.set(false); err != nil {
					return err
				}
			}
			return restoreAcceptRA(raised)
		}, true, nil
	})
	return turnedOff, err
}

func noAct() error { return nil }

// updateForwarding runs change on k's record under its host-wide lock; when
// change returns an act, the record is saved and act changes the host. The
// order keeps a record of every change a killed helper may have made: turning
// the sysctl on is recorded before it is done, turning it off after (redoing
// either is harmless).
func updateForwarding(d state.Dir, k forwardFamily, change func(*forwarding) (act func() error, actFirst bool, err error)) error {
	lk, err := d.Lock(k.lock)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	var f forwarding
	if _, err := d.ReadJSON(k.file, &f); err != nil {
		return err
	}
	act, actFirst, err := change(&f)
	if err != nil {
		return err
	}
	if act == nil {
		if !f.TurnedOn && len(f.Users) == 0 { // a killed helper's half-written record may be left
			return removeForwardingRecord(d, k.file)
		}
		return nil
	}
	if actFirst {
		if err := act(); err != nil {
			return err
		}
	}
	if !f.TurnedOn && len(f.Users) == 0 { // nothing left to remember
		err = removeForwardingRecord(d, k.file)
	} else {
		err = d.WriteJSON(k.file, f)
	}
	if err != nil || actFirst {
		return err
	}
	return act()
}

// removeForwardingRecord removes the record and any half-written copy of it
// a killed helper left: ".FILE.tmp…" as state.Dir.WriteJSON names it, or
// "FILE.tmp…" as older versions did.
func removeForwardingRecord(d state.Dir, file string) error {
	tmps, _ := filepath.Glob(filepath.Join(d.Path, "."+file+".tmp*"))
	old, _ := filepath.Glob(filepath.Join(d.Path, file+".tmp*"))
	tmps = append(tmps, old...)
	errs := []error{d.RemoveFile(file)}
	for _, t := range tmps {
		errs = append(errs, d.RemoveFile(filepath.Base(t)))
	}
	return errors.Join(errs...)
}
