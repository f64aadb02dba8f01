package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/state"
)

// ipv6Forward is per network namespace, like ip_forward. Writing "all" sets
// every interface's forwarding, which is what a router needs.
const ipv6Forward = "/proc/sys/net/ipv6/conf/all/forwarding"

// forwarding6File is the host-wide record of IPv6 forwarding, kept as
// forwardingFile is for ip_forward, plus the interfaces whose accept_ra kvmnet
// raised from 1 to 2 when it turned forwarding on.
//
// Why accept_ra: with forwarding on, the kernel ignores router advertisements
// on every interface with accept_ra=1, so a host that learnt its own default
// route by SLAAC loses it when the route's lifetime runs out, minutes later.
// accept_ra=2 accepts them even while forwarding.
const forwarding6File = "forwarding6.state"

type forwarding6 struct {
	TurnedOn bool         `json:"turned_on"`
	Users    []string     `json:"users"`
	AcceptRA []raSwitched `json:"accept_ra,omitempty"`
}

// raSwitched is an interface whose accept_ra kvmnet set from 1 to 2; its
// index tells a later link of the same name (not kvmnet's business) from it.
type raSwitched struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
}

// Forwarding6 reports whether IPv6 forwarding is on in this namespace.
func Forwarding6() (bool, error) {
	v, err := readSysctl(ipv6Forward)
	return v == "1", err
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", strings.TrimPrefix(path, "/proc/sys/"), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(path, v string) error {
	if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", strings.TrimPrefix(path, "/proc/sys/"), err)
	}
	return nil
}

func acceptRAPath(ifname string) string { return "/proc/sys/net/ipv6/conf/" + ifname + "/accept_ra" }

// forwarding6 holds a use of IPv6 forwarding for a NAT network with address6.
func (u *upCall) forwarding6() (bool, error) {
	if u.rec.Forwarding6 {
		if on, err := Forwarding6(); err != nil || on {
			return false, err
		}
	}
	own := ""
	if u.rec.MadeBridge {
		own = u.n.Bridge
	}
	changed, err := acquireForwarding6(u.d, u.n.Name, own)
	if err != nil {
		return false, err
	}
	u.rec.Forwarding6 = true
	return changed, nil
}

func (u *upCall) unforwarding6() error {
	u.rec.Forwarding6 = false
	return releaseForwarding6(u.d, u.n.Name)
}

// acquireForwarding6 registers network as a user of IPv6 forwarding and, if
// it is off, raises accept_ra 1 to 2 where the host takes RAs and turns it on
// (net.ipv6.conf.all.forwarding=1), remembering both. bridge is the
// network's own when kvmnet made it ("" otherwise), which is left as it is,
// like every other bridge kvmnet made.
func acquireForwarding6(d state.Dir, network, bridge string) (bool, error) {
	return updateForwarding6(d, func(f *forwarding6) (bool, error) {
		on, err := Forwarding6()
		if err != nil {
			return false, err
		}
		changed := false
		if !on {
			skip, err := kvmnetBridges(d, bridge)
			if err != nil {
				return false, err
			}
			if f.AcceptRA, err = raiseAcceptRA(skip); err != nil {
				return false, err
			}
			if err := writeSysctl(ipv6Forward, "1"); err != nil {
				return false, errors.Join(err, restoreAcceptRA(f.AcceptRA))
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

// releaseForwarding6 drops network's use of IPv6 forwarding and, when kvmnet
// turned it on and no other network uses it, turns it off and puts accept_ra back.
func releaseForwarding6(d state.Dir, network string) error {
	_, err := updateForwarding6(d, func(f *forwarding6) (bool, error) {
		i := slices.Index(f.Users, network)
		if i < 0 {
			return false, nil
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		if len(f.Users) == 0 && f.TurnedOn {
			if err := writeSysctl(ipv6Forward, "0"); err != nil {
				return false, err
			}
			if err := restoreAcceptRA(f.AcceptRA); err != nil {
				return false, err
			}
			f.TurnedOn, f.AcceptRA = false, nil
		}
		return true, nil
	})
	return err
}

// kvmnetBridges are the bridges kvmnet made for the networks it has up, and
// bridge: RAs arriving there come from guests, which must not route the
// host. A bridge an admin made (an uplink bridge named in a network) is the
// host's own and keeps taking RAs like any other interface.
func kvmnetBridges(d state.Dir, bridge string) (map[string]bool, error) {
	skip := map[string]bool{"lo": true}
	if bridge != "" {
		skip[bridge] = true
	}
	names, err := d.Networks()
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, name := range names {
		if rec, ok, err := d.Load(name); err == nil && ok && rec.MadeBridge {
			skip[rec.Bridge] = true
		}
	}
	return skip, nil
}

// raiseAcceptRA sets accept_ra from 1 to 2 on every link that has 1, but
// those in skip and ports of a bridge or bond (their own IPv6 sees no
// packets), and returns the ones it changed.
//
//	sysctl -w net.ipv6.conf.IF.accept_ra=2
func raiseAcceptRA(skip map[string]bool) ([]raSwitched, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var done []raSwitched
	for _, l := range links {
		a := l.Attrs()
		if skip[a.Name] || a.MasterIndex != 0 {
			continue
		}
		v, err := readSysctl(acceptRAPath(a.Name))
		if errors.Is(err, fs.ErrNotExist) { // IPv6 off on it, or the link just went
			continue
		}
		if err != nil {
			return nil, errors.Join(err, restoreAcceptRA(done))
		}
		if v != "1" {
			continue
		}
		if err := writeSysctl(acceptRAPath(a.Name), "2"); err != nil {
			return nil, errors.Join(err, restoreAcceptRA(done))
		}
		done = append(done, raSwitched{Name: a.Name, Index: a.Index})
	}
	return done, nil
}

// restoreAcceptRA puts accept_ra back to 1 where kvmnet raised it and it is
// still 2 on the same link: a link gone, renamed or set otherwise since is not kvmnet's to touch.
//
//	sysctl -w net.ipv6.conf.IF.accept_ra=1
func restoreAcceptRA(switched []raSwitched) error {
	var errs []error
	for _, s := range switched {
		l, err := netlink.LinkByName(s.Name)
		if err != nil || l.Attrs().Index != s.Index {
			continue
		}
		if v, err := readSysctl(acceptRAPath(s.Name)); err != nil || v != "2" {
			continue
		}
		errs = append(errs, writeSysctl(acceptRAPath(s.Name), "1"))
	}
	return errors.Join(errs...)
}

// updateForwarding6 runs change on the record under its host-wide lock and saves it if it changed.
func updateForwarding6(d state.Dir, change func(*forwarding6) (bool, error)) (bool, error) {
	lk, err := d.Lock("forwarding6")
	if err != nil {
		return false, err
	}
	defer lk.Unlock()
	var f forwarding6
	if _, err := d.ReadJSON(forwarding6File, &f); err != nil {
		return false, err
	}
	changed, err := change(&f)
	if err != nil || !changed {
		return changed, err
	}
	if !f.TurnedOn && len(f.Users) == 0 {
		return true, d.RemoveFile(forwarding6File)
	}
	if err := d.WriteJSON(forwarding6File, f); err != nil {
		return false, err
	}
	return true, nil
}
