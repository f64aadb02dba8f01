package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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

// setForwarding6 is `sysctl -w net.ipv6.conf.all.forwarding=1|0`.
func setForwarding6(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return writeSysctl(ipv6Forward, v)
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

// forwarding6 holds a use of IPv6 forwarding for a NAT network with
// address6, as forwarding does of ip_forward. Only turning it on is reported.
func (u *upCall) forwarding6() (outcome, error) {
	if u.rec.Forwarding6 && !u.recovering {
		if on, err := Forwarding6(); err != nil || on {
			return unchanged, err
		}
	}
	if !u.rec.Forwarding6 {
		u.rec.Forwarding6 = true
		if err := u.intend("take IPv6 forwarding"); err != nil {
			return unchanged, err
		}
	}
	own := ""
	if u.rec.MadeBridge {
		own = u.n.Bridge
	}
	turnedOn, err := acquireForwarding6(u.d, u.n.Name, own)
	switch {
	case turnedOn:
		return u.repairOf(u.held.Forwarding6), err
	case u.held.Forwarding6:
		return unchanged, err // its use was held already: nothing to give back
	}
	return noted, err
}

func (u *upCall) unforwarding6() error {
	u.rec.Forwarding6 = false
	_, err := releaseForwarding6(u.d, u.n.Name)
	return err
}

// acquireForwarding6 registers network as a user of IPv6 forwarding and, if
// it is off, raises accept_ra 1 to 2 where the host takes RAs and turns it on
// (net.ipv6.conf.all.forwarding=1). The record, with the interfaces it will
// raise, is written first, so a helper killed in between leaves a record the
// network's teardown settles (putting back only what is 2). bridge is the
// network's own when kvmnet made it ("" otherwise), which is left as it is,
// like every other bridge kvmnet made. It reports whether it turned forwarding on.
func acquireForwarding6(d state.Dir, network, bridge string) (turnedOn bool, err error) {
	return acquire(d, forward6, network, func(f *forwarding) error {
		skip, err := kvmnetBridges(d, bridge)
		if err != nil {
			return err
		}
		f.AcceptRA, err = acceptRA1(skip)
		return err
	})
}

// releaseForwarding6 drops network's use of IPv6 forwarding and, when kvmnet
// turned it on and no other network uses it, turns it off and puts accept_ra
// back. It reports whether it turned forwarding off.
func releaseForwarding6(d state.Dir, network string) (turnedOff bool, err error) {
	return release(d, forward6, network)
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

// acceptRA1 lists the links whose accept_ra is 1, but those in skip and
// ports of a bridge or bond (their own IPv6 sees no packets).
//
//	sysctl net.ipv6.conf.IF.accept_ra
func acceptRA1(skip map[string]bool) ([]raSwitched, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []raSwitched
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
			return nil, err
		}
		if v == "1" {
			out = append(out, raSwitched{Name: a.Name, Index: a.Index})
		}
	}
	return out, nil
}

// raiseAcceptRA sets accept_ra from 1 to 2 on the links listed, putting back
// those it changed when one fails.
//
//	sysctl -w net.ipv6.conf.IF.accept_ra=2
func raiseAcceptRA(links []raSwitched) error {
	for i, s := range links {
		if err := writeSysctl(acceptRAPath(s.Name), "2"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return errors.Join(err, restoreAcceptRA(links[:i]))
		}
	}
	return nil
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
