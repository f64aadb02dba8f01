package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/netsvc/ctl"
	"github.com/kvmnet/kvmnet/internal/selfbin"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/warm"
)

// Files of a network's DHCP/DNS daemon in the state directory.
const (
	svcConf = ".netsvc.conf"
	svcPID  = ".netsvc.pid"
	svcLog  = ".netsvc.log"
)

// stopTimeout bounds how long a down waits for the daemon to exit on SIGTERM.
const stopTimeout = 2 * time.Second

// daemonBinary is the name of the binary that runs the DHCP/DNS daemon.
const daemonBinary = selfbin.DaemonName

// ServicesPID returns the pid of a network's DHCP/DNS daemon, if it runs.
func ServicesPID(d state.Dir, network string) (int, bool) {
	return ctl.Alive(d.File(network, svcPID))
}

// servicesConfig is the configuration of network n's daemon; evpnLink is
// the VXLAN link whose VTEPs it keeps in the network's set (evpnLink), or "".
func servicesConfig(d state.Dir, n config.Net, evpnLink string) (ctl.Config, error) {
	leaseFile := n.LeaseFile
	if leaseFile != "" {
		var err error
		if leaseFile, err = ctl.LeaseFileInNetns(leaseFile); err != nil {
			return ctl.Config{}, err
		}
	}
	c := ctl.Config{
		Network: n.Name, Bridge: n.Bridge, Gateway: n.Gateway, Gateway6: n.Gateway6, MTU: n.MTU,
		DHCP: n.DHCP, Router: n.Router, RangeStart: n.RangeFrom, RangeEnd: n.RangeTo, LeaseTime: n.LeaseTime,
		Domain: n.Domain, DNS: n.DNS, Upstreams: n.Upstreams, LeaseFile: leaseFile,
		PIDFile: d.File(n.Name, svcPID), GenFile: d.File(n.Name, warm.GenExt), Guard: n.Guard, EVPNLink: evpnLink,
	}
	for _, h := range n.Hosts {
		c.Hosts = append(c.Hosts, ctl.Host{MAC: h.MAC.HardwareAddr, IP: h.IP.Addr, IP6: h.IP6.Addr, Name: h.Name})
	}
	return c, nil
}

// startServices writes the network's daemon configuration and starts the
// daemon exe (binding its sockets first), without waiting for it to serve.
func startServices(d state.Dir, n config.Net, exe, evpnLink string) (*ctl.Process, error) {
	c, err := servicesConfig(d, n, evpnLink)
	if err != nil {
		return nil, err
	}
	if err := ctl.WriteConfig(d.File(n.Name, svcConf), c); err != nil {
		return nil, err
	}
	// Start's errors name the socket, the lease file or the exec that failed.
	return ctl.Start(exe, d.File(n.Name, svcConf), d.File(n.Name, svcLog))
}

// installedDaemon is where a package installs the daemon's binary.
const installedDaemon = selfbin.InstalledDaemon

// findDaemonBinary returns the daemon's binary of this installation
// (selfbin.Daemon): its own, so that the kvmnet binary, which every cold up
// executes, does not link the DHCP/DNS code.
func findDaemonBinary() (string, error) {
	p, err := selfbin.Daemon()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("the DHCP/DNS daemon's binary: %w", err)
	}
	return p, err
}

// stopServices stops the network's daemon, if it runs. Once it has exited
// (it writes its leases on the way out), its lease file follows the name
// this release gives it (ctl.FollowLeaseFile): a daemon an older release
// started kept its leases under the older name.
func stopServices(d state.Dir, network string) error {
	c, _, _ := ServicesConfig(d, network)
	if err := ctl.Stop(d.File(network, svcPID), stopTimeout); err != nil {
		return err
	}
	// A file that cannot follow costs its guests their addresses, as before
	// lease files followed; failing the stop for it would strand a teardown.
	_, _ = ctl.FollowLeaseFile(c.LeaseFile)
	return nil
}

// killStrays ends the network's daemons that its pid file does not name: one
// an up started just before it was killed, that had not yet written its pid
// file. They are found by their command line, which names the network's
// config file in this namespace's state directory, and waited for.
//
//	pkill -KILL -fx 'kvmnet-netsvc /run/kvmnet/netns-COOKIE/NETWORK.netsvc.conf'
func killStrays(d state.Dir, network string) error {
	want := ctl.ProcName + "\x00" + d.File(network, svcConf) + "\x00"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	var errs []error
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || !cmdlineIs(pid, want) {
			continue
		}
		if err := killStray(pid, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killStray kills pid, a daemon of command line want, and waits until it has
// exited: a zombie, which is as gone as it gets (nothing reaps an orphan
// here), with its descriptors closed, so that its sockets and its lock on the
// lease file are free for the daemon the caller starts next. A pidfd tells
// exactly that; without one (before Linux 5.3), /proc does: the command line
// and the exiting threads (ctl.Exiting). One already exiting is only waited for.
func killStray(pid int, want string) error {
	pidfd, pidfdErr := unix.PidfdOpen(pid, 0)
	if pidfdErr == nil {
		defer unix.Close(pidfd)
	}
	running := cmdlineIs(pid, want)
	if !running && !ctl.Exiting(pid) { // gone, or the pid reused before the pidfd held it
		return nil
	}
	if running {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill stray daemon %d: %w", pid, err)
		}
	}
	// Not the command line: it empties as the main thread exits, before the
	// other threads close the descriptors (ctl.Exiting).
	gone := func() bool { return !cmdlineIs(pid, want) && !ctl.Exiting(pid) }
	if pidfdErr == nil {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		gone = func() bool { n, _ := unix.Poll(fds, 1); return n > 0 }
	}
	for deadline := time.Now().Add(stopTimeout); !gone(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("stray daemon %d survived SIGKILL", pid)
		}
	}
	return nil
}

func cmdlineIs(pid int, want string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && string(b) == want
}
