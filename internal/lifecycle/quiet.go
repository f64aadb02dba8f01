package lifecycle

import (
	"errors"

	"github.com/kvmnet/kvmnet/internal/warm"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/state"
)

// quietSettings make the host answer no ARP and no NDP on an isolated
// bridge: it has no address there, but would answer for its others (e.g.
// its uplink's), which guests must not see.
var quietSettings = []struct{ family, key, value string }{
	{"ipv4", "arp_ignore", "8"},
	{"ipv6", "disable_ipv6", "1"},
}

// quiet sets quietSettings on the bridge. On a bridge kvmnet made they go
// with it; on another, the values found are recorded first, and the last
// down puts them back.
func (u *upCall) quiet() (outcome, error) {
	if u.rec.HostQuiet && !u.recovering {
		return unchanged, nil
	}
	old := make([]string, len(quietSettings))
	differ := false
	var found []warm.Sysctl
	for i, s := range quietSettings {
		v, ok, err := bridge.ReadConf(s.family, u.n.Bridge, s.key)
		if err != nil {
			return unchanged, err
		}
		old[i] = v
		differ = differ || ok && v != s.value
		if ok {
			found = append(found, warm.Sysctl{Path: bridge.ConfPath(s.family, u.n.Bridge, s.key), Value: s.value})
		}
	}
	if !differ {
		u.rec.HostQuiet = u.rec.HostQuiet || u.rec.MadeBridge
		if !u.rec.HostQuiet {
			// Quiet already, by someone else's hand: nothing to record or
			// put back, so every up reads them again, and so must a front.
			u.quietFound = found
		}
		return unchanged, nil
	}
	// Settings on a bridge kvmnet made go with it: nothing to record first.
	if !u.rec.MadeBridge && !u.rec.HostQuiet {
		u.rec.SavedArpIgnore, u.rec.SavedDisableIPv6 = old[0], old[1]
	}
	wasQuiet := u.rec.HostQuiet
	u.rec.HostQuiet = true
	if !u.rec.MadeBridge && !wasQuiet {
		if err := u.intend("quiet the host on " + u.n.Bridge); err != nil {
			return unchanged, err
		}
	}
	for i, s := range quietSettings {
		if old[i] != "" && old[i] != s.value {
			if err := bridge.WriteConf(s.family, u.n.Bridge, s.key, s.value); err != nil {
				return changed, err
			}
		}
	}
	return changed, nil
}

func (u *upCall) unquiet() error {
	err := restoreQuiet(u.rec)
	forgetQuiet(&u.rec)
	return err
}

// restoreQuiet puts back the settings quiet changed on a bridge kvmnet did not make.
func restoreQuiet(rec state.Network) error {
	if !rec.HostQuiet || rec.MadeBridge {
		return nil
	}
	var errs []error
	for i, v := range []string{rec.SavedArpIgnore, rec.SavedDisableIPv6} {
		if v != "" {
			errs = append(errs, bridge.WriteConf(quietSettings[i].family, rec.Bridge, quietSettings[i].key, v))
		}
	}
	return errors.Join(errs...)
}

func forgetQuiet(rec *state.Network) {
	rec.HostQuiet, rec.SavedArpIgnore, rec.SavedDisableIPv6 = false, "", ""
}
