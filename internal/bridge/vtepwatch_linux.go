package bridge

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchVTEPs calls changed with the VXLAN link's remote VTEPs (its all-zero
// FDB entries, which zebra adds and removes as hosts join and leave an EVPN
// overlay) once now and then after every change of them, until done is
// closed or the subscription fails. It is what keeps a set of the sources
// allowed on the VXLAN port current; the caller owns the set.
//
//	bridge monitor fdb dev NAME
func WatchVTEPs(vx netlink.Link, done <-chan struct{}, changed func([]netip.Addr)) error {
	updates := make(chan netlink.NeighUpdate, 64)
	failed := make(chan error, 1)
	opts := netlink.NeighSubscribeOptions{ErrorCallback: func(err error) {
		select {
		case failed <- err:
		default:
		}
	}}
	// Subscribed before the first read: a change in between is not lost.
	if err := netlink.NeighSubscribeWithOptions(updates, done, opts); err != nil {
		return fmt.Errorf("watch fdb of %s: %w", vx.Attrs().Name, err)
	}
	var last []netip.Addr
	report := func() error {
		vteps, _, err := EVPNRemotes(vx)
		if err != nil {
			return err
		}
		slices.SortFunc(vteps, netip.Addr.Compare)
		if last == nil || !slices.Equal(vteps, last) {
			last = append([]netip.Addr{}, vteps...)
			changed(vteps)
		}
		return nil
	}
	if err := report(); err != nil {
		return err
	}
	for {
		select {
		case <-done:
			return nil
		case err := <-failed:
			return fmt.Errorf("watch fdb of %s: %w", vx.Attrs().Name, err)
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			if u.Family != unix.AF_BRIDGE || u.LinkIndex != vx.Attrs().Index || u.HardwareAddr.String() != zeroMAC.String() {
				continue
			}
			if err := report(); err != nil {
				return err
			}
		}
	}
}
