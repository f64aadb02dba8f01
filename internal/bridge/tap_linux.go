package bridge

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TapOptions is what NewTap makes.
type TapOptions struct {
	VnetHdr bool // IFF_VNET_HDR, when the kernel offers it (QEMU's --use-vnet)
	Owner   int  // the uid the tap belongs to (TUNSETOWNER), or -1 for none
	HighMAC bool // first byte of the MAC 0xfe, as QEMU's bridge helper sets it
}

// tunDevice is the clone device every tap is made through.
const tunDevice = "/dev/net/tun"

// NewTap makes a tap device named by the kernel (tapN), which lives as long
// as the returned file is open: QEMU gets the file, and when QEMU exits or is
// killed the kernel deletes the tap. It has no packet information header, as
// QEMU wants, and the vnet header when asked for and offered.
//
//	ip tuntap add mode tap [vnet_hdr] [user UID]   (but not persistent)
//	ip link set TAP address fe:XX:XX:XX:XX:XX      (HighMAC)
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
	if o.HighMAC {
		if err := raiseMAC(fd, name); err != nil {
			return nil, "", err
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

// raiseMAC sets the first byte of the tap's MAC to 0xfe, through the tap's
// own descriptor (no netlink round trip): a bridge with no address of its
// own takes its ports' lowest MAC, which would change as VMs come and go.
func raiseMAC(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return fmt.Errorf("read address of tap %s: %w", name, err)
	}
	// struct sockaddr in the ifreq: sa_family (2 bytes), then the address.
	raw := (*[unix.IFNAMSIZ + 16]byte)(unsafe.Pointer(ifr))
	raw[unix.IFNAMSIZ+2] = 0xfe
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFHWADDR, ifr); err != nil {
		return fmt.Errorf("set address of tap %s: %w", name, err)
	}
	return nil
}
