package lifecycle

import (
	"fmt"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/netsvc"
	"github.com/kvmnet/kvmnet/internal/state"
)

// Files of a network's DHCP/DNS daemon in the state directory.
const (
	svcConf = ".netsvc.conf"
	svcPID  = ".netsvc.pid"
	svcLog  = ".netsvc.log"
)

// stopTimeout bounds how long a down waits for the daemon to exit on SIGTERM.
const stopTimeout = 2 * time.Second

// ServicesPID returns the pid of a network's DHCP/DNS daemon, if it runs.
func ServicesPID(d state.Dir, network string) (int, bool) {
	return netsvc.Alive(d.File(network, svcPID))
}

// startServices starts the network's DHCP/DNS daemon unless it runs already.
// The daemon is this very binary re-executed (/proc/self/exe), so it needs no
// path of its own and always matches the helper's version.
func startServices(d state.Dir, n config.Net) (bool, error) {
	if _, ok := ServicesPID(d, n.Name); ok {
		return false, nil
	}
	c := netsvc.Config{
		Network: n.Name, Bridge: n.Bridge, Gateway: n.Gateway, MTU: n.MTU,
		DHCP: n.DHCP, RangeStart: n.RangeFrom, RangeEnd: n.RangeTo, LeaseTime: n.LeaseTime,
		Domain: n.Domain, DNS: n.DNS, Upstreams: n.Upstreams, LeaseFile: n.LeaseFile,
		PIDFile: d.File(n.Name, svcPID),
	}
	for _, h := range n.Hosts {
		c.Hosts = append(c.Hosts, netsvc.Host{MAC: h.MAC.HardwareAddr, IP: h.IP.Addr, Name: h.Name})
	}
	if err := netsvc.WriteConfig(d.File(n.Name, svcConf), c); err != nil {
		return false, err
	}
	if _, err := netsvc.Spawn("/proc/self/exe", d.File(n.Name, svcConf), d.File(n.Name, svcLog)); err != nil {
		return false, fmt.Errorf("spawn daemon: %w", err)
	}
	return true, nil
}

// stopServices stops the network's daemon, if it runs.
func stopServices(d state.Dir, network string) error {
	return netsvc.Stop(d.File(network, svcPID), stopTimeout)
}
