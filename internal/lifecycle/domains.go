package lifecycle

import (
	"fmt"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kvmnet/kvmnet/internal/bridge"
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/state"
)

// What the libvirt hook needs. libvirt attaches the taps of an
// <interface type='bridge'> itself: kvmnet only has to have the network up
// before (`prepare`), learn the taps once libvirt made them (`start`), and
// take the network down after the domain's last tap is gone (`release`).
// The domain is then a user of the network like a VM that kvmnet's helpers
// attached: its taps are recorded as the network's ports, so that every down,
// gc, status and doctor counts them, and its record bridges the moments
// between `prepare` and `start` when libvirt has made no tap yet.

// pendingGrace is how long a domain that was prepared but whose taps are not
// known yet counts as a user. libvirt makes the taps milliseconds after
// `prepare`, and runs `release` when a start fails, so only a record whose
// `start` and `release` were both lost (libvirtd killed in between) outlives
// it; the bound lets gc reclaim the network from such a record.
const pendingGrace = 10 * time.Minute

// Join sets network n up for libvirt domain dom, whose taps libvirt is about
// to attach to n's bridge, and records dom as a user of n: the up steps of a
// VM's up but the attach, plus the record, under the network's lock.
func Join(d state.Dir, n config.Net, dom state.Domain) (Result, error) {
	return upFor(d, n, "", domainUp, &dom)
}

// AddTaps records taps, which libvirt attached to network n's bridge for
// domain dom, as ports of the network and as the domain's, and puts each
// that is a tap on the bridge under n's guard and bandwidth as a VM's up
// does (guardTaps). It reports whether it recorded them, which it does only
// while the network is up (a domain the hook never prepared, as it was
// installed while the domain ran, gets a record then too), and the changes
// it made.
func AddTaps(d state.Dir, n config.Net, dom state.Domain, taps []string) (Result, bool, error) {
	lk, err := d.Lock(n.Name)
	if err != nil {
		return Result{}, false, err
	}
	defer lk.Unlock()
	nrec, ok, err := d.Load(n.Name)
	if err != nil || !ok {
		return Result{}, false, err
	}
	rec, ok, err := d.LoadDomain(n.Name, dom.UUID)
	if err != nil {
		return Result{}, false, err
	}
	if ok {
		dom.Since = rec.Since
	}
	var res Result
	for _, tap := range taps {
		if err := d.AddPort(n.Name, tap); err != nil {
			return res, false, err
		}
		res.Changes = append(res.Changes, "record "+tap)
	}
	for _, tap := range rec.Taps {
		if !slices.Contains(taps, tap) {
			if err := d.DelPort(n.Name, tap); err != nil {
				return res, false, err
			}
		}
	}
	dom.Taps = taps
	if err := d.SaveDomain(n.Name, dom); err != nil {
		return res, false, err
	}
	// The record first: the taps are the domain's whether or not their
	// limits took, and a release undoes what they got.
	br, err := bridge.Find(nrec.Bridge)
	if err != nil {
		return res, true, err
	}
	_, more, err := guardTaps(d, n, nrec, br, taps)
	res.Changes = append(res.Changes, more...)
	return res, true, err
}

// Leave forgets domain uuid on network name, whose taps libvirt has already
// deleted, and tears the network down when that was its last user, exactly as
// the last VM's down would. It works from the records alone, so a network
// since removed from the configuration still goes.
func Leave(d state.Dir, name, uuid string) (Result, error) {
	lk, err := d.Lock(name)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	dom, known, err := d.LoadDomain(name, uuid)
	if err != nil {
		return Result{}, err
	}
	rec, ok, err := d.Load(name)
	if err != nil {
		return Result{}, err
	}
	var br *netlink.Bridge
	var changes []string
	if ok {
		if br, err = bridge.Find(rec.Bridge); err != nil {
			return Result{}, err
		}
		if changes, err = releaseTaps(rec, br, dom.Taps); err != nil {
			return Result{Changes: changes}, err
		}
	}
	for _, tap := range dom.Taps {
		if err := d.DelPort(name, tap); err != nil {
			return Result{Changes: changes}, err
		}
	}
	if err := d.DelDomain(name, uuid); err != nil {
		return Result{Changes: changes}, err
	}
	if !ok || !known || rec.Pinned {
		return Result{Changes: changes}, nil
	}
	last, err := lastUser(d, rec, br)
	if err != nil || !last {
		return Result{Changes: changes}, err
	}
	more, err := Teardown(d, rec)
	return Result{Changes: append(changes, more...)}, err
}

// domainLive is the liveness rule of a recorded domain: it uses the network
// while one of its taps is a port of br (the rule of kvmnet's own taps: a
// domain's taps die with its QEMU, however it ends), or, before its taps are
// known, for pendingGrace after its `prepare`.
func domainLive(br *netlink.Bridge) func(state.Domain) bool {
	return func(dom state.Domain) bool {
		if len(dom.Taps) == 0 {
			return time.Since(dom.Since) < pendingGrace
		}
		return slices.ContainsFunc(dom.Taps, onBridge(br))
	}
}

func (u *upCall) recordDomain() (outcome, error) { return noted, u.d.SaveDomain(u.n.Name, *u.dom) }

func (u *upCall) unrecordDomain() error { return u.d.DelDomain(u.n.Name, u.dom.UUID) }

// pendingDomains names the domains that use a network but whose taps are not
// known yet, for the error of a Release that refuses.
func pendingDomains(d state.Dir, network string) ([]string, error) {
	doms, err := d.Domains(network)
	var names []string
	for _, dom := range doms {
		if len(dom.Taps) == 0 {
			names = append(names, fmt.Sprintf("libvirt domain %s (starting)", dom.Name))
		}
	}
	return names, err
}

// Foreign reports whether network n's bridge exists while kvmnet has no
// record of n: a bridge someone else made, e.g. an admin's br0 on the LAN,
// which the hook must not turn into the built-in default network (a DHCP
// server on a LAN is no small surprise).
func Foreign(d state.Dir, n config.Net) (bool, error) {
	if _, ok, err := d.Load(n.Name); err != nil || ok {
		return false, err
	}
	br, err := bridge.Find(n.Bridge)
	return br != nil, err
}
