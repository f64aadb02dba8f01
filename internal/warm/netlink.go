package warm

// The netlink of the warm path, on golang.org/x/sys/unix alone. The project's
// netlink library (vishvananda/netlink, and even its nl package alone) links
// net, log, fmt and context, which cost a front more to start than all the
// requests it sends: measured here, linking nl alone costs as much again as
// the raw requests below take to run. So the front speaks the few messages
// it needs itself: get a link, set a link's master, MTU and up, list
// addresses, and nf_tables' generation.

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errNoLink is the kernel's answer for a link that does not exist.
var errNoLink = errors.New("no such link")

// errShort is a message too short for what it claims to hold.
var errShort = errors.New("short netlink message")

// sock is one netlink socket, its requests numbered, its answers received
// into buf.
type sock struct {
	fd  int
	seq uint32
	buf []byte
}

// openSock opens a netlink socket of protocol proto that receives into buf,
// the run's buffer (newBuf), which the socket's answers may share with the
// run's reads: each is done with before the next.
func openSock(proto int, buf []byte) (*sock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	return &sock{fd: fd, buf: buf}, nil
}

func (s *sock) close() { unix.Close(s.fd) }

// request sends one message of type typ with body and calls each reply's
// payload (the bytes after the netlink header) until the answer ends: with
// NLMSG_DONE for a dump, an ACK, or the one reply of a get.
func (s *sock) request(typ, flags uint16, body []byte, each func(typ uint16, payload []byte) error) error {
	s.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	h := (*unix.NlMsghdr)(unsafe.Pointer(&msg[0]))
	*h = unix.NlMsghdr{Len: uint32(len(msg)), Type: typ, Flags: unix.NLM_F_REQUEST | flags, Seq: s.seq}
	if err := unix.Sendto(s.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		done, err := s.replies(s.buf[:n], flags, each)
		if done || err != nil {
			return err
		}
	}
}

// replies walks one datagram of replies; done reports the answer is whole.
func (s *sock) replies(b []byte, flags uint16, each func(uint16, []byte) error) (done bool, err error) {
	for len(b) >= unix.SizeofNlMsghdr {
		h := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
		if h.Len < unix.SizeofNlMsghdr || int(h.Len) > len(b) {
			return true, errShort
		}
		payload := b[unix.SizeofNlMsghdr:h.Len]
		b = b[min(nlAlign(int(h.Len)), len(b)):]
		if h.Seq != s.seq {
			continue // an answer to an earlier request
		}
		switch h.Type {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return true, errShort
			}
			if e := *(*int32)(unsafe.Pointer(&payload[0])); e != 0 {
				return true, unix.Errno(-e)
			}
			return true, nil // an ACK
		}
		if err := each(h.Type, payload); err != nil {
			return true, err
		}
		if flags&unix.NLM_F_DUMP == 0 && flags&unix.NLM_F_ACK == 0 {
			return true, nil
		}
	}
	return false, nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// attr appends a netlink attribute to b.
func attr(b []byte, typ uint16, val []byte) []byte {
	var h [unix.SizeofRtAttr]byte
	*(*unix.RtAttr)(unsafe.Pointer(&h[0])) = unix.RtAttr{Len: uint16(unix.SizeofRtAttr + len(val)), Type: typ}
	b = append(append(b, h[:]...), val...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// attrs calls fn for each attribute in b.
func attrs(b []byte, fn func(typ uint16, val []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		a := (*unix.RtAttr)(unsafe.Pointer(&b[0]))
		if a.Len < unix.SizeofRtAttr || int(a.Len) > len(b) {
			return
		}
		fn(a.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.SizeofRtAttr:a.Len])
		b = b[min((int(a.Len)+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(b)):]
	}
}

func u32(v uint32) []byte { return (*[4]byte)(unsafe.Pointer(&v))[:] }

func getU32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return *(*uint32)(unsafe.Pointer(&b[0]))
}

// link is what the warm path needs to know of a link.
type link struct {
	index  int
	flags  uint32 // IFF_*
	mtu    uint32
	master int    // 0: none
	group  uint32 // IFLA_GROUP: the device group, 0 the default
	kind   string // IFLA_INFO_KIND: "bridge", "tun", ...; "" for a plain device
	mac    [6]byte
	hasMAC bool // an Ethernet MAC (IFLA_ADDRESS of 6 bytes)
}

// portMAC is the MAC the port gets as it is attached, as bridge.PortMAC: its
// own with the first byte fe, so that it never becomes a bridge's; nil when
// it needs none (fe already, loopback, no Ethernet MAC).
func (l link) portMAC() []byte {
	if !l.hasMAC || l.mac[0] == 0xfe || l.flags&unix.IFF_LOOPBACK != 0 {
		return nil
	}
	mac := l.mac
	mac[0] = 0xfe
	return mac[:]
}

func (l link) up() bool { return l.flags&unix.IFF_UP != 0 }

func ifinfo(index int, flags, change uint32) []byte {
	var m [unix.SizeofIfInfomsg]byte
	*(*unix.IfInfomsg)(unsafe.Pointer(&m[0])) = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index), Flags: flags, Change: change}
	return m[:]
}

// getLink returns the link called name, or errNoLink.
//
//	ip -d link show NAME
func (s *sock) getLink(name string) (link, error) {
	body := attr(ifinfo(0, 0, 0), unix.IFLA_IFNAME, append([]byte(name), 0))
	body = attr(body, unix.IFLA_EXT_MASK, u32(rtextFilterSkipStats))
	var l link
	err := s.request(unix.RTM_GETLINK, 0, body, func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWLINK || len(p) < unix.SizeofIfInfomsg {
			return errShort
		}
		m := (*unix.IfInfomsg)(unsafe.Pointer(&p[0]))
		l.index, l.flags = int(m.Index), m.Flags
		attrs(p[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFLA_MTU:
				l.mtu = getU32(v)
			case unix.IFLA_MASTER:
				l.master = int(getU32(v))
			case unix.IFLA_GROUP:
				l.group = getU32(v)
			case unix.IFLA_ADDRESS:
				l.hasMAC = len(v) == 6
				copy(l.mac[:], v)
			case unix.IFLA_LINKINFO:
				attrs(v, func(typ uint16, v []byte) {
					if typ == unix.IFLA_INFO_KIND {
						l.kind = cstring(v)
					}
				})
			}
		})
		return nil
	})
	if errors.Is(err, unix.ENODEV) {
		return link{}, errNoLink
	}
	return l, err
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// linkSet is one RTM_SETLINK of the link with index: its MAC when mac is
// not nil, its MTU when mtu is not 0, its device group when group is not
// negative (the guard's, or 0 leaving it), its master when master is not
// negative (0: none), and IFF_UP set (up 1) or cleared (up -1).
type linkSet struct {
	index  int
	mac    []byte
	mtu    uint32
	group  int64
	master int
	up     int8
}

// setLink makes the changes of c in one request. The kernel applies them
// in the order MAC, MTU, group, up (or down), master (do_setlink), and
// stops at the first that fails.
//
//	ip link set dev PORT [address MAC] [mtu MTU] [group G] [up|down] [master BRIDGE | nomaster]
func (s *sock) setLink(c linkSet) error {
	var flags, change uint32
	switch {
	case c.up > 0:
		flags, change = unix.IFF_UP, unix.IFF_UP
	case c.up < 0:
		change = unix.IFF_UP
	}
	body := ifinfo(c.index, flags, change)
	if c.mac != nil {
		body = attr(body, unix.IFLA_ADDRESS, c.mac)
	}
	if c.mtu != 0 {
		body = attr(body, unix.IFLA_MTU, u32(c.mtu))
	}
	if c.group >= 0 {
		// In the request that enslaves the port, and so before it comes
		// up: no frame of the guest's enters the bridge outside the
		// guard's group.
		body = attr(body, unix.IFLA_GROUP, u32(uint32(c.group)))
	}
	if c.master >= 0 {
		body = attr(body, unix.IFLA_MASTER, u32(uint32(c.master)))
	}
	return s.request(unix.RTM_SETLINK, unix.NLM_F_ACK, body, func(uint16, []byte) error { return nil })
}

// setIsolated makes the bridge port with index isolated: a request of the
// bridge family with the port's flags nested in IFLA_PROTINFO, as the
// engine's netlink.LinkSetIsolated sends it.
//
//	bridge link set dev PORT isolated on
func (s *sock) setIsolated(index int) error {
	var m [unix.SizeofIfInfomsg]byte
	*(*unix.IfInfomsg)(unsafe.Pointer(&m[0])) = unix.IfInfomsg{Family: unix.AF_BRIDGE, Index: int32(index)}
	body := attr(m[:], unix.IFLA_PROTINFO|unix.NLA_F_NESTED, attr(nil, unix.IFLA_BRPORT_ISOLATED, []byte{1}))
	return s.request(unix.RTM_SETLINK, unix.NLM_F_ACK, body, func(uint16, []byte) error { return nil })
}

// strictDumps makes the kernel hold the socket's dump requests to what their
// headers name (NETLINK_GET_STRICT_CHK, Linux 4.20), so that an address dump
// walks the one link whose index it gives rather than every link of the
// namespace (a thousand taps, on a host of a thousand VMs). An older kernel
// refuses the option and dumps them all; hasAddress filters the answer
// either way.
func (s *sock) strictDumps() {
	_ = unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
}

// hasAddress reports whether the link with index has the address addr
// (4 or 16 bytes) with prefix length bits.
//
//	ip addr show dev BRIDGE to ADDR/BITS
func (s *sock) hasAddress(index int, addr []byte, bits uint8) (bool, error) {
	family := uint8(unix.AF_INET)
	if len(addr) == 16 {
		family = unix.AF_INET6
	}
	var m [unix.SizeofIfAddrmsg]byte
	*(*unix.IfAddrmsg)(unsafe.Pointer(&m[0])) = unix.IfAddrmsg{Family: family, Index: uint32(index)}
	found := false
	err := s.request(unix.RTM_GETADDR, unix.NLM_F_DUMP, m[:], func(typ uint16, p []byte) error {
		if typ != unix.RTM_NEWADDR || len(p) < unix.SizeofIfAddrmsg {
			return nil
		}
		a := (*unix.IfAddrmsg)(unsafe.Pointer(&p[0]))
		if int(a.Index) != index || a.Prefixlen != bits || a.Family != family {
			return nil
		}
		// IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on a
		// point-to-point link, and the only one IPv6 sends.
		var local, address []byte
		attrs(p[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFA_LOCAL:
				local = v
			case unix.IFA_ADDRESS:
				address = v
			}
		})
		if local == nil {
			local = address
		}
		found = found || string(local) == string(addr)
		return nil
	})
	return found, err
}

// nftGeneration returns nf_tables' ruleset generation, which every committed
// change of any table moves.
//
//	nft list ruleset | head -0; nft monitor's "new generation N"
func nftGeneration(buf []byte) (uint32, error) {
	s, err := openSock(unix.NETLINK_NETFILTER, buf)
	if err != nil {
		return 0, err
	}
	defer s.close()
	// struct nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
	body := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	var gen uint32
	ok := false
	err = s.request(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN, 0, body, func(_ uint16, p []byte) error {
		if len(p) < 4 {
			return errShort
		}
		attrs(p[4:], func(typ uint16, v []byte) {
			if typ == unix.NFTA_GEN_ID && len(v) >= 4 {
				gen, ok = uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), true
			}
		})
		return nil
	})
	if err == nil && !ok {
		err = errShort
	}
	return gen, err
}

// rtextFilterSkipStats (RTEXT_FILTER_SKIP_STATS, Linux 4.20) leaves a link's
// counters out of the answer: a third of its size.
const rtextFilterSkipStats = 1 << 3
