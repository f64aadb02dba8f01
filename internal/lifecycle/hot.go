package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/portguard"
	"github.com/kvmnet/kvmnet/internal/safefile"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// The tap scripts are fronts (package warm) that take a warm run themselves
// when the network's hot file proves it warm. An up that found the network
// whole writes that file last, under the lock; every run that changes the
// network under the lock removes it first, so that a front never acts on
// facts a change in progress (or one that was killed) made stale.

// coolDown removes network name's hot file: the next tap script's run is the
// engine's, until an up writes it again.
func coolDown(d state.Dir, name string) error {
	err := os.Remove(d.File(name, warm.Ext))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget what made network %s warm: %w", name, err)
	}
	return nil
}

// writeHot writes the hot file of a network this up left whole, with what a
// front must check again to know it still is: each item is one check the
// warm up made (steps). A network whose warm up checks something a front
// does not (the VXLAN link, rules in iptables, a warning to log, a port's
// bandwidth) gets none. A failure only costs the next runs the engine, so it
// is not an error.
func (u *upCall) writeHot() {
	n, rec := u.n, u.rec
	if n.Source == "" || len(u.warnings) > 0 || n.VXLAN != nil || rec.Doing != "" || u.br == nil || n.Shaped() ||
		(n.Mode == config.Isolated && !rec.HostQuiet && len(u.quietFound) == 0) {
		return
	}
	h := &warm.Hot{
		Key: n.Source, Network: n.Name, Bridge: n.Bridge, Index: u.br.Index, Mode: string(n.Mode),
		AnyPorts: n.Ports == config.AnyPorts, Pinned: rec.Pinned,
	}
	if guarded(n) {
		h.Group = portguard.Group(n.Name)
	}
	h.Isolate = n.IsolateGuests
	if n.Mode.Routed() {
		for _, p := range []netip.Prefix{n.Gateway, n.Gateway6} {
			if p.IsValid() {
				h.Addresses = append(h.Addresses, warm.Address{Text: p.String(), IP: p.Addr().AsSlice(), Bits: uint8(p.Bits())})
			}
		}
	}
	if rec.Forwarding {
		h.Sysctls = append(h.Sysctls, warm.Sysctl{Path: ipForward, Value: "1"})
	}
	if rec.Forwarding6 {
		h.Sysctls = append(h.Sysctls, warm.Sysctl{Path: ipv6Forward, Value: "1"})
	}
	if n.Mode == config.Isolated && !rec.HostQuiet {
		// An admin's bridge that the admin quieted: the warm up reads its
		// settings every time (quiet), as the front then does. A setting
		// the kernel lacks (IPv6 off at boot) never appears on the link
		// while it lives, and its index is in the file.
		h.Sysctls = append(h.Sysctls, u.quietFound...)
	}
	if serves(n) {
		pid, running := ServicesPID(u.d, n.Name)
		if !running {
			return
		}
		h.DaemonPID, h.DaemonConf = pid, u.d.File(n.Name, svcConf)
	}
	if n.Guard && watchesAlone(n) {
		// The guard's ports are forgotten as they go by the daemon, or
		// with none by the rule watcher (guard.go); without either only
		// the engine's up forgets them, and a VM started again on a warm
		// run would find its MAC another port's.
		pid, running := WatcherPID(u.d, n.Name)
		if !running {
			return
		}
		h.WatcherPID = pid
	}
	if rec.Rules {
		// Only the nftables backend proves its rules whole by the
		// generation alone; Unchanged also looks for a legacy filter table.
		fw, err := u.firewall()
		if err != nil || rec.Firewall != string(firewall.NFTables) || rec.RulesGen == 0 || !fw.Unchanged(rec.RulesGen) {
			return
		}
		h.NFTGen, h.HasRules = rec.RulesGen, true
		// The generation file the daemon or watcher moves past its own
		// guard transactions starts here (ctl.WriteGen). Unwritten, the
		// front still has the hot file's.
		_ = ctl.WriteGen(u.d.File(n.Name, warm.GenExt), rec.RulesGen)
	}
	_ = safefile.WriteAtomic(u.d.File(n.Name, warm.Ext), h.Marshal(), 0o644)
}
