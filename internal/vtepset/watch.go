package vtepset

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Watch calls changed with the VXLAN link's remote VTEPs (Remotes) once now
// and then after every change of them, until done is closed or the
// subscription fails. It is what keeps the set current (Sync); the caller
// owns the set.
//
//	bridge monitor fdb dev NAME
func Watch(vx netlink.Link, done <-chan struct{}, changed func([]netip.Addr)) error {
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
		vteps, err := Remotes(vx)
		if err != nil {
			return err
		}
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
			if u.Family != unix.AF_BRIDGE || u.LinkIndex != vx.Attrs().Index || !IsVTEP(u.HardwareAddr) {
				continue
			}
			if err := report(); err != nil {
				return err
			}
		}
	}
}
