package lifecycle

import (
	"fmt"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
)

// A network's bandwidth is a property of each port: the up shapes a VM's tap
// once it is attached, the tap's down unshapes it, and a tap deleted without
// a down takes its qdiscs along and leaves only its ifb, which the next down
// or teardown of any network sweeps. A shaped network writes no hot file
// (writeHot): the fronts link no traffic control, and its ups are the
// engine's.

// shaping is n's bandwidth as package bridge takes it.
func shaping(n config.Net) bridge.Shaping {
	s := bridge.Shaping{Rates: bridge.Rates{In: uint64(n.Bandwidth.In), Out: uint64(n.Bandwidth.Out)}}
	for _, h := range n.Hosts {
		if h.Bandwidth != nil && h.Bandwidth.Set() {
			s.Hosts = append(s.Hosts, bridge.HostRates{MAC: h.MAC.HardwareAddr, Rates: bridge.Rates{In: uint64(h.Bandwidth.In), Out: uint64(h.Bandwidth.Out)}})
		}
	}
	return s
}

// shapeStep limits the VM's tap after it is attached.
func (u *upCall) shapeStep() step {
	tap := u.tap.Attrs().Name
	name := "limit " + tap
	if b := u.n.Bandwidth; b.Set() {
		name = fmt.Sprintf("limit %s (in %s, out %s)", tap, rateText(b.In), rateText(b.Out))
	}
	return step{name: name, do: u.shape, undo: func() error { return bridge.Unshape(u.tap) }}
}

func (u *upCall) shape() (outcome, error) {
	if _, err := bridge.SweepShapers(); err != nil {
		return unchanged, err
	}
	if !u.rec.Shaped {
		u.rec.Shaped = true
		if err := u.save(); err != nil {
			return unchanged, err
		}
	}
	return changed, bridge.Shape(u.tap, shaping(u.n))
}

func rateText(r config.Rate) string {
	if r == 0 {
		return "unlimited"
	}
	return r.String()
}

// unshapeDown is a tap's down's share: its limits off (a port that stays,
// such as a veth, keeps none), and any ifb of a port gone without a down.
func unshapeDown(tap string) ([]string, error) {
	var changes []string
	if l, err := bridge.Link(tap); err == nil {
		ifb := bridge.IfbName(l.Attrs().Index)
		had, _ := bridge.Link(ifb)
		if err := bridge.Unshape(l); err != nil {
			return nil, err
		}
		if had != nil {
			changes = append(changes, "delete "+ifb)
		}
	}
	gone, err := bridge.SweepShapers()
	for _, g := range gone {
		changes = append(changes, "delete "+g)
	}
	return changes, err
}
