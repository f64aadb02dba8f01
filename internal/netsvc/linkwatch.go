package netsvc

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Vacated is called by the daemon when the last tap left the network's
// bridge: its VM exited or was killed, with or without a downscript. It gets
// the network's name. What it does is the caller's (cmd/kvmnet runs
// `kvmnet gc NETWORK`, which decides under the network's lock whether the
// network is unused and tears it down, this daemon with it); the daemon only
// notices.
type Vacated = func(network string)

// resubscribeDelay paces re-subscribing after the kernel dropped the link
// subscription (a full socket buffer).
const resubscribeDelay = 100 * time.Millisecond

// watchTaps follows the bridge's tun/tap ports through netlink link events
// (RTNLGRP_LINK, as `ip monitor link`) and calls s.vacated each time the
// last one leaves: deleted with its VM, or taken off the bridge. It never
// fails the daemon: when the subscription breaks it says so with a call,
// whose receiver checks for itself, and subscribes again.
func (s *Server) watchTaps(ctx context.Context) error {
	for ctx.Err() == nil {
		s.followTaps(ctx)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("link subscription lost; checking the network and subscribing again")
		s.vacated(s.cfg.Network)
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeDelay):
		}
	}
	return nil
}

// followTaps runs one link subscription until ctx is done or it breaks.
func (s *Server) followTaps(ctx context.Context) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: true})
	if err != nil {
		s.log.Warn("subscribe to link events", "err", err.Error())
		return
	}
	taps := map[int32]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			if s.tapEvent(taps, u) && len(taps) == 0 {
				s.log.Info("last tap left the bridge", "bridge", s.cfg.Bridge)
				s.vacated(s.cfg.Network)
			}
		}
	}
}

// tapEvent updates taps, the bridge's tun/tap ports by ifindex, with one
// event, and reports whether a port left.
func (s *Server) tapEvent(taps map[int32]bool, u netlink.LinkUpdate) (left bool) {
	idx := u.Index
	_, isTap := u.Link.(*netlink.Tuntap)
	on := u.Header.Type == unix.RTM_NEWLINK && isTap && u.Link.Attrs().MasterIndex == s.bridgeIndex
	switch {
	case on:
		taps[idx] = true
	case taps[idx]:
		delete(taps, idx)
		return true
	}
	return false
}
