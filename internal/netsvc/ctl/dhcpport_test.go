package ctl

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/testns"
)

// otherServer is a port 67 socket of another DHCP server, bound as that
// server binds it: reuse sets SO_REUSEADDR and SO_REUSEPORT (dnsmasq with
// bind-interfaces or bind-dynamic) or SO_REUSEADDR alone (systemd-networkd);
// dev, when not "", is bound before the port (networkd) and after is after
// (dnsmasq serving one interface).
type otherServer struct {
	reuse, reuseport bool
	dev, after       string
}

func (o otherServer) bind() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	opts := map[int]bool{unix.SO_REUSEADDR: o.reuse, unix.SO_REUSEPORT: o.reuseport}
	for opt, on := range opts {
		if on {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
	}
	if o.dev != "" {
		if err := unix.BindToDevice(fd, o.dev); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: dhcpPort}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if o.after != "" {
		if err := unix.BindToDevice(fd, o.after); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

var (
	dnsmasqOne = otherServer{reuse: true, reuseport: true, after: "br1"} // libvirt's: bind-dynamic, interface=br1
	dnsmasqAll = otherServer{reuse: true, reuseport: true}               // bind-interfaces on several interfaces
	networkd   = otherServer{reuse: true, dev: "br1"}                    // DHCPServer=yes on br1
	wildcard   = otherServer{}                                           // dnsmasq's default: every interface
)

// TestBindDHCPBesideOtherServers: kvmnet's port 67 on br0 and another
// server's on br1 bind in either order, as dnsmasq (libvirt's and a
// distribution's sharing the host) and systemd-networkd bind theirs; a
// server that claims every interface, or one on br0 itself, refuses
// kvmnet's bind with a line naming it.
func TestBindDHCPBesideOtherServers(t *testing.T) {
	ns := testns.New(t)
	for _, br := range []string{"br0", "br1"} {
		ns.MustRun("ip", "link", "add", br, "type", "bridge")
	}
	coexist := map[string]otherServer{"libvirt's dnsmasq": dnsmasqOne, "dnsmasq on several interfaces": dnsmasqAll, "systemd-networkd": networkd}
	err := ns.Do(func() error {
		for name, o := range coexist {
			// kvmnet first, then the other server.
			s, err := bindDHCP("br0")
			if err != nil {
				return err
			}
			fd, err := o.bind()
			if err != nil {
				t.Errorf("%s after kvmnet: %v", name, err)
			} else {
				unix.Close(fd)
			}
			s.Close()
			// The other server first.
			if fd, err = o.bind(); err != nil {
				return err
			}
			if s, err = bindDHCP("br0"); err != nil {
				t.Errorf("kvmnet after %s: %v", name, err)
			} else {
				s.Close()
			}
			unix.Close(fd)
		}

		for _, c := range []struct {
			name string
			o    otherServer
			want string
		}{
			{"a server of every interface", wildcard, "dhcp bind udp port 67 on br0: address already in use (held on every interface by "},
			{"a server on br0 too", otherServer{reuse: true, dev: "br0"}, "dhcp bind udp port 67 on br0: another DHCP server serves br0: "},
		} {
			fd, err := c.o.bind()
			if err != nil {
				return err
			}
			s, err := bindDHCP("br0")
			unix.Close(fd)
			if err == nil {
				s.Close()
				t.Errorf("kvmnet bound port 67 on br0 beside %s", c.name)
				continue
			}
			if !strings.HasPrefix(err.Error(), c.want) || !strings.Contains(err.Error(), "pid ") {
				t.Errorf("beside %s: %q, want %q… naming the holder's pid", c.name, err, c.want)
			}
		}
		// Two of kvmnet's on one bridge: the second is refused.
		first, err := bindDHCP("br0")
		if err != nil {
			return err
		}
		defer first.Close()
		if s, err := bindDHCP("br0"); err == nil {
			s.Close()
			t.Error("a second kvmnet socket bound port 67 on br0")
		} else if errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "another DHCP server serves br0") {
			t.Errorf("a second kvmnet socket on br0: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
