package lifecycle

import (
	"fmt"

	"github.com/kvmnet/kvmnet/internal/firewalld"
	"github.com/kvmnet/kvmnet/internal/state"
)

// zone binds the network's bridge to a firewalld zone made for VMs
// (firewalld.Zones: an admin's "kvmnet", else libvirt's), when firewalld runs
// and has one, as libvirt binds its bridges: firewalld itself then lets the
// guests' DHCP, DNS and routed traffic by, also in the moment after a
// reload before the watcher has put kvmnet's accepts back. Asked on a
// network's first up and on heals only, so that no other up talks to the
// bus. A bridge someone bound to another zone stays there. firewalld being
// unreachable or refusing is a warning: kvmnet's accepts in firewalld's
// chains let the guests by without a zone.
func (u *upCall) zone() (outcome, error) {
	if !u.fresh && !u.recovering {
		return unchanged, nil
	}
	c, err := firewalld.Open()
	if err != nil || c == nil {
		u.warnOnly(err)
		return unchanged, nil
	}
	defer c.Close()
	zone, err := c.Zone()
	if err != nil || zone == "" {
		u.warnOnly(err)
		return unchanged, nil
	}
	now, err := c.ZoneOf(u.n.Bridge)
	switch {
	case err != nil:
		u.warnOnly(err)
		return unchanged, nil
	case now == zone || (now != "" && now != u.rec.FirewalldZone):
		return unchanged, nil // bound already, by kvmnet or by someone
	}
	u.rec.FirewalldZone = zone
	if err := u.intend(fmt.Sprintf("put %s into firewalld zone %s", u.n.Bridge, zone)); err != nil {
		return unchanged, err
	}
	if err := c.Bind(zone, u.n.Bridge); err != nil {
		u.rec.FirewalldZone = u.held.FirewalldZone
		u.warnOnly(err)
		return unchanged, nil
	}
	return u.repairOf(u.held.FirewalldZone != ""), nil
}

// warnOnly makes a firewalld error the up's warning.
func (u *upCall) warnOnly(err error) {
	if err != nil {
		u.warnings = append(u.warnings, "bridge left in firewalld's default zone (kvmnet's accepts in its chains let the guests by): "+err.Error())
	}
}

func (u *upCall) unzone() error {
	zone := u.rec.FirewalldZone
	if zone == "" {
		return nil
	}
	u.rec.FirewalldZone = ""
	return unbindZone(zone, u.n.Bridge)
}

// unbindZone takes bridge out of firewalld zone, if firewalld runs and it
// is still there.
func unbindZone(zone, bridge string) error {
	c, err := firewalld.Open()
	if err != nil || c == nil {
		return err
	}
	defer c.Close()
	return c.Unbind(zone, bridge)
}

// zonePart is the teardown's part that takes the bridge out of the
// firewalld zone kvmnet bound it to.
func zonePart(rec state.Network) []part {
	if rec.FirewalldZone == "" {
		return nil
	}
	return []part{{fmt.Sprintf("take %s out of firewalld zone %s", rec.Bridge, rec.FirewalldZone), func() (bool, error) {
		return true, unbindZone(rec.FirewalldZone, rec.Bridge)
	}}}
}
