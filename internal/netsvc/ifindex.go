package netsvc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ifIndexer reads one interface's index by name, as often as asked, with
// no allocation: watchBridge asks every bridgeWatchInterval for the life of
// the daemon, and net.InterfaceByName, which dumps every link of the
// namespace and parses each, allocated 16 kB a second at rest, which the
// heap held until its next collection.
type ifIndexer struct {
	fd  int
	ifr *unix.Ifreq
}

// newIfIndexer opens the socket the ioctl goes through; close it.
func newIfIndexer(name string) (*ifIndexer, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("interface %s: socket: %w", name, err)
	}
	return &ifIndexer{fd: fd, ifr: ifr}, nil
}

// index is the interface's index now (ENODEV once it is gone).
//
//	cat /sys/class/net/NAME/ifindex
func (x *ifIndexer) index() (int, error) {
	// The kernel reads the name and writes the index over the union: the
	// name stays for the next call.
	if err := unix.IoctlIfreq(x.fd, unix.SIOCGIFINDEX, x.ifr); err != nil {
		return 0, err
	}
	return int(x.ifr.Uint32()), nil
}

func (x *ifIndexer) close() { unix.Close(x.fd) }
