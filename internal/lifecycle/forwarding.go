package lifecycle

import (
	"fmt"
	"os"
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
// if it is off, remembering that kvmnet did. It reports whether it changed anything.
func acquireForwarding(d state.Dir, network string) (bool, error) {
	return updateForwarding(d, func(f *forwarding) (bool, error) {
		on, err := Forwarding()
		if err != nil {
			return false, err
		}
		changed := false
		if !on {
			if err := setForwarding(true); err != nil {
				return false, err
			}
			f.TurnedOn, changed = true, true
		}
		if !slices.Contains(f.Users, network) {
			f.Users = append(f.Users, network)
			changed = true
		}
		return changed, nil
	})
}

// releaseForwarding drops network's use of ip_forward and turns it off when
// kvmnet turned it on and no other network uses it.
func releaseForwarding(d state.Dir, network string) error {
	_, err := updateForwarding(d, func(f *forwarding) (bool, error) {
		i := slices.Index(f.Users, network)
		if i < 0 {
			return false, nil
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		if len(f.Users) == 0 && f.TurnedOn {
			if err := setForwarding(false); err != nil {
				return false, err
			}
			f.TurnedOn = false
		}
		return true, nil
	})
	return err
}

// updateForwarding runs change on the record under the host-wide lock and saves it if it changed.
func updateForwarding(d state.Dir, change func(*forwarding) (bool, error)) (bool, error) {
	lk, err := d.Lock("forwarding")
	if err != nil {
		return false, err
	}
	defer lk.Unlock()
	var f forwarding
	if _, err := d.ReadJSON(forwardingFile, &f); err != nil {
		return false, err
	}
	changed, err := change(&f)
	if err != nil || !changed {
		return changed, err
	}
	if !f.TurnedOn && len(f.Users) == 0 { // nothing left to remember
		return true, d.RemoveFile(forwardingFile)
	}
	if err := d.WriteJSON(forwardingFile, f); err != nil {
		return false, err
	}
	return true, nil
}
