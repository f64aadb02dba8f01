package netsvc

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Vacated is called by the daemon when the last tap left the network's
// bridge: its VM exited or was killed, with or without a downscript. It gets
// the network's name. What it does is the caller's (Daemon runs
// `kvmnet gc NETWORK`, which decides under the network's lock whether the
// network is unused and tears it down, this daemon with it); the daemon only
// notices.
type Vacated = func(network string)

// resubscribeDelay paces re-subscribing after the kernel dropped the link
// subscription (a full socket buffer).
const resubscribeDelay = 100 * time.Millisecond

// watchTaps follows the bridge's tun/tap ports through netlink link events
// (RTNLGRP_LINK, as `ip monitor link`) and calls s.vacated each time the
// last one is deleted while on the bridge: the kernel deletes a VM's tap when
// its QEMU exits or is killed, and a downscript, which detaches the tap
// first, has then already had its say. Each deletion also makes the guard
// forget the ports that are gone. It never fails the daemon: when the
// subscription breaks it says so with a call, whose receiver checks for
// itself, and subscribes again.
func (s *Server) watchTaps(ctx context.Context) error {
	s.watchLinks(ctx, true, s.tapFollower, func() {
		s.log.Warn("link subscription lost; checking the network and subscribing again")
		s.vacated(s.cfg.Network)
	})
	return nil
}

// watchGone is the watch-only role's share of watchTaps: with no daemon,
// the network's rule watcher makes the guard forget the ports that are gone
// as their links are deleted, so that a VM started again on a warm run may
// take its MAC and address back, and guards a tap that arrives on the bridge
// outside the guard's group (hotplug.go). It forgets once on each
// subscription too: a port may have gone while it was not subscribed; and
// each begins with every link (ListExisting), a tap among them that arrived
// meanwhile.
func (s *Server) watchGone(ctx context.Context) error {
	forgetting := func() func(netlink.LinkUpdate) {
		s.guardForget()
		taps := map[int32]bool{}
		if br, err := netlink.LinkByName(s.cfg.Bridge); err == nil {
			s.bridgeIndex = br.Attrs().Index
		}
		return func(u netlink.LinkUpdate) {
			if tapArrived(taps, u, s.bridgeIndex) {
				s.guardArrival(u.Link)
			}
			s.tapEvent(taps, u)
			s.forgetDeleted(u)
		}
	}
	s.watchLinks(ctx, true, forgetting, func() {
		s.log.Warn("link subscription lost; subscribing again")
	})
	return nil
}

// watchLinks runs link subscriptions until ctx is done: each calls
// subscribed once it receives events, and the handler that returns with
// each event; lost is called each time one breaks, before the next.
func (s *Server) watchLinks(ctx context.Context, listExisting bool, subscribed func() func(netlink.LinkUpdate), lost func()) {
	for ctx.Err() == nil {
		s.followLinks(ctx, listExisting, subscribed)
		if ctx.Err() != nil {
			break
		}
		lost()
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeDelay):
		}
	}
}

// followLinks runs one link subscription until ctx is done or it breaks.
func (s *Server) followLinks(ctx context.Context, listExisting bool, subscribed func() func(netlink.LinkUpdate)) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: listExisting})
	if err != nil {
		s.log.Warn("subscribe to link events", "err", err.Error())
		return
	}
	event := subscribed()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			event(u)
		}
	}
}

// tapFollower returns the daemon's handler of one subscription's events,
// which begins with every link (ListExisting): a tap that arrives on the
// bridge outside the guard's group is guarded (hotplug.go).
func (s *Server) tapFollower() func(netlink.LinkUpdate) {
	taps := map[int32]bool{}
	return func(u netlink.LinkUpdate) {
		if tapArrived(taps, u, s.bridgeIndex) {
			s.guardArrival(u.Link)
		}
		if s.tapEvent(taps, u) && len(taps) == 0 {
			s.log.Info("last tap deleted", "bridge", s.cfg.Bridge)
			s.vacated(s.cfg.Network)
		}
		// After vacated, which starts gc: a teardown does not wait for
		// it; a pinned network, which stays, still forgets the port.
		s.forgetDeleted(u)
	}
}

// forgetDeleted makes the guard forget the ports that are gone when u is
// a link's deletion: its own (AF_UNSPEC) news, not the bridge's of its port.
func (s *Server) forgetDeleted(u netlink.LinkUpdate) {
	if u.Header.Type == unix.RTM_DELLINK && u.Family != unix.AF_BRIDGE {
		s.guardForget()
	}
}

// tapEvent updates taps, the bridge's tun/tap ports by ifindex, with one
// event, and reports whether one of them was deleted (not detached: a
// downscript detaches, then decides itself).
func (s *Server) tapEvent(taps map[int32]bool, u netlink.LinkUpdate) (deleted bool) {
	if u.Family == unix.AF_BRIDGE {
		// The bridge's own news of its port (`bridge monitor link`): no link
		// kind in it, so a tap would read as another link; the link's own
		// (AF_UNSPEC) message says the same, and is the one to go by.
		return false
	}
	idx := u.Index
	switch _, isTap := u.Link.(*netlink.Tuntap); {
	case u.Header.Type == unix.RTM_DELLINK:
		deleted = taps[idx]
		delete(taps, idx)
	case isTap && u.Link.Attrs().MasterIndex == s.bridgeIndex:
		taps[idx] = true
	default:
		delete(taps, idx)
	}
	return deleted
}
