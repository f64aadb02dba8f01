package warm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunDevice is the clone device every tap is made through.
const tunDevice = "/dev/net/tun"

// newTap makes a tap named by the kernel (tapN) as bridge.NewTap does for
// the engine, and as QEMU's own helper does: no packet information header,
// the vnet header when asked for and offered, owned by uid, its MAC's first
// byte 0xfe. It lives as long as its descriptor.
//
//	ip tuntap add mode tap [vnet_hdr] user UID; ip link set TAP address fe:…
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
	// A bridge with no address of its own takes its ports' lowest MAC,
	// which would change as VMs come and go.
	mac, err := unix.NewIfreq(name)
	if err != nil {
		return "", err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, mac); err != nil {
		return "", err
	}
	// struct sockaddr in the ifreq: sa_family (2 bytes), then the address.
	raw := (*[unix.IFNAMSIZ + 16]byte)(unsafe.Pointer(mac))
	raw[unix.IFNAMSIZ+2] = 0xfe
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFHWADDR, mac); err != nil {
		return "", err
	}
	return name, nil
}

// setNewPort makes the new tap called name a port of bridge br, with the
// bridge's MTU, and up, in one request.
//
//	ip link set NAME mtu $(BRIDGE's mtu) master BRIDGE up
func (s *sock) setNewPort(name string, br link) error {
	body := ifinfo(0, unix.IFF_UP, unix.IFF_UP)
	body = attr(body, unix.IFLA_IFNAME, append([]byte(name), 0))
	body = attr(body, unix.IFLA_MTU, u32(br.mtu))
	body = attr(body, unix.IFLA_MASTER, u32(uint32(br.index)))
	return s.request(unix.RTM_SETLINK, unix.NLM_F_ACK, body, func(uint16, []byte) error { return nil })
}
