package lifecycle

import (
	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/firewall"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// Files of a network's rule watcher in the state directory: the daemon's
// binary in its watch-only role (ctl.StartWatcher), for a network with
// rules and no DHCP/DNS daemon, which watches them otherwise. A down's
// state.Remove takes them with the record.
const (
	watchPID = ".watch.pid"
	watchLog = ".watch.log"
)

// watchesAlone reports whether network n needs a rule watcher of its own:
// it has rules (it is not bridged) and no daemon to watch them.
func watchesAlone(n config.Net) bool { return n.Mode != config.Bridged && !serves(n) }

// WatcherPID returns the pid of a network's rule watcher, if it runs.
func WatcherPID(d state.Dir, network string) (int, bool) {
	return ctl.Alive(d.File(network, watchPID))
}

// Watched reports whether a network up as rec has a rule watcher of its
// own: it has rules and no DHCP/DNS daemon, which watches them otherwise.
func Watched(rec state.Network) bool {
	return rec.Rules && !rec.Services && config.Mode(rec.Mode) != config.Bridged
}

// watch starts the network's rule watcher unless it runs. It needs no
// record of its own: its pid file is the record, and a teardown stops what
// it names (stopWatcher).
func (u *upCall) watch() (outcome, error) {
	pidFile := u.d.File(u.n.Name, watchPID)
	w := ctl.Watcher{Network: u.n.Name, PIDFile: pidFile, LogPath: u.d.File(u.n.Name, watchLog),
		GenFile: u.d.File(u.n.Name, warm.GenExt), Gen: u.rec.RulesGen, EVPNLink: u.evpnLink(),
		Bridge: u.n.Bridge, Isolate: u.n.IsolateGuests}
	if pid, running := ctl.Alive(pidFile); running {
		if ctl.WatcherCurrent(pid, w) {
			return unchanged, nil
		}
		// An older version's, which does not forget the guard's ports or
		// guard a hot-plugged tap, or one for another bridge, isolation or
		// EVPN link: a tap it guards would get the old network's settings.
		if err := stopWatcher(u.d, u.n.Name); err != nil {
			return unchanged, err
		}
	}
	// The network works without its watcher, which only heals what another
	// program breaks: a watcher that cannot start is a warning, not a failed up.
	exe, err := findDaemonBinary()
	if err == nil {
		err = ctl.StartWatcher(exe, w)
	}
	if err != nil {
		u.warnings = append(u.warnings, "rules not watched (another program's changes stay until the next up or doctor --fix): "+err.Error())
		return unchanged, nil
	}
	if u.fresh {
		return noted, nil
	}
	return repaired, nil // the watcher of a network up since before: someone killed it
}

func (u *upCall) unwatch() error { return stopWatcher(u.d, u.n.Name) }

// stopWatcher stops the network's rule watcher, if it runs.
func stopWatcher(d state.Dir, network string) error {
	return ctl.Stop(d.File(network, watchPID), stopTimeout)
}

// watcherPart is the teardown's part that stops the network's rule
// watcher, when its pid file names one alive.
func watcherPart(d state.Dir, rec state.Network) []part {
	if _, running := ctl.Alive(d.File(rec.Name, watchPID)); !running {
		return nil
	}
	return []part{{"stop the rule watcher of " + rec.Name, func() (bool, error) { return true, stopWatcher(d, rec.Name) }}}
}

// HealRules is the watchers' heal (kvmnet-heal): it first checks, reading
// only, whether network n's rules are whole, by an nf_tables generation
// unchanged since they were last seen whole or else by the backend's Check,
// and only when they are not runs Heal, doctor --fix's steps. Most changes
// of other programs leave kvmnet's rules be (a container's rules, the
// iptables-restore or iptables-legacy of another network's up, which the
// watchers cannot tell from a stranger's), and their heals then write
// nothing, not even the network's hot file. A network that is not up stays
// down.
func HealRules(d state.Dir, n config.Net) (Result, error) {
	rec, ok, err := d.Load(n.Name)
	if err != nil || !ok || !rec.Rules {
		return Result{}, err
	}
	fw, err := firewall.New(firewall.Backend(rec.Firewall))
	if err != nil {
		return Result{}, err
	}
	if rec.Doing == "" && rec.RulesGen != 0 && fw.Unchanged(rec.RulesGen) {
		return Result{}, nil
	}
	forwards, err := d.LoadForwards(n.Name)
	if err != nil {
		return Result{}, err
	}
	if missing, err := fw.Check(fwNetwork(rec, rec.Services, forwards)); rec.Doing == "" && err == nil && len(missing) == 0 {
		return Result{}, nil
	}
	return Heal(d, n)
}
