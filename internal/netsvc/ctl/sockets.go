package ctl

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DHCP's server port (RFC 2131) and DNS's.
const (
	dhcpPort = 67
	dnsPort  = 53
)

// Sockets are what a network's daemon listens on, and the lock on its lease
// file: everything another program could be holding already. Start opens
// them in the caller and hands them to the daemon it starts, so that a port
// someone else has (port 53 taken) or a lease file another daemon uses fails
// the caller's up at once, with nothing left behind, and the up need not wait
// for the daemon: a guest's first datagrams queue in the sockets until the
// daemon reads them. Each field is nil when the configuration turns it off.
type Sockets struct {
	LeaseLock *os.File // flocked lease_file.lock (LockLeaseFile), held while the daemon runs
	DHCP      *os.File // udp 0.0.0.0:67 bound to the bridge
	DNS       *os.File // udp gateway:53
	DNSTCP    *os.File // tcp gateway:53, listening
	DNS6      *os.File // udp [gateway6]:53
	DNS6TCP   *os.File // tcp [gateway6]:53, listening
}

// Bind opens c's sockets in the network namespace of the calling thread, as
// the daemon would serve them (see Sockets). On error nothing stays open.
func Bind(c Config) (*Sockets, error) {
	s := &Sockets{}
	err := s.bind(c)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sockets) bind(c Config) error {
	var err error
	if c.LeaseFile != "" {
		if err := os.MkdirAll(filepath.Dir(c.LeaseFile), 0o755); err != nil {
			return fmt.Errorf("lease directory: %w", err)
		}
		if s.LeaseLock, err = LockLeaseFile(c.LeaseFile); err != nil {
			return err
		}
		if err := leaseFileUsable(c.LeaseFile); err != nil {
			return err
		}
	}
	if c.DHCP {
		if s.DHCP, err = bindDHCP(c.Bridge); err != nil {
			return err
		}
	}
	if !c.DNS {
		return nil
	}
	if s.DNS, s.DNSTCP, err = bindDNS(c.Gateway.Addr()); err != nil {
		return err
	}
	if c.Gateway6.IsValid() {
		if s.DNS6, s.DNS6TCP, err = bindDNS(c.Gateway6.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// leaseFileUsable refuses a lease file the daemon could never replace, such
// as a directory; a file it cannot read as leases (empty, corrupt, a link)
// the daemon sets aside itself, and none at all is a first start.
func leaseFileUsable(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("lease file %s: %w", path, err)
	case fi.IsDir():
		return fmt.Errorf("lease file %s: is a directory", path)
	}
	return nil
}

// Files are the sockets in the order Inherit takes them back: the ones c
// turns on, in the order of the fields.
func (s *Sockets) Files() []*os.File {
	var fs []*os.File
	for _, f := range []*os.File{s.LeaseLock, s.DHCP, s.DNS, s.DNSTCP, s.DNS6, s.DNS6TCP} {
		if f != nil {
			fs = append(fs, f)
		}
	}
	return fs
}

// Close closes the caller's copies; a daemon that inherited them keeps its own.
func (s *Sockets) Close() {
	for _, f := range s.Files() {
		f.Close()
	}
}

// Inherit takes back, in a daemon Start started with configuration c, the
// ready pipe and the sockets Start handed over (descriptors firstSocketFD on,
// in the order of Files), marking them close-on-exec again.
func Inherit(c Config) *Sockets {
	unix.CloseOnExec(readyFD)
	fd := firstSocketFD
	next := func(name string, on bool) *os.File {
		if !on {
			return nil
		}
		unix.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), name)
		fd++
		return f
	}
	s := &Sockets{}
	s.LeaseLock = next(c.LeaseFile+".lock", c.LeaseFile != "")
	s.DHCP = next("dhcp", c.DHCP)
	s.DNS = next("dns", c.DNS)
	s.DNSTCP = next("dns-tcp", c.DNS)
	s.DNS6 = next("dns6", c.DNS && c.Gateway6.IsValid())
	s.DNS6TCP = next("dns6-tcp", c.DNS && c.Gateway6.IsValid())
	return s
}

// bindDHCP opens udp 0.0.0.0:67 bound to ifname with SO_BINDTODEVICE, so
// that the daemon hears and answers only its own bridge, and with
// SO_REUSEADDR, so that DHCP servers of other interfaces can bind port 67
// beside it in either order (dhcpport.go says who they are and why). It
// never sets SO_REUSEPORT: a group would spread one device's requests
// between its members. A second server on the same bridge is refused
// (dhcpPortOwned), rather than left to share its clients.
func bindDHCP(ifname string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("dhcp socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "dhcp")
	for _, o := range []struct {
		opt  int
		name string
	}{{unix.SO_BROADCAST, "broadcast"}, {unix.SO_REUSEADDR, "reuseaddr"}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, 1); err != nil {
			f.Close()
			return nil, fmt.Errorf("dhcp socket %s: %w", o.name, err)
		}
	}
	if err := unix.BindToDevice(fd, ifname); err != nil {
		f.Close()
		return nil, fmt.Errorf("dhcp socket bind to %s: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: dhcpPort}); err != nil {
		f.Close()
		return nil, fmt.Errorf("dhcp bind udp port %d on %s: %w%s", dhcpPort, ifname, err, wildcardHint(err))
	}
	if err := dhcpPortOwned(fd, ifname); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// bindDNS binds udp and tcp port 53 of the gateway address only, as Go's
// net.Listen would (SO_BROADCAST on udp, SO_REUSEADDR on tcp, IPv6 only on
// an IPv6 address), with IP_FREEBIND so that the address need not be up yet.
func bindDNS(gw netip.Addr) (udp, tcp *os.File, err error) {
	addr := netip.AddrPortFrom(gw, dnsPort).String()
	if udp, err = bindDNSSocket(gw, unix.SOCK_DGRAM); err != nil {
		return nil, nil, fmt.Errorf("dns listen udp %s: %w", addr, err)
	}
	if tcp, err = bindDNSSocket(gw, unix.SOCK_STREAM); err != nil {
		udp.Close()
		return nil, nil, fmt.Errorf("dns listen tcp %s: %w", addr, err)
	}
	return udp, tcp, nil
}

// listenBacklog is the TCP listener's backlog; the kernel caps it at
// net.core.somaxconn, as it does Go's.
const listenBacklog = 4096

func bindDNSSocket(gw netip.Addr, typ int) (*os.File, error) {
	var family int
	var sa unix.Sockaddr
	if gw.Is6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: dnsPort, Addr: gw.As16()}
	} else {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: dnsPort, Addr: gw.As4()}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "dns")
	opts := [][3]int{{unix.IPPROTO_IP, unix.IP_FREEBIND, 1}}
	if gw.Is6() {
		opts = [][3]int{{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1}, {unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1}}
	}
	if typ == unix.SOCK_DGRAM {
		opts = append(opts, [3]int{unix.SOL_SOCKET, unix.SO_BROADCAST, 1})
	} else {
		opts = append(opts, [3]int{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		f.Close()
		return nil, err
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, listenBacklog); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}
