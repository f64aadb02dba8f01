package bridge

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// What kvmnet doctor and status read of a bridge, and the one setting doctor --fix repairs.

// STP is a bridge's spanning-tree setting, which the netlink library does not parse.
type STP struct {
	On           bool          // stp_state is not 0 (kernel or user-space STP)
	ForwardDelay time.Duration // forward_delay
}

// Stalls reports whether a new port waits before it forwards: only with STP
// on, for listening and learning (twice the forward delay). With STP off the
// kernel makes a port forward at once, whatever forward_delay says.
func (s STP) Stalls() bool { return s.On && s.ForwardDelay > 0 }

// ReadSTP returns the bridge's STP settings, read over netlink rather than
// /sys/class/net, which shows the namespace sysfs was mounted in, not the caller's.
//
//	ip -d link show NAME   (stp_state, forward_delay)
func ReadSTP(br *netlink.Bridge) (STP, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(br.Index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil || len(msgs) == 0 {
		return STP{}, fmt.Errorf("read %s: %w", br.Name, err)
	}
	data, err := bridgeData(msgs[0])
	if err != nil {
		return STP{}, fmt.Errorf("read %s: %w", br.Name, err)
	}
	var s STP
	for _, a := range data {
		if len(a.Value) < 4 {
			continue
		}
		v := binary.NativeEndian.Uint32(a.Value[:4])
		switch a.Attr.Type {
		case nl.IFLA_BR_STP_STATE:
			s.On = v != 0
		case nl.IFLA_BR_FORWARD_DELAY:
			s.ForwardDelay = time.Duration(v) * 10 * time.Millisecond // clock_t, USER_HZ 100
		}
	}
	return s, nil
}

// bridgeData returns the IFLA_INFO_DATA attributes of an RTM_NEWLINK message.
func bridgeData(m []byte) ([]syscall.NetlinkRouteAttr, error) {
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		info, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return nil, err
		}
		for _, i := range info {
			if i.Attr.Type == nl.IFLA_INFO_DATA {
				return nl.ParseRouteAttr(i.Value)
			}
		}
	}
	return nil, fmt.Errorf("no bridge attributes")
}

// DisableSTP turns STP off and forward delay to 0, as Create makes a bridge.
// Two messages: the kernel refuses a forward delay under 2 s while STP is on,
// and reads forward_delay before stp_state within one message.
//
//	ip link set NAME type bridge stp_state 0
//	ip link set NAME type bridge forward_delay 0
func DisableSTP(br *netlink.Bridge) error {
	for _, attr := range []int{nl.IFLA_BR_STP_STATE, nl.IFLA_BR_FORWARD_DELAY} {
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(br.Index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
		info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(attr, nl.Uint32Attr(0))
		req.AddData(info)
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("turn off STP on %s: %w", br.Name, err)
		}
	}
	return nil
}

// Learned lists the MAC addresses the bridge learned from traffic, with the
// port each was last seen on (Neigh.LinkIndex): the guests' own MACs, which
// their taps do not carry. Ports' own addresses (permanent entries) are left out.
//
//	bridge fdb show br NAME dynamic
func Learned(br *netlink.Bridge) ([]netlink.Neigh, error) {
	all, err := nlh.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of %s: %w", br.Name, err)
	}
	var out []netlink.Neigh
	for _, n := range all {
		if n.MasterIndex == br.Index && n.State&(unix.NUD_PERMANENT|unix.NUD_NOARP) == 0 {
			out = append(out, n)
		}
	}
	return out, nil
}
