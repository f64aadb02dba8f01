package warm

import (
	"math/rand/v2"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunDevice is the clone device every tap is made through.
const tunDevice = "/dev/net/tun"

// newTap makes a tap named by the kernel (tapN) as bridge.NewTap does for
// the engine, and as QEMU's own helper does: no packet information header,
// the vnet header when asked for and offered, owned by uid. (Its MAC comes
// with its attachment: setNewPort.) It lives as long as its descriptor.
//
//	ip tuntap add mode tap [vnet_hdr] user UID
func newTap(vnet bool, uid int) (fd int, name string, err error) {
	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", err
	}
	if name, err = setupTap(fd, vnet, uid); err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	return fd, name, nil
}

func setupTap(fd int, vnet bool, uid int) (string, error) {
	ifr, err := unix.NewIfreq("tap%d")
	if err != nil {
		return "", err
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnet {
		var features uint32
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETFEATURES, uintptr(unsafe.Pointer(&features)))
		if errno == 0 && features&unix.IFF_VNET_HDR != 0 {
			flags |= unix.IFF_VNET_HDR
		}
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return "", err
	}
	name := ifr.Name()
	if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, uid); err != nil {
		return "", err
	}
	return name, nil
}

// portMAC is a new port's MAC: fe, then five random bytes, as bridge.NewTap
// leaves it (the kernel's random address with its first byte raised). A
// bridge with no address of its own takes its ports' lowest MAC, which would
// change as VMs come and go.
func portMAC() []byte {
	r := rand.Uint64()
	return []byte{0xfe, byte(r), byte(r >> 8), byte(r >> 16), byte(r >> 24), byte(r >> 32)}
}

// setNewPort gives the new tap called name its MAC and makes it a port of
// bridge br, with the bridge's MTU, and up, in one request.
//
//	ip link set NAME address fe:… mtu $(BRIDGE's mtu) [group G] master BRIDGE up
func (s *sock) setNewPort(name string, br link, group uint32) error {
	body := ifinfo(0, unix.IFF_UP, unix.IFF_UP)
	body = attr(body, unix.IFLA_IFNAME, append([]byte(name), 0))
	body = attr(body, unix.IFLA_ADDRESS, portMAC())
	body = attr(body, unix.IFLA_MTU, u32(br.mtu))
	if group != 0 {
		body = attr(body, unix.IFLA_GROUP, u32(group))
	}
	body = attr(body, unix.IFLA_MASTER, u32(uint32(br.index)))
	return s.request(unix.RTM_SETLINK, unix.NLM_F_ACK, body, func(uint16, []byte) error { return nil })
}
