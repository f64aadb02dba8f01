package ops

import "github.com/kvmnet/kvmnet/internal/lifecycle"

// watcher: a network with rules and no DHCP/DNS daemon has a rule watcher of
// its own, which puts its rules back when another program (a firewall
// reload, Docker) takes them; the daemon does it for the others (services).
func (c *netCheck) watcher() []Finding {
	if !lifecycle.Watched(c.rec) {
		return nil
	}
	if _, ok := lifecycle.WatcherPID(c.h.Dir, c.name); ok {
		return nil
	}
	return []Finding{c.heal(Finding{Problem: "its rule watcher is not running: rules another program removes stay missing",
		Evidence: "no kvmnet-netsvc --watch process for " + c.name + " (its pid file names none alive)", Fix: "kvmnet doctor --fix starts it"})}
}
