package netsvc

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/vtepset"
)

const (
	// vtepRetryFirst and vtepRetryMax bound the pause before a failed Sync
	// is tried again: the set is missing while the up has yet to make the
	// rules (the daemon starts beside them) or after another program took
	// them out, until the rule watcher's heal puts them back.
	vtepRetryFirst = 50 * time.Millisecond
	vtepRetryMax   = 2 * time.Second
)

// followVTEPs keeps the network's VTEP set (vtepset) equal to the VTEPs
// zebra installed on its EVPN VXLAN link, cfg.EVPNLink: at once, after every
// change of them, and again after a failed write until one succeeds, so
// that a set another program removed and a heal put back with an older read
// ends current. It never fails the process.
func (s *Server) followVTEPs(ctx context.Context) error {
	latest := make(chan []netip.Addr, 1)
	go s.watchVTEPLink(ctx, func(v []netip.Addr) {
		select { // only the newest list matters
		case <-latest:
		default:
		}
		latest <- v
	})
	var want []netip.Addr
	var retry <-chan time.Time
	delay, failing := vtepRetryFirst, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case want = <-latest:
			delay = vtepRetryFirst
		case <-retry:
		}
		retry = nil
		if err := vtepset.Sync(s.cfg.Network, want); err != nil {
			if !failing {
				s.log.Warn("vtep set not written; trying again", "err", err.Error())
			}
			failing, retry = true, time.After(delay)
			delay = min(2*delay, vtepRetryMax)
			continue
		}
		failing = false
		s.log.Info("vteps allowed", "vteps", fmt.Sprint(want))
	}
}

// watchVTEPLink runs vtepset.Watch on the link named cfg.EVPNLink, again
// whenever the subscription fails or the link is replaced (a doctor --fix
// or an up makes it anew), until ctx is done.
func (s *Server) watchVTEPLink(ctx context.Context, changed func([]netip.Addr)) {
	for ctx.Err() == nil {
		err := s.watchVTEPsOnce(ctx, changed)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("vteps not followed; trying again", "link", s.cfg.EVPNLink, "err", err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// watchVTEPsOnce watches the link as it is now, until it is deleted.
func (s *Server) watchVTEPsOnce(ctx context.Context, changed func([]netip.Addr)) error {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(done) })
	defer func() {
		if stop() {
			close(done)
		}
	}()
	links := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribe(links, done); err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	// netlink's reader sends on links without watching done, and closes
	// links only once done has closed its socket: read them to the end, or
	// a burst of events after this returns blocks that reader for ever.
	defer func() {
		go func() {
			for range links {
			}
		}()
	}()
	vx, err := netlink.LinkByName(s.cfg.EVPNLink)
	if err != nil {
		return fmt.Errorf("vxlan link %s: %w", s.cfg.EVPNLink, err)
	}
	watching := make(chan error, 1)
	go func() { watching <- vtepset.Watch(vx, done, changed) }()
	for {
		select {
		case err := <-watching:
			return err
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("link subscription of %s ended", s.cfg.EVPNLink)
			}
			if u.Header.Type == unix.RTM_DELLINK && int(u.Index) == vx.Attrs().Index {
				changed(nil) // no link, no VTEPs
				return fmt.Errorf("vxlan link %s deleted", s.cfg.EVPNLink)
			}
		}
	}
}
