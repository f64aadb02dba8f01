package bridge

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TapOptions is what NewTap makes.
type TapOptions struct {
	VnetHdr bool // IFF_VNET_HDR, when the kernel offers it (QEMU's --use-vnet)
	Owner   int  // the uid the tap belongs to (TUNSETOWNER), or -1 for none
}

// tunDevice is the clone device every tap is made through.
const tunDevice = "/dev/net/tun"

// NewTap makes a tap device named by the kernel (tapN), which lives as long
// as the returned file is open: QEMU gets the file, and when QEMU exits or is
// killed the kernel deletes the tap. It has no packet information header, as
// QEMU wants, and the vnet header when asked for and offered.
//
//	ip tuntap add mode tap [vnet_hdr] [user UID]   (but not persistent)
func NewTap(o TapOptions) (*os.File, string, error) {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", tunDevice, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq("tap%d")
	if err != nil {
		return nil, "", fmt.Errorf("make tap: %w", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if o.VnetHdr && hasVnetHdr(fd) {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, "", fmt.Errorf("make tap: %w", err)
	}
	name := ifr.Name()
	if o.Owner >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, o.Owner); err != nil {
			return nil, "", fmt.Errorf("set owner of tap %s to uid %d: %w", name, o.Owner, err)
		}
	}
	ok = true
	return os.NewFile(uintptr(fd), tunDevice), name, nil
}

// hasVnetHdr reports whether the kernel's tun driver offers IFF_VNET_HDR.
func hasVnetHdr(fd int) bool {
	var features uint32
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETFEATURES, uintptr(unsafe.Pointer(&features)))
	return errno == 0 && features&unix.IFF_VNET_HDR != 0
}

// RaiseMAC sets the first byte of the link's MAC to 0xfe, as QEMU's bridge
// helper does: a bridge with no address of its own takes its ports' lowest
// MAC, which would change whenever a VM comes or goes.
//
//	ip link set NAME address fe:XX:XX:XX:XX:XX
func RaiseMAC(name string) error {
	l, err := Link(name)
	if err != nil {
		return err
	}
	mac := append([]byte(nil), l.Attrs().HardwareAddr...)
	if len(mac) != 6 {
		return fmt.Errorf("tap %s has no Ethernet address", name)
	}
	mac[0] = 0xfe
	if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("set address of %s: %w", name, err)
	}
	return nil
}
